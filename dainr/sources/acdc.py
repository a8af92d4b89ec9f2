"""A realistic cine ground truth built from real data in ``../shared/cardiac_data`` (see its README).

* Images: the ACDC short-axis cine ``dmri_tgv2_demo_data.mat`` (key ``demo_data``, uint8 ``(184 rows, 256 cols,
  30 frames)`` over one heartbeat, magnitude only), cropped around the heart, resampled to the requested grid and frame
  count, scaled to max 1 and given a smooth synthetic phase.
* Coil maps: estimated (:func:`dainr.prep.estimate_coil_maps`) from the real 12-coil radial frame
  ``gpuNUFFT_radial_cardiac_25_projections.mat``, SVD-compressed to the requested coil count, smoothly extended into
  low-signal regions and resampled to the cine grid (:mod:`dainr.sources.radial_frame`).

Nothing is downloaded: when a file is missing, :class:`~dainr.errors.InputError` says which and where.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from dainr.sources.radial_frame import (  # noqa: F401  (RADIAL_FILE, radial_cardiac_frame: the older import path)
    RADIAL_COILS, RADIAL_FILE, radial_cardiac_frame, with_radial_maps)
from dainr.sources.realdata import (RealCine, check_frames, crop_and_resize, data_file, grid_shape, moving_centre,
                                    periodic_resample, with_phase)

ACDC_FILE = "dmri_tgv2_demo_data.mat"


def acdc_images(matrix: int | tuple[int, int], frames: int | None = None, seed: int = 0,
                data_dir: Path | None = None) -> np.ndarray:
    """The ACDC cine on a ``matrix`` grid: ``(frames, H, W)`` complex64, magnitude max 1 (see :func:`acdc_cine`)."""
    h, w = grid_shape(matrix)
    check_frames(frames)
    raw = scipy.io.loadmat(data_file(ACDC_FILE, data_dir))["demo_data"]  # (rows, cols, frames) uint8
    cine = np.moveaxis(raw.astype(np.float32), -1, 0)  # (30, 184, 256)
    mag = crop_and_resize(cine, (h, w), moving_centre(cine))
    # Fourier: the cine is one period of the heartbeat, finely sampled.
    return with_phase(periodic_resample(mag, frames, "fourier"), seed)


def acdc_cine(matrix: int | tuple[int, int], frames: int | None = None, coils: int = RADIAL_COILS, seed: int = 0,
              data_dir: Path | None = None) -> RealCine:
    """Realistic ground truth for radial cine simulations.

    Parameters
    ----------
    matrix:
        Grid side N (N×N), or ``(H, W)``.
    frames:
        Frames over the heartbeat; None keeps the 30 of the data, others are resampled periodically (Fourier).
    coils:
        1..12 receive coils.
    seed:
        Seed of the smooth synthetic phase.
    data_dir:
        Folder holding the real data; default ``<repo root>/../shared/cardiac_data``.

    Returns
    -------
    :class:`RealCine` with ``images (frames, H, W)`` and ``coil_maps (coils, H, W)``, complex64.

    Raises
    ------
    InputError
        When a data file is missing (``--source phantom`` needs no data).
    ConfigError
        For a matrix below 8, ``frames < 1`` or a coil count outside 1..12.
    """
    return with_radial_maps(acdc_images, matrix, frames, coils, seed, data_dir)
