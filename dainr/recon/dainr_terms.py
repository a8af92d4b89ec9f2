"""The terms of the DA-INR loss: a k-space data term and regularisers on the rendered frames.

A step's loss is the sum of a list of terms (:func:`loss_terms`), each called as ``term(images, frames)`` with the
step's rendered ``(B, H, W)`` complex frames and their ``(B,)`` indices. A new regulariser is one
:class:`Regulariser` subclass here (its ``penalty`` and ``field``, the name of its weight in
:class:`~dainr.config.DainrConfig`) added to :data:`REGULARISERS`, plus that config field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

from dainr.config import DainrConfig
from dainr.recon.operators import SliceProblem


class LossTerm(Protocol):
    """One term of the loss: ``term(images (B, H, W) complex, frames (B,) int64) -> scalar`` (weight included)."""

    #: True when the term needs a step's frames to be neighbours in time (the frame sampler then draws windows).
    consecutive_frames: ClassVar[bool]

    def __call__(self, images: torch.Tensor, frames: torch.Tensor) -> torch.Tensor: ...


def data_loss(pred: torch.Tensor, data: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean k-space loss over the samples where ``mask`` (``(B, spokes, samples)``) is 1, all coils.

    ``l1``: |Re| + |Im| of the residual (the reference's L1 on real and imaginary parts); ``l2``: |residual|².
    """
    diff = (pred - data) * mask[:, None]
    n = mask.sum().clamp_min(1.0) * data.shape[1]
    if kind == "l1":
        return (diff.real.abs().sum() + diff.imag.abs().sum()) / n
    return (diff.abs() ** 2).sum() / n


def temporal_tv(img: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean magnitude of the difference between consecutive frames of ``(B, H, W)`` complex images (smoothed at 0);
    0 for a single frame."""
    if img.shape[0] < 2:
        return img.real.new_zeros(())
    d = img[1:] - img[:-1]
    return torch.sqrt(d.real.square() + d.imag.square() + eps).mean()


def spatial_tv(img: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean isotropic total variation of ``(B, H, W)`` complex images: |∇x| with forward differences (smoothed at 0)."""
    dx = img[:, :-1, 1:] - img[:, :-1, :-1]
    dy = img[:, 1:, :-1] - img[:, :-1, :-1]
    return torch.sqrt(dx.real.square() + dx.imag.square() + dy.real.square() + dy.imag.square() + eps).mean()


class _PreconditionedForward(torch.autograd.Function):
    """Forward NUFFT whose backward is the reference code's preconditioned gradient: the density-weighted,
    SENSE-combined adjoint instead of the true adjoint (DAINR_METHOD.md §4)."""

    @staticmethod
    def forward(ctx, x, problem: SliceProblem, frames: torch.Tensor):  # type: ignore[override]
        ctx.problem, ctx.frames = problem, frames
        return problem.op(x, frames)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        p = ctx.problem
        return p.op.adjoint(grad * p.density[ctx.frames][:, None], ctx.frames), None, None


@dataclass
class DataTerm:
    """Mean k-space loss (:func:`data_loss`) of the rendered frames against their measured samples.

    Attributes
    ----------
    problem:
        The slice's operator and data.
    mask:
        ``(frames, spokes, samples)`` float32, 1 on the samples this term compares (the fit's: measured and not held
        out; the validation's: held out).
    kind:
        ``l1`` or ``l2`` (``dainr.loss``).
    preconditioned:
        Backpropagate through the reference's preconditioned adjoint (``dainr.preconditioned_gradient``).
    """

    problem: SliceProblem
    mask: torch.Tensor
    kind: str = "l1"
    preconditioned: bool = False
    consecutive_frames: ClassVar[bool] = False

    def __call__(self, images: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        p = self.problem
        pred = _PreconditionedForward.apply(images, p, frames) if self.preconditioned else p.op(images, frames)
        return data_loss(pred, p.kspace[frames], self.mask[frames], self.kind)


@dataclass
class Regulariser:
    """A penalty on a step's rendered frames, ``weight × penalty(images)``; a subclass names its weight's config field
    (``field``), says whether it compares frames in time (``consecutive_frames``) and defines :meth:`penalty`."""

    weight: float
    field: ClassVar[str]
    consecutive_frames: ClassVar[bool] = False

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        return self.weight * self.penalty(images)


class TemporalTV(Regulariser):
    """:func:`temporal_tv` of a step's frames (neighbours in time)."""

    field = "tv_temporal"
    consecutive_frames = True

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        return temporal_tv(images)


class SpatialTV(Regulariser):
    """:func:`spatial_tv` of a step's frames."""

    field = "tv_spatial"

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        return spatial_tv(images)


#: The regularisers, in the order their values are added to the data term; each is used when its weight
#: ``DainrConfig.<field>`` is > 0.
REGULARISERS: tuple[type[Regulariser], ...] = (TemporalTV, SpatialTV)


def loss_terms(c: DainrConfig, data: DataTerm) -> list[LossTerm]:
    """The data term, then every regulariser of :data:`REGULARISERS` whose weight in ``c`` is > 0."""
    return [data] + [r(getattr(c, r.field)) for r in REGULARISERS if getattr(c, r.field) > 0]


def radial_acceleration(spoke_mask: np.ndarray, matrix: tuple[int, int]) -> float:
    """Undersampling factor of a radial cine: the spokes a frame needs for Nyquist sampling (π/2 · N, N the larger
    side of the image matrix, spokes through the centre) over the mean number of spokes a frame measured.

    ``spoke_mask``: ``(frames, spokes)`` bool, True where a spoke was measured.
    """
    measured = float(np.asarray(spoke_mask, bool).sum(axis=1).mean())
    return math.pi / 2 * max(matrix) / max(measured, 1.0)


def sampling_tv(c: DainrConfig, acceleration: float) -> DainrConfig:
    """``c`` with both TV weights multiplied by ``c.tv_sparse_factor`` when ``acceleration`` is at least
    ``c.tv_sparse_acceleration`` (> 0); ``c`` itself otherwise."""
    if c.tv_sparse_acceleration <= 0 or acceleration < c.tv_sparse_acceleration:
        return c
    return dataclasses.replace(c, tv_temporal=c.tv_temporal * c.tv_sparse_factor,
                               tv_spatial=c.tv_spatial * c.tv_sparse_factor)
