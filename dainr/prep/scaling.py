"""Intensity scaling: bring the data to a known magnitude so that learning rates and regularisation weights transfer.

The scale ``s`` is the ``percentile``-th percentile (99 by default, robust to a few bright pixels and streaks) of
the magnitude of the SENSE-combined, density-compensated adjoint of all spokes pooled,

    x̄ = Σ_c conj(S_c) · (Aᴴ diag(H·W·w) y)_c / Σ_c |S_c|²,

over the pixels where the maps are non-zero, i.e. of the cine's time average. Because the NUFFT is orthonormally scaled
(``Aᴴ diag(H·W·w) A ≈ I``), reconstructing ``y / s`` gives images whose bright tissue has magnitude ≈ 1.

Apply: ``apply_scale(cine, s)`` divides k-space (and noise samples) by ``s``. Undo: ``undo_scale(images, s)``
multiplies reconstructed images by ``s`` to return to the scanner's units.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dainr.data import CineData
from dainr.errors import InputError
from dainr.prep.gridding import time_averaged_coil_images


def intensity_scale(cine: CineData, coil_maps: np.ndarray, percentile: float = 99.0) -> float:
    """Robust magnitude scale of a cine (see the module docstring).

    Parameters
    ----------
    cine:
        The series, k-space in any units.
    coil_maps:
        ``(coils, H, W)`` complex maps matching ``cine`` (same coils, ``cine.matrix``).
    percentile:
        Percentile of the combined image magnitude that becomes 1.

    Returns
    -------
    ``s > 0`` in k-space units: divide k-space by it.

    Raises
    ------
    InputError
        When the data carry no signal (all-zero k-space or maps).
    """
    if coil_maps.shape != (cine.n_coils,) + tuple(cine.matrix):
        raise ValueError(f"coil maps {coil_maps.shape} do not match {cine.n_coils} coils on {tuple(cine.matrix)}")
    images = time_averaged_coil_images(cine)
    norm = (np.abs(coil_maps) ** 2).sum(0)
    inside = norm > 0
    combined = (coil_maps.conj() * images).sum(0)[inside] / norm[inside]
    s = float(np.percentile(np.abs(combined), percentile)) if combined.size else 0.0
    if not np.isfinite(s) or s <= 0:
        raise InputError("k-space carries no signal (the adjoint image is zero); check the acquisitions and coil maps")
    return s


def apply_scale(cine: CineData, scale: float) -> CineData:
    """A copy of ``cine`` with k-space and noise samples divided by ``scale``."""
    noise = None if cine.noise is None else (cine.noise / scale).astype(np.complex64)
    return dataclasses.replace(cine, kspace=(cine.kspace / scale).astype(np.complex64), noise=noise)


def undo_scale(images: np.ndarray, scale: float) -> np.ndarray:
    """Images reconstructed from scaled data, back in the original units: ``images · scale``."""
    return images * scale
