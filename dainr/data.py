"""Typed data that cross module lines: one slice of a radial cine, its geometry, what to render from a fit, and a
reconstruction result.

Conventions (tested in ``tests/physics``):

* k-space ``(frames, coils, spokes, samples)`` complex64;
* trajectory ``(frames, spokes, samples, 2)`` float32 in cycles/pixel, in [-0.5, 0.5); column 0 is kx and pairs with
  image columns (x), column 1 is ky and pairs with image rows (y);
* images ``(frames, H, W)`` complex64, i.e. ``[..., y, x]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dainr.errors import ConfigError


@dataclass
class SliceGeometry:
    """Where a slice lies in the scanner, copied into output image headers.

    Attributes
    ----------
    fov_mm:
        Reconstructed field of view (x, y, z) in mm.
    position, read_dir, phase_dir, slice_dir, patient_table_position:
        ISMRMRD geometry vectors (mm for positions, unit vectors for directions).
    """

    fov_mm: tuple[float, float, float] = (256.0, 256.0, 8.0)
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    read_dir: tuple[float, float, float] = (1.0, 0.0, 0.0)
    phase_dir: tuple[float, float, float] = (0.0, 1.0, 0.0)
    slice_dir: tuple[float, float, float] = (0.0, 0.0, 1.0)
    patient_table_position: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class CineData:
    """One slice of a radial cine, ready for reconstruction.

    Attributes
    ----------
    kspace:
        ``(frames, coils, spokes, samples)`` complex64 measured samples. Frames with fewer spokes than ``spokes`` are
        zero-padded and flagged False in ``spoke_mask``.
    traj:
        ``(frames, spokes, samples, 2)`` float32, cycles/pixel in [-0.5, 0.5); ``[..., 0]`` = kx (image columns),
        ``[..., 1]`` = ky (image rows).
    matrix:
        ``(H, W)`` reconstruction matrix (rows, columns).
    spoke_mask:
        ``(frames, spokes)`` bool, True where a spoke was measured; None means all measured.
    dcw:
        ``(frames, spokes, samples)`` float32 density weights given with the data (third ``traj`` column), or None.
    noise:
        ``(coils, n)`` complex64 samples of the noise scans, or None.
    slice_index:
        ISMRMRD ``idx.slice`` of this slice.
    geometry:
        Slice geometry for the output headers.
    frame_refs:
        Per-frame opaque reference metadata (front-end data, e.g. an ISMRMRD acquisition header), carried through and
        never read by the engine.
    """

    kspace: np.ndarray
    traj: np.ndarray
    matrix: tuple[int, int]
    spoke_mask: np.ndarray | None = None
    dcw: np.ndarray | None = None
    noise: np.ndarray | None = None
    slice_index: int = 0
    geometry: SliceGeometry = field(default_factory=SliceGeometry)
    frame_refs: list[Any] | None = None

    def __post_init__(self) -> None:
        f, c, s, n = self.kspace.shape
        if self.traj.shape != (f, s, n, 2):
            raise ValueError(f"traj shape {self.traj.shape} does not match k-space {self.kspace.shape}")
        if self.spoke_mask is not None and self.spoke_mask.shape != (f, s):
            raise ValueError(f"spoke_mask shape {self.spoke_mask.shape} != {(f, s)}")

    @classmethod
    def headers_only(cls, n_frames: int, matrix: tuple[int, int], slice_index: int = 0,
                     geometry: SliceGeometry | None = None, frame_refs: list[Any] | None = None) -> CineData:
        """A slice without samples (no coils, spokes or samples): what building its images needs, e.g. to render a
        saved model (:mod:`dainr.recon.model_file`)."""
        return cls(kspace=np.zeros((n_frames, 0, 0, 0), np.complex64), traj=np.zeros((n_frames, 0, 0, 2), np.float32),
                   matrix=(int(matrix[0]), int(matrix[1])), slice_index=int(slice_index),
                   geometry=geometry if geometry is not None else SliceGeometry(), frame_refs=frame_refs)

    @property
    def n_frames(self) -> int:
        return self.kspace.shape[0]

    @property
    def n_coils(self) -> int:
        return self.kspace.shape[1]

    @property
    def n_spokes(self) -> int:
        return self.kspace.shape[2]

    @property
    def n_samples(self) -> int:
        return self.kspace.shape[3]

    def select_frames(self, frames: Sequence[int]) -> CineData:
        """A copy holding only ``frames`` (in that order); noise scans, matrix and geometry are kept.

        Raises
        ------
        ValueError
            When ``frames`` is empty or names a frame outside ``0..n_frames−1``.
        """
        idx = np.asarray(frames, dtype=int).reshape(-1)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= self.n_frames:
            raise ValueError(f"frames {idx.tolist()} are not a non-empty selection of 0..{self.n_frames - 1}")
        return dataclasses.replace(
            self, kspace=self.kspace[idx], traj=self.traj[idx],
            spoke_mask=None if self.spoke_mask is None else self.spoke_mask[idx],
            dcw=None if self.dcw is None else self.dcw[idx],
            frame_refs=None if self.frame_refs is None else [self.frame_refs[i] for i in idx])

    def sample_weights(self) -> np.ndarray:
        """``(frames, spokes, samples)`` float32: 1 for measured samples, 0 for padding."""
        w = np.ones(self.kspace.shape[:1] + self.kspace.shape[2:], np.float32)
        if self.spoke_mask is not None:
            w *= self.spoke_mask[..., None]
        return w


@dataclass(frozen=True)
class RenderRequest:
    """What to render from a fitted slice besides its cine at its own frames and matrix.

    Attributes
    ----------
    frames:
        Rendered frames ``N`` over the acquired frames' interval (:mod:`dainr.recon.rendering`); 0 = the acquired
        frames.
    matrix:
        Rows of the rendered matrix (columns scaled alike, so pixels keep their shape; the field of view is
        unchanged); 0 = the acquisition's matrix.
    motion:
        Also the displacement to frame 0 in mm (:mod:`dainr.recon.motion`).
    jacobian:
        Also the Jacobian determinant of the deformation (local area change from frame 0).
    """

    frames: int = 0
    matrix: int = 0
    motion: bool = False
    jacobian: bool = False

    def __post_init__(self) -> None:
        if self.frames < 0 or self.frames == 1:
            raise ConfigError(f"render_frames (--render-frames) must be 0 (the acquired frames) or at least 2, got "
                              f"{self.frames}")
        if self.matrix < 0 or 0 < self.matrix < 8:
            raise ConfigError(f"render_matrix (--render-matrix) must be 0 (the acquired matrix) or at least 8, got "
                              f"{self.matrix}")

    @property
    def needs_model(self) -> bool:
        """True when anything beyond the fit's own images is asked for (only DA-INR can give it)."""
        return bool(self.frames or self.matrix or self.motion or self.jacobian)

    def output_matrix(self, matrix: tuple[int, int]) -> tuple[int, int]:
        """The ``(H, W)`` rendered for an acquired ``matrix``: ``(M, W·M/H)``.

        Raises
        ------
        ConfigError
            When ``W·M/H`` is not a whole number of columns.
        """
        h, w = int(matrix[0]), int(matrix[1])
        if not self.matrix or self.matrix == h:
            return h, w
        cols = w * self.matrix / h
        if cols != int(cols):
            raise ConfigError(f"render_matrix {self.matrix} rows for the {h}×{w} acquisition gives {cols:g} "
                              f"columns; choose a multiple of {h // math.gcd(h, w)} rows")
        return self.matrix, int(cols)


@dataclass
class ReconResult:
    """What :func:`dainr.recon.reconstruct` returns for one slice.

    Attributes
    ----------
    images:
        ``(frames, H, W)`` complex64 reconstructed cine.
    method:
        Name of the method that ran.
    seconds:
        Wall time of the reconstruction (preparation included), s.
    iterations:
        Iterations (CG) or optimisation steps (DA-INR) run.
    loss:
        Per-iteration objective values, when the method has one.
    info:
        Method-specific facts worth reporting, JSON-ready (e.g. frames per step after an out-of-memory fallback).
    validation:
        DA-INR: ``(step, held-out k-space loss)`` of every self-supervised check; empty otherwise.
    selected_step:
        DA-INR: the step whose weights were output (chosen on held-out spokes); None when the final ones were.
    fitted:
        DA-INR with ``reconstruct(..., keep_model=True)``: the fitted model with its config and rendering inputs
        (a :class:`dainr.recon.dainr_model.FittedDainr`; ``fitted.render()`` times ``fitted.scale`` gives
        ``images`` again); None otherwise.
    motion:
        DA-INR with ``render.motion`` (:class:`RenderRequest`): ``(frames, 2, H, W)`` float32
        displacement of every pixel to frame 0 in mm, channels ``(x, y)`` (:mod:`dainr.recon.motion`); None otherwise.
    jacobian:
        DA-INR with ``render.jacobian``: ``(frames, H, W)`` float32 Jacobian determinant of the deformation from
        frame 0 (local area change, 1 = none); None otherwise.
    frame_positions:
        ``(frames,)`` float64 fractional acquired frame of every output frame when DA-INR rendered another frame
        count (``render.frames``; :func:`dainr.recon.rendering.frame_positions`), for the image headers; None when
        the output frames are the acquired ones.
    """

    images: np.ndarray
    method: str
    seconds: float
    iterations: int = 0
    loss: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    validation: list[tuple[int, float]] = field(default_factory=list)
    selected_step: int | None = None
    fitted: Any = None
    motion: np.ndarray | None = None
    jacobian: np.ndarray | None = None
    frame_positions: np.ndarray | None = None
