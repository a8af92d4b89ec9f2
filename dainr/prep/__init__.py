"""Preparation of a radial cine for reconstruction: prewhitening, coil compression, coil maps, intensity scaling.

:func:`prepare` composes the steps in that order; each lives in its own module and can be used alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dainr.data import CineData
from dainr.prep.coil_compression import compress, compression_matrix, energy_fraction
from dainr.prep.coil_maps import estimate_coil_maps, rss_maps, walsh_maps
from dainr.prep.gridding import time_averaged_coil_images
from dainr.prep.noise import noise_covariance, prewhiten, prewhitening_matrix
from dainr.prep.noise import prewhiten as _apply_coil_transform  # `prepare` has a flag named prewhiten
from dainr.prep.scaling import apply_scale, intensity_scale, undo_scale

__all__ = [
    "PreparedCine",
    "apply_scale",
    "compress",
    "compression_matrix",
    "energy_fraction",
    "estimate_coil_maps",
    "intensity_scale",
    "noise_covariance",
    "prepare",
    "prewhiten",
    "prewhitening_matrix",
    "rss_maps",
    "time_averaged_coil_images",
    "undo_scale",
    "walsh_maps",
]


@dataclass
class PreparedCine:
    """A cine ready for reconstruction.

    Attributes
    ----------
    cine:
        New :class:`~dainr.data.CineData`: k-space (and noise samples) prewhitened, coil-compressed and divided by
        ``scale``; ``(frames, coils', spokes, samples)``.
    coil_maps:
        ``(coils', H, W)`` complex64 maps of the prepared coils, ``Σ|S|² = 1`` where there is signal.
    scale:
        Intensity scale the k-space was divided by; multiply reconstructed images by it to undo.
    noise_std_after:
        Per-sample noise standard deviation of the prepared k-space, ``sqrt(E|n|²)`` over coils and complex samples,
        measured on the transformed noise scans; None without noise scans.
    coil_transform:
        ``(coils', coils)`` complex64 matrix applied along the coil axis (compression · prewhitening).
    """

    cine: CineData
    coil_maps: np.ndarray
    scale: float
    noise_std_after: float | None = None
    coil_transform: np.ndarray | None = None


def prepare(cine: CineData, prewhiten: bool = True, n_virtual: int | None = None,
            coil_maps_method: str = "walsh", frames: Sequence[int] | None = None) -> PreparedCine:
    """Prewhiten (when noise scans exist and ``prewhiten``), compress to ``n_virtual`` coils (None = keep all),
    estimate coil maps with ``coil_maps_method`` and scale the k-space (see :mod:`dainr.prep.scaling`).

    ``frames`` (None = all) are the frames whose k-space may inform the preparation: the compression matrix, the
    coil maps (hence the support mask) and the intensity scale come from them only, and are applied to every frame.
    Temporal interpolation passes its training frames, so that a held-out frame's data reach nothing.
    """
    ksp, noise = cine.kspace, cine.noise
    transform = np.eye(cine.n_coils, dtype=np.complex64)
    if prewhiten and noise is not None:
        transform = prewhitening_matrix(noise_covariance(noise))
        ksp = _apply_coil_transform(ksp, transform)
    if n_virtual is not None:
        m = compression_matrix(ksp if frames is None else ksp[np.asarray(frames, dtype=int)], n_virtual)
        ksp, transform = compress(ksp, m), m @ transform
    noise = None if noise is None else _apply_coil_transform(noise, transform, coil_axis=0)
    out = dataclasses.replace(cine, kspace=ksp.astype(np.complex64), noise=noise, traj=cine.traj.copy())
    seen = out if frames is None else out.select_frames(frames)
    maps = estimate_coil_maps(seen, method=coil_maps_method)
    scale = intensity_scale(seen, maps)
    out = apply_scale(out, scale)
    noise_std = None if out.noise is None else float(np.sqrt(np.mean(np.abs(out.noise) ** 2)))
    return PreparedCine(cine=out, coil_maps=maps, scale=scale, noise_std_after=noise_std, coil_transform=transform)
