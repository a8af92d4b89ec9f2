"""Radial trajectories in ISMRMRD units (cycles/pixel in [-0.5, 0.5)).

Angle conventions (ARCHITECTURE.md):

* ``goldenangle``: spoke with global counter n (``idx.kspace_encode_step_1``, never reset) has θ_n = n·π/φ,
  φ the golden ratio (111.246°);
* ``uniform`` (ISMRMRD ``radial``): spoke s of S in a frame has θ = π·s/S;
* ``tddip``: the reference code's trajectory (DAINR_METHOD.md §2): θ_i = 111.246·(i+1) used as radians, and its
  first k component pairs with image rows.

A spoke at angle θ has kx = k·cos θ (image columns) and ky = k·sin θ (image rows).
"""

from __future__ import annotations

import math

import numpy as np

GOLDEN_RATIO = (1.0 + math.sqrt(5.0)) / 2.0
#: The golden-angle increment π/φ in radians (111.246°).
GOLDEN_ANGLE_RAD = math.pi / GOLDEN_RATIO

TRAJECTORY_KINDS = ("goldenangle", "uniform", "tddip")


def readout_positions(n_samples: int, center_sample: int | None = None, dk: float | None = None) -> np.ndarray:
    """Radial position of each readout sample in cycles/pixel.

    Parameters
    ----------
    n_samples:
        Samples per spoke, Ns (2·N for the usual 2× readout oversampling).
    center_sample:
        Index of k = 0 (ISMRMRD ``center_sample``); default ``Ns // 2``.
    dk:
        Sample spacing in cycles/pixel, ``reconFOV / (encodedFOV · reconMatrix)``; default ``1/Ns``, so the Ns samples
        span [-0.5, 0.5).

    Returns
    -------
    ``(Ns,)`` float64 radii (signed).
    """
    c = n_samples // 2 if center_sample is None else center_sample
    step = 1.0 / n_samples if dk is None else dk
    return (np.arange(n_samples) - c) * step


def spoke_angles(kind: str, n_frames: int, n_spokes: int, first_counter: int = 0,
                 angle_increment_rad: float | None = None) -> np.ndarray:
    """Angles θ (radians) of every spoke of a cine acquired frame after frame (:func:`angles_from_counter`'s rules).

    Parameters
    ----------
    kind:
        ``goldenangle``, ``uniform`` or ``tddip``.
    n_frames, n_spokes:
        Frames and spokes per frame.
    first_counter:
        Global spoke counter of the first spoke.
    angle_increment_rad:
        Overrides the rule's angle increment (e.g. a tiny golden angle).

    Returns
    -------
    ``(frames, spokes)`` float64 angles.
    """
    s = np.broadcast_to(np.arange(n_spokes), (n_frames, n_spokes))
    counters = first_counter + np.arange(n_frames)[:, None] * n_spokes + s
    return angles_from_counter(kind, counters, s, n_spokes, angle_increment_rad)


def angles_from_counter(kind: str, counters: np.ndarray, spoke_in_frame: np.ndarray, spokes_per_frame: int,
                        angle_increment_rad: float | None = None) -> np.ndarray:
    """Angles (radians) of spokes from their counters: the one place the angle rules live.

    ``goldenangle`` uses the global counter ``idx.kspace_encode_step_1`` (θ = n·π/φ); ``uniform`` uses the spoke's
    position s within its frame of S spokes (θ = π·s/S); ``tddip`` uses the global counter as the reference code's i
    (θ = 111.246·(i+1), as radians). ``angle_increment_rad`` replaces the golden or uniform increment.
    """
    if kind == "goldenangle":
        inc = GOLDEN_ANGLE_RAD if angle_increment_rad is None else angle_increment_rad
        return counters.astype(np.float64) * inc
    if kind == "uniform":
        if angle_increment_rad is not None:
            return spoke_in_frame.astype(np.float64) * angle_increment_rad
        return np.pi * spoke_in_frame.astype(np.float64) / spokes_per_frame
    if kind == "tddip":
        return 111.246 * (counters.astype(np.float64) + 1)
    raise ValueError(f"unknown trajectory kind {kind!r}; choose one of {', '.join(TRAJECTORY_KINDS)}")


def readout_radii(kind: str, n_samples: int, center_sample: int | None = None, dk: float | None = None) -> np.ndarray:
    """Radius of each readout sample (cycles/pixel): :func:`readout_positions`, except ``tddip``, whose reference
    readout ``(m − (Ns−1)/2)·Δk`` has no k = 0 sample and ignores ``center_sample``."""
    if kind == "tddip":
        return (np.arange(n_samples) - (n_samples - 1) / 2.0) * (1.0 / n_samples if dk is None else dk)
    return readout_positions(n_samples, center_sample, dk)


def trajectory_from_angles(angles: np.ndarray, radii: np.ndarray, kind: str = "goldenangle") -> np.ndarray:
    """Sample positions for spokes at ``angles`` (any shape A) with ``radii`` (Ns,): ``A + (Ns, 2)`` float32."""
    k = radii[None, :]
    a = angles.reshape(-1, 1)
    c, s = k * np.cos(a), k * np.sin(a)
    # tddip: the reference pairs k·cosθ with image rows, so it becomes ky.
    kx, ky = (s, c) if kind == "tddip" else (c, s)
    out = np.stack([kx, ky], axis=-1).astype(np.float32)
    return out.reshape(angles.shape + (len(radii), 2))


def radial_trajectory(kind: str, n_frames: int, n_spokes: int, n_samples: int, first_counter: int = 0,
                      angle_increment_rad: float | None = None) -> np.ndarray:
    """A radial cine trajectory ``(frames, spokes, samples, 2)`` float32 in cycles/pixel.

    ``tddip`` uses the reference readout ``(m − (Ns−1)/2)/Ns`` (no k = 0 sample); the others put k = 0 at ``Ns//2``.
    """
    radii = readout_radii(kind, n_samples)
    angles = spoke_angles(kind, n_frames, n_spokes, first_counter, angle_increment_rad)
    return trajectory_from_angles(angles, radii, kind)
