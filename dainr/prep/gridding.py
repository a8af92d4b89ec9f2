"""Gridding of the whole series at once: the time-averaged coil images that coil maps and scaling start from.

All measured spokes of all frames are pooled into one frame, weighted with the ramp density for the *pooled* spoke
count and adjoint-NUFFT'd per coil. Since ``Aᴴ diag(H·W·w) A ≈ I`` for the orthonormal
:class:`~dainr.physics.nufft.MultiCoilNufft`, the result is ≈ the coil images of the cine's time average, in the
same units as the images a reconstruction of ``cine`` returns.
"""

from __future__ import annotations

import numpy as np
import torch

from dainr.data import CineData
from dainr.physics import MultiCoilNufft, ramp_density


def pooled_spokes(cine: CineData) -> tuple[np.ndarray, np.ndarray]:
    """All measured spokes of the series as one frame.

    Returns
    -------
    kspace:
        ``(coils, S, samples)`` complex64, S = number of measured spokes (padding dropped).
    traj:
        ``(S, samples, 2)`` float32 cycles/pixel.
    """
    f, c, s, n = cine.kspace.shape
    measured = np.ones((f, s), bool) if cine.spoke_mask is None else np.asarray(cine.spoke_mask, bool)
    ksp = np.moveaxis(cine.kspace, 1, 0)[:, measured]  # (coils, S, samples)
    traj = cine.traj[measured]  # (S, samples, 2)
    return ksp.astype(np.complex64, copy=False), traj.astype(np.float32, copy=False)


def hann_window(radius: np.ndarray, cutoff: float) -> np.ndarray:
    """Radial Hann window ``cos²(π r / 2 r_c)`` for ``r < r_c``, 0 beyond; ``radius`` and ``cutoff`` in cycles/pixel."""
    w = np.cos(0.5 * np.pi * np.minimum(radius / cutoff, 1.0)) ** 2
    return np.where(radius < cutoff, w, 0.0)


def time_averaged_coil_images(cine: CineData, cutoff: float | None = None) -> np.ndarray:
    """Density-compensated adjoint of all spokes pooled: the coil images of the time-averaged cine.

    Parameters
    ----------
    cine:
        The series; ``cine.matrix`` gives the image grid.
    cutoff:
        Radius (cycles/pixel) of a k-space Hann window for low-resolution images; None = no window (full resolution).
        Samples beyond the cutoff are skipped, so low-resolution gridding is also cheaper.

    Returns
    -------
    ``(coils, H, W)`` complex64 coil images, in the units of the images a reconstruction of ``cine`` returns.
    """
    ksp, traj = pooled_spokes(cine)
    if ksp.shape[1] == 0:
        return np.zeros((cine.n_coils,) + tuple(cine.matrix), np.complex64)
    h, w = cine.matrix
    dens = ramp_density(traj[None])[0] * float(h * w)  # (S, samples)
    if cutoff is not None:
        radius = np.linalg.norm(traj, axis=-1)
        keep = (radius < cutoff).any(axis=0)  # readout samples inside the window for some spoke
        if not keep.any():
            return np.zeros((cine.n_coils, h, w), np.complex64)
        ksp, traj, dens, radius = ksp[..., keep], traj[:, keep], dens[:, keep], radius[:, keep]
        dens = dens * hann_window(radius, cutoff).astype(np.float32)
    ones = torch.ones((1, h, w), dtype=torch.complex64)  # per-coil images: no maps
    op = MultiCoilNufft(torch.from_numpy(np.ascontiguousarray(traj[None])), ones)
    y = torch.from_numpy(np.ascontiguousarray((ksp * dens[None]).astype(np.complex64)))[None]
    with torch.no_grad():
        return op.adjoint_coils(y)[0].numpy().astype(np.complex64, copy=False)
