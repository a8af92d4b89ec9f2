"""A small-animal cine ground truth: the real rat short-axis cine ``HGGM_dataCine8fr.mat`` of ``../shared/cardiac_data``
(key ``image0``, float64 magnitude ``(192 rows, 192 cols, 8 frames)`` over one heartbeat).

The cine is cropped around the heart (the largest box of the target's aspect ratio; for a square grid the whole field
of view), resampled to the requested grid, made longer (or shorter) by a periodic cubic spline in time through the 8
frames (C² over the cycle, so frame 0 follows the last frame smoothly; with so few frames a Fourier resampling would
ring), scaled to max 1 and given a smooth synthetic phase. The images carry the acquisition's own noise, which stays
in the truth. Coil maps: those of the real radial frame (:mod:`dainr.sources.radial_frame`), turned by a quarter so
that they do not lie over this anatomy as they lie over the ACDC source's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from dainr.sources.radial_frame import RADIAL_COILS, with_radial_maps
from dainr.sources.realdata import (RealCine, check_frames, crop_and_resize, data_file, grid_shape, moving_centre,
                                    periodic_resample, with_phase)

RAT_FILE = "HGGM_dataCine8fr.mat"
#: Frames of the data over one heartbeat.
RAT_FRAMES = 8
#: Quarter turns of the radial frame's coil layout (the ACDC source uses 0).
RAT_COIL_TURNS = 1


def rat_images(matrix: int | tuple[int, int], frames: int | None = None, seed: int = 0,
               data_dir: Path | None = None) -> np.ndarray:
    """The rat cine on a ``matrix`` grid: ``(frames, H, W)`` complex64, magnitude max 1 (see :func:`rat_cine`)."""
    h, w = grid_shape(matrix)
    check_frames(frames)
    raw = scipy.io.loadmat(data_file(RAT_FILE, data_dir))["image0"]  # (rows, cols, frames) float64
    cine = np.moveaxis(raw, -1, 0)  # (8, 192, 192)
    mag = crop_and_resize(cine, (h, w), moving_centre(cine))
    return with_phase(periodic_resample(mag, frames, "spline"), seed)


def rat_cine(matrix: int | tuple[int, int], frames: int | None = None, coils: int = RADIAL_COILS, seed: int = 0,
             data_dir: Path | None = None) -> RealCine:
    """Rat-heart ground truth: :func:`rat_images` (``frames`` None keeps the 8 of the data, others come from the
    periodic cubic spline in time) with the radial frame's coil maps turned by ``RAT_COIL_TURNS``. Arguments, result
    and errors as :func:`dainr.sources.acdc.acdc_cine`."""
    return with_radial_maps(rat_images, matrix, frames, coils, seed, data_dir, RAT_COIL_TURNS)
