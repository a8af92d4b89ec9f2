"""What a fitted DA-INR model renders beyond the cine it was fitted to: other frame counts, other matrices, motion.

Frame-time convention
---------------------
The fit places frame ``f`` of ``F`` at time ``t = f / (F − 1)`` (:func:`~dainr.model.networks.frame_times`); with
``dainr.periodic_time`` (the cine is one cycle) at ``t = f / F``, and ``N`` rendered frames then sample the whole
cycle at ``t_k = k / N`` (position ``k·F/N``, the features blended between frame ``F − 1`` and frame 0 past the last).
``N`` rendered frames span the **same interval**, from the first acquired frame to the last: rendered frame ``k`` is
at ``t_k = k / (N − 1)``, i.e. at the fractional source frame ``k·(F − 1)/(N − 1)`` (its *position*). Nothing is
extrapolated past the last acquired frame (the model has never seen the part of the cardiac cycle between the last
frame and the next cycle's first), and ``N = r·(F − 1) + 1`` renders every acquired frame again (at ``k = r·f``)
with ``r − 1`` new frames between each pair. ``N = F`` renders the acquired frames.

The neighbour features of a rendered frame between two acquired frames are blended linearly between theirs; at an
acquired frame they are that frame's own, so those frames are the fit's pixels exactly.

Matrix
------
Another matrix covers the same field of view: the networks are queried at its pixel centres
(:func:`~dainr.model.networks.centred_coords`) and the features are resampled bilinearly. The coil-map support (the
image is zero outside it, as SENSE's) is carried to the new matrix by nearest pixel centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dainr.data import RenderRequest
from dainr.errors import ConfigError
from dainr.model.networks import centred_coords
from dainr.recon.dainr_model import FittedDainr
from dainr.recon.motion import displacement_mm, jacobian_determinant


@dataclass
class RenderedSlice:
    """A fitted slice rendered as a :class:`RenderRequest` asks.

    Attributes
    ----------
    images:
        ``(N, H, W)`` complex64 cine in the raw data's intensity units (as :attr:`dainr.data.ReconResult.images`).
    positions:
        ``(N,)`` float64 fractional source frame of every rendered frame (``k·(F − 1)/(N − 1)``), for the headers.
    motion:
        ``(N, 2, H, W)`` float32 displacement to frame 0 in mm, channels ``(x, y)``, or None.
    jacobian:
        ``(N, H, W)`` float32 Jacobian determinant (1 = no area change), or None.
    """

    images: np.ndarray
    positions: np.ndarray
    motion: np.ndarray | None = None
    jacobian: np.ndarray | None = None


def frame_positions(n_frames: int, n_render: int = 0, periodic: bool = False) -> np.ndarray:
    """``(N,)`` float64 fractional source frames of ``N = n_render`` frames (0: the ``n_frames`` acquired ones)
    spread over the acquired frames' interval: ``k·(F − 1)/(N − 1)``; over the whole cycle when ``periodic``:
    ``k·F/N``."""
    if not n_render or n_render == n_frames:
        return np.arange(n_frames, dtype=np.float64)
    # product first: a whole position (k = r·f) then divides exactly, so it gets its frame's own features
    if periodic:
        return np.arange(n_render) * n_frames / n_render
    return np.arange(n_render) * max(n_frames - 1, 0) / (n_render - 1)


def render_times(n_frames: int, n_render: int, device: torch.device | str | None = None,
                 periodic: bool = False) -> torch.Tensor:
    """``(N,)`` float32 times of the rendered frames: ``k / (N − 1)``, or ``k / N`` when ``periodic`` (the fit's own
    frame times when ``N = F``; :func:`~dainr.model.networks.frame_times`)."""
    n = n_render or n_frames
    return torch.arange(n, device=device, dtype=torch.float32) / max(n if periodic else n - 1, 1)


def support_at(fitted: FittedDainr, matrix: tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` bool: the fit's coil-map support carried to ``matrix`` (the fit's pixel whose centre is nearest,
    the next one on a tie)."""
    if tuple(matrix) == tuple(fitted.matrix):
        return fitted.support
    coords = centred_coords(*matrix, device=fitted.device).reshape(*matrix, 2)
    h, w = fitted.matrix
    rows = torch.floor(coords[:, 0, 1] * (h / 2) + h // 2 + 0.5).long().clamp(0, h - 1)
    cols = torch.floor(coords[0, :, 0] * (w / 2) + w // 2 + 0.5).long().clamp(0, w - 1)
    return fitted.support[rows][:, cols]


@torch.no_grad()
def render_frames(fitted: FittedDainr, n_render: int, matrix: tuple[int, int], chunk: int = 4) -> torch.Tensor:
    """``N = n_render`` frames (0: the acquired ones) over the acquired interval at ``matrix`` -> ``(N, H, W)``
    complex64 on the device, prepared units, zero outside the support. At an acquired frame the features are its
    own, between two acquired frames they are blended linearly (module docstring)."""
    coords, feats = fitted.inputs(matrix)
    periodic = fitted.config.periodic_time
    positions = frame_positions(fitted.n_frames, n_render, periodic)
    times = render_times(fitted.n_frames, n_render, fitted.device, periodic)
    last = fitted.n_frames - 1
    out = []
    for s in range(0, len(positions), chunk):
        batch = None
        if feats is not None:
            parts = []
            for x in positions[s:s + chunk]:
                lo = int(math.floor(x))
                w = float(x - lo)
                f = feats[lo].float()
                if w > 0:
                    after = (lo + 1) % fitted.n_frames if periodic else min(lo + 1, last)
                    f = f * (1.0 - w) + feats[after].float() * w
                parts.append(f)
            batch = torch.stack(parts)
        out.append(fitted.model.render(times[s:s + chunk], coords, batch, image_shape=matrix))
    return torch.cat(out) * support_at(fitted, matrix)


def render_slice(fitted: FittedDainr, request: RenderRequest, fov_mm: tuple[float, float],
                 images: torch.Tensor | None = None) -> RenderedSlice:
    """Render a fitted slice as ``request`` asks.

    Parameters
    ----------
    fitted:
        The fitted model (:attr:`dainr.recon.dainr_fit.FitResult.fitted`).
    request:
        Frames, matrix, motion, Jacobian.
    fov_mm:
        Field of view ``(x, y)`` in mm (the header's reconstruction FOV), for the displacement's units.
    images:
        The fit's own ``(F, H, W)`` images (prepared units, device), reused when the request keeps frames and
        matrix; None renders them.

    Returns
    -------
    :class:`RenderedSlice` (images × ``fitted.scale``: raw data units).
    """
    if request.frames and fitted.n_frames < 2:
        raise ConfigError("rendering another frame count needs a cine of at least 2 frames; this slice has 1")
    matrix = request.output_matrix(fitted.matrix)
    periodic = fitted.config.periodic_time
    positions = frame_positions(fitted.n_frames, request.frames, periodic)
    same = len(positions) == fitted.n_frames and matrix == tuple(fitted.matrix)
    if images is None or not same:
        images = render_frames(fitted, request.frames, matrix)
    out = RenderedSlice(images=images.detach().cpu().numpy().astype(np.complex64) * np.float32(fitted.scale),
                        positions=positions)
    if request.motion or request.jacobian:
        times = render_times(fitted.n_frames, request.frames, fitted.device, periodic)
        inside = support_at(fitted, matrix)
        if request.motion:
            u = displacement_mm(fitted.model, times, matrix, fov_mm) * inside
            out.motion = u.cpu().numpy()
        if request.jacobian:
            j = jacobian_determinant(fitted.model, times, matrix)
            out.jacobian = torch.where(inside, j, torch.ones_like(j)).cpu().numpy()
    return out
