"""Tiny simulated radial cines with known smooth coil maps, for the preparation tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dainr.data import CineData
from dainr.physics import MultiCoilNufft, radial_trajectory

#: ``<repo root>/../shared/cardiac_data``.
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "cardiac_data"


def smooth_object(frames: int, h: int, w: int) -> np.ndarray:
    """``(frames, h, w)`` complex64: a soft-edged body with a beating bright disc and a smooth phase, max ≈ 1."""
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    soft = lambda d: 1.0 / (1.0 + np.exp(d / 0.03))  # noqa: E731 - 1 inside (d < 0), 0 outside
    body = 0.5 * soft(np.hypot(x / 0.8, y / 0.65) - 1.0)
    out = []
    for f in range(frames):
        r = 0.22 + 0.06 * np.cos(2 * np.pi * f / frames)
        out.append(body + 0.5 * soft(np.hypot(x - 0.15, y + 0.05) - r))
    phase = np.exp(1j * (0.6 * x - 0.4 * y + 0.3 * x * y))
    return (np.stack(out) * phase[None]).astype(np.complex64)


def analytic_maps(coils: int, h: int, w: int) -> np.ndarray:
    """``(coils, h, w)`` complex64 smooth maps: coils on a ring outside the FOV, Gaussian falloff, linear phases."""
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    maps = []
    for c in range(coils):
        a = 2 * np.pi * c / coils
        cx, cy = 1.3 * np.cos(a), 1.3 * np.sin(a)
        mag = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 0.9 ** 2))
        maps.append(mag * np.exp(1j * (a + 0.8 * np.cos(a + 1.0) * x + 0.8 * np.sin(a + 2.0) * y)))
    return np.stack(maps).astype(np.complex64)


def simulate(images: np.ndarray, maps: np.ndarray, spokes: int, noise_std: float = 0.0, seed: int = 0,
             noise_samples: int = 0) -> CineData:
    """Golden-angle radial acquisition of ``images`` (2× readout oversampling) with optional white noise."""
    f, h, w = images.shape
    traj = radial_trajectory("goldenangle", f, spokes, 2 * max(h, w))
    op = MultiCoilNufft(torch.from_numpy(traj), torch.from_numpy(maps))
    with torch.no_grad():
        ksp = op(torch.from_numpy(images)).numpy()
    rng = np.random.default_rng(seed)
    cplx = lambda *s: (rng.standard_normal(s) + 1j * rng.standard_normal(s)) / np.sqrt(2)  # noqa: E731
    if noise_std > 0:
        ksp = ksp + noise_std * cplx(*ksp.shape)
    noise = (noise_std * cplx(maps.shape[0], noise_samples)).astype(np.complex64) if noise_samples else None
    return CineData(kspace=ksp.astype(np.complex64), traj=traj, matrix=(h, w), noise=noise)


@dataclass
class SimulatedCine:
    cine: CineData
    images: np.ndarray
    maps: np.ndarray
