"""A moving human cine ground truth from one real frame: the CMRxRecon short-axis frame
``CMRxRecon2024_demo_cine_sax.mat`` of ``../shared/cardiac_data`` (key ``kspace_full``, complex64 ``(512, 246)``
Cartesian k-space of one coil, one slice, one frame; the 512 readout samples are 2× oversampled, so the image pixels
are about square).

* Image: the magnitude of the centred inverse FFT of ``kspace_full`` (its coil's shading stays, its phase does not).
* Motion: a smooth periodic contraction about the heart. Frame ``f`` of ``F`` samples the image at
  ``c + (x − c)·(1 + a_f·g(|x − c|))`` with ``g(r) = exp(−r² / 2ρ²)`` (ρ ≈ the heart's radius, so the body around
  it stays still) and ``a_f = A·sin²(π f / F)``: at rest in frame 0, most contracted at mid-cycle, C^∞ and periodic
  over the cycle. The map is one-to-one for ``A < e^{3/2} / 2 ≈ 2.2``.
* Then as ACDC: the largest box of the target's aspect ratio centred on the heart, resampled smoothly to the grid,
  scaled to max 1, a smooth synthetic phase; coil maps of the real radial frame (:mod:`dainr.sources.radial_frame`),
  turned by three quarters so that they do not lie over this anatomy as over the ACDC source's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from scipy import ndimage

from dainr.sources.radial_frame import RADIAL_COILS, with_radial_maps
from dainr.sources.realdata import RealCine, check_frames, crop_and_resize, data_file, grid_shape, with_phase

CMRX_FILE = "CMRxRecon2024_demo_cine_sax.mat"
#: ``(row, col)`` of the heart's centre in the 512 × 246 image (read off the image: one frame shows no motion).
CMRX_HEART = (257.0, 140.0)
#: ρ, the contraction's Gaussian radius in pixels of that image (the heart spans about ±40 pixels).
CMRX_HEART_RADIUS = 35.0
#: A, the largest relative contraction (at the heart's centre; ≈ 0.6·A at radius ρ).
CMRX_CONTRACTION = 0.3
#: Frames when none are asked for (as many as the ACDC cine).
CMRX_FRAMES = 30
#: Quarter turns of the radial frame's coil layout (the ACDC source uses 0).
CMRX_COIL_TURNS = 3


def cmrx_frame(data_dir: Path | None = None) -> np.ndarray:
    """``(512, 246)`` float64 magnitude image of the CMRxRecon frame (centred inverse 2-D FFT of ``kspace_full``)."""
    k = scipy.io.loadmat(data_file(CMRX_FILE, data_dir))["kspace_full"].astype(np.complex128)
    return np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k))))


def contract(image: np.ndarray, centre: tuple[float, float], radius: float, amount: float) -> np.ndarray:
    """``image`` (real, ``(rows, cols)``) sampled at ``c + (x − c)(1 + amount·exp(−|x − c|² / 2·radius²))`` (cubic):
    the structures near ``centre`` drawn towards it by up to the fraction ``amount / (1 + amount)``."""
    if amount == 0:
        return image.copy()
    yy, xx = np.meshgrid(np.arange(image.shape[0], dtype=np.float64), np.arange(image.shape[1], dtype=np.float64),
                         indexing="ij")
    dy, dx = yy - centre[0], xx - centre[1]
    stretch = 1.0 + amount * np.exp(-(dy * dy + dx * dx) / (2.0 * radius * radius))
    return ndimage.map_coordinates(image, [centre[0] + dy * stretch, centre[1] + dx * stretch], order=3,
                                   mode="nearest")


def cmrx_images(matrix: int | tuple[int, int], frames: int | None = None, seed: int = 0,
                data_dir: Path | None = None, contraction: float = CMRX_CONTRACTION) -> np.ndarray:
    """The moving CMRxRecon cine on a ``matrix`` grid: ``(frames, H, W)`` complex64, magnitude max 1 (see
    :func:`cmrx_cine`)."""
    h, w = grid_shape(matrix)
    check_frames(frames)
    n = CMRX_FRAMES if frames is None else frames
    frame = cmrx_frame(data_dir)
    amounts = contraction * np.sin(np.pi * np.arange(n) / n) ** 2
    cine = np.stack([contract(frame, CMRX_HEART, CMRX_HEART_RADIUS, a) for a in amounts])
    return with_phase(crop_and_resize(cine, (h, w), CMRX_HEART), seed)


def cmrx_cine(matrix: int | tuple[int, int], frames: int | None = None, coils: int = RADIAL_COILS, seed: int = 0,
              data_dir: Path | None = None) -> RealCine:
    """Moving CMRxRecon ground truth: :func:`cmrx_images` (``frames`` None gives ``CMRX_FRAMES``) with the radial
    frame's coil maps turned by ``CMRX_COIL_TURNS``. Arguments, result and errors as
    :func:`dainr.sources.acdc.acdc_cine`."""
    return with_radial_maps(cmrx_images, matrix, frames, coils, seed, data_dir, CMRX_COIL_TURNS)
