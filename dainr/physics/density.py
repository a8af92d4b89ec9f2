"""Density compensation for radial sampling."""

from __future__ import annotations

import numpy as np


def ramp_density(traj: np.ndarray, n_spokes: np.ndarray | int | None = None) -> np.ndarray:
    """Analytic radial (ramp) density compensation: the k-space area each sample stands for.

    An annulus of radius |k| and width Δk (area 2π|k|Δk) is shared by the 2·S samples of S spokes (each spoke crosses
    it twice), so ``w = π·|k|·Δk / S`` in cycles²/pixel²; the k = 0 sample gets its share of the central disc,
    ``π·Δk²/(4·S)``. Σ w over one frame ≈ π/4, the area of the sampled disc. For the orthonormal NUFFT of
    :class:`~dainr.physics.nufft.MultiCoilNufft` on an H×W image, ``Aᴴ diag(H·W·w) A ≈ I`` on the sampled band.

    Parameters
    ----------
    traj:
        ``(..., spokes, samples, 2)`` cycles/pixel.
    n_spokes:
        Spokes per frame, broadcastable to ``traj.shape[:-3]`` (default: ``traj.shape[-3]``); pass the true count per
        frame when frames are zero-padded.

    Returns
    -------
    ``(..., spokes, samples)`` float32 weights.
    """
    r = np.linalg.norm(traj, axis=-1)
    ns = traj.shape[-2]
    dk = 1.0 / ns
    s = traj.shape[-3] if n_spokes is None else np.asarray(n_spokes, np.float64)[..., None, None]
    # Each spoke covers both half-lines, so the annulus of radius r, width dk, is shared by 2·S samples.
    w = 2.0 * np.pi * np.maximum(r, dk / 4.0) * dk / (2.0 * s)
    return w.astype(np.float32)
