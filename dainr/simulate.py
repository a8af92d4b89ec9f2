"""Simulated radial cine acquisitions from a ground-truth cine (built-in phantom or a real-data source).

Noise model: complex Gaussian with per-sample standard deviation ``σ = max|k| / snr`` (``E|n|² = σ²``, the maximum
taken over the noiseless k-space of the whole series), correlated across coils by a fixed seeded covariance; the
noise scans are drawn from the same distribution, so prewhitening sees the real covariance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dainr.data import CineData, SliceGeometry
from dainr.physics import MultiCoilNufft
from dainr.physics.trajectory import TRAJECTORY_KINDS, angles_from_counter, readout_radii, trajectory_from_angles

#: ``phantom`` needs no data; the others are :data:`dainr.sources.REAL_SOURCES` (need ../shared/cardiac_data).
SOURCES = ("phantom", "acdc", "rat", "cmrx")


@dataclass
class SimulatedSeries:
    """A simulated multi-slice radial cine.

    Attributes
    ----------
    slices: one :class:`CineData` per slice (k-space with noise, trajectory, geometry).
    truth: ``(slices, frames, H, W)`` complex64 ground truth.
    noise: ``(coils, n)`` complex64 noise-scan samples, or None when noiseless.
    trajectory: trajectory kind (``goldenangle``, ``uniform``, ``tddip``).
    sigma: per-sample noise standard deviation that was added.
    """

    slices: list[CineData]
    truth: np.ndarray
    noise: np.ndarray | None
    trajectory: str
    sigma: float


def spoke_counters(n_slices: int, n_frames: int, n_spokes: int, interleave: bool = False) -> np.ndarray:
    """Global spoke counter ``(slices, frames, spokes)`` in acquisition order (never reset).

    Sequential: slice after slice; interleaved: for each frame, every slice in turn.
    """
    s, f, k = np.meshgrid(np.arange(n_slices), np.arange(n_frames), np.arange(n_spokes), indexing="ij")
    if interleave:
        return (f * n_slices + s) * n_spokes + k
    return (s * n_frames + f) * n_spokes + k


def trajectory_for(kind: str, counters: np.ndarray, n_samples: int) -> np.ndarray:
    """Trajectory ``counters.shape + (samples, 2)`` of spokes with the given global counters (last axis: the spokes
    of one frame, in order)."""
    if kind not in TRAJECTORY_KINDS:
        raise ValueError(f"unknown trajectory {kind!r}; choose one of {', '.join(TRAJECTORY_KINDS)}")
    n_spokes = counters.shape[-1]
    in_frame = np.broadcast_to(np.arange(n_spokes), counters.shape)
    angles = angles_from_counter(kind, counters, in_frame, n_spokes)
    return trajectory_from_angles(angles, readout_radii(kind, n_samples), kind)


def coil_noise_factor(coils: int, seed: int) -> np.ndarray:
    """Cholesky factor ``(coils, coils)`` of a seeded, mildly correlated noise covariance with unit mean diagonal."""
    rng = np.random.default_rng(seed + 7919)
    g = rng.normal(size=(coils, coils)) + 1j * rng.normal(size=(coils, coils))
    cov = 0.7 * np.eye(coils) + 0.3 * (g @ g.conj().T) / (2 * coils)
    cov /= np.real(np.trace(cov)) / coils
    return np.linalg.cholesky(cov)


def _truth_and_maps(source: str, matrix: int, frames: int, coils: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if source == "phantom":
        from dainr.phantom import cardiac_phantom

        ph = cardiac_phantom(matrix=matrix, frames=frames, coils=coils, seed=seed)
        return ph.images, ph.coil_maps
    if source in SOURCES:
        from dainr.sources import REAL_SOURCES

        real = REAL_SOURCES[source](matrix=matrix, frames=frames, coils=coils, seed=seed)
        return real.images, real.coil_maps
    raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")


def simulate(source: str = "phantom", matrix: int = 128, frames: int = 20, coils: int = 8, spokes: int = 13,
             snr: float = 100.0, trajectory: str = "goldenangle", slices: int = 1, seed: int = 0,
             interleave: bool = False, oversampling: int = 2, noise_scans: int = 4,
             slice_thickness_mm: float = 8.0, fov_mm: float = 256.0) -> SimulatedSeries:
    """Simulate a radial cine acquisition.

    Parameters
    ----------
    source: ``phantom`` (built-in, no data needed), or ``acdc``, ``rat``, ``cmrx`` (need ../shared/cardiac_data).
    matrix: image matrix M (M×M); frames, coils, spokes: cine frames, receive coils, spokes per frame.
    snr: max|k| over the noise standard deviation; ``0`` or ``inf`` = noiseless (and no noise scans).
    trajectory: ``goldenangle`` (global counter, θ_n = n·π/φ), ``uniform`` (θ = π·s/S per frame) or ``tddip``.
    slices: number of slices (each a different seed of the source); interleave: acquisition order of slices.
    oversampling: readout oversampling (samples per spoke = oversampling·M).
    noise_scans: noise acquisitions of ``oversampling·M`` samples each.
    """
    if trajectory not in TRAJECTORY_KINDS:
        raise ValueError(f"unknown trajectory {trajectory!r}; choose one of {', '.join(TRAJECTORY_KINDS)}")
    n_samples = oversampling * matrix
    counters = spoke_counters(slices, frames, spokes, interleave)
    truths, cines = [], []
    for s in range(slices):
        images, maps = _truth_and_maps(source, matrix, frames, coils, seed + 1000 * s)
        traj = trajectory_for(trajectory, counters[s], n_samples)
        op = MultiCoilNufft(torch.from_numpy(traj), torch.from_numpy(maps.astype(np.complex64)))
        with torch.no_grad():
            k = op(torch.from_numpy(images.astype(np.complex64))).numpy()
        offset = (s - (slices - 1) / 2.0) * slice_thickness_mm
        geom = SliceGeometry(fov_mm=(fov_mm, fov_mm, slice_thickness_mm), position=(0.0, 0.0, offset))
        truths.append(images.astype(np.complex64))
        cines.append(CineData(kspace=k, traj=traj, matrix=(matrix, matrix), slice_index=s, geometry=geom))
    truth = np.stack(truths)
    noise = None
    sigma = 0.0
    if snr and math.isfinite(snr):
        rng = np.random.default_rng(seed + 104729)
        peak = max(float(np.abs(c.kspace).max()) for c in cines)
        sigma = peak / snr
        chol = coil_noise_factor(coils, seed)

        def draw(shape: tuple[int, ...]) -> np.ndarray:
            w = (rng.normal(size=shape) + 1j * rng.normal(size=shape)) / math.sqrt(2.0)
            return sigma * np.einsum("ij,...jn->...in", chol, w.reshape(shape[0], coils, -1)).reshape(shape)

        for c in cines:
            c.kspace = (c.kspace + draw(c.kspace.shape)).astype(np.complex64)
        noise = draw((1, coils, noise_scans * n_samples))[0].astype(np.complex64)
        for c in cines:
            c.noise = noise
    return SimulatedSeries(slices=cines, truth=truth, noise=noise, trajectory=trajectory, sigma=sigma)
