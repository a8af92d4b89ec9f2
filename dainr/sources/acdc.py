"""A realistic cine ground truth built from real data in ``../shared/cardiac_data`` (see its README).

* Images: the ACDC short-axis cine ``dmri_tgv2_demo_data.mat`` (key ``demo_data``, uint8 ``(184 rows, 256 cols,
  30 frames)`` over one heartbeat, magnitude only), cropped around the heart, resampled to the requested grid and frame
  count, scaled to max 1 and given a smooth synthetic phase.
* Coil maps: estimated (:func:`dainr.prep.estimate_coil_maps`) from the real 12-coil radial frame
  ``gpuNUFFT_radial_cardiac_25_projections.mat``, SVD-compressed to the requested coil count, smoothly extended into
  low-signal regions and resampled to the cine grid.

Nothing is downloaded: when a file is missing, :class:`~dainr.errors.InputError` says which and where.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
import os
from pathlib import Path

import numpy as np
import scipy.io
import scipy.signal
from scipy import ndimage
from skimage.transform import resize

from dainr.data import CineData
from dainr.errors import ConfigError, InputError
from dainr.prep import compress, compression_matrix, estimate_coil_maps, time_averaged_coil_images
from dainr.prep.coil_maps import default_lowres_cutoff

#: ``<repo root>/../shared/cardiac_data``.
#: ``$DAINR_DATA_DIR`` when set, else ``../shared/cardiac_data`` beside the repository.
DEFAULT_DATA_DIR = Path(os.environ.get("DAINR_DATA_DIR") or
                        Path(__file__).resolve().parents[2].parent / "shared" / "cardiac_data")
ACDC_FILE = "dmri_tgv2_demo_data.mat"
RADIAL_FILE = "gpuNUFFT_radial_cardiac_25_projections.mat"
#: Coils of the real radial frame.
RADIAL_COILS = 12
#: Grid on which the radial frame's maps are estimated: its whole (2× oversampled) readout field of view.
RADIAL_GRID = (256, 256)


@dataclass
class AcdcCine:
    """Ground truth for a radial simulation.

    Attributes
    ----------
    images:
        ``(frames, H, W)`` complex64 cine, magnitude max 1, smooth synthetic phase (static over the cycle).
    coil_maps:
        ``(coils, H, W)`` complex64 sensitivities, ``Σ_c |S_c|² = 1`` at every pixel.
    """

    images: np.ndarray
    coil_maps: np.ndarray


def data_file(name: str, data_dir: Path | None = None) -> Path:
    """Path of a file of the real-data folder; :class:`InputError` (one line) when it is missing."""
    folder = Path(DEFAULT_DATA_DIR if data_dir is None else data_dir)
    path = folder / name
    if not path.is_file():
        raise InputError(f"real-data file {name} not found (looked for {path}); put the shared cardiac_data folder "
                         "there or set DAINR_DATA_DIR, or use `--source phantom`, which needs no data")
    return path


def _grid(matrix: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (matrix, matrix) if np.isscalar(matrix) else tuple(matrix)
    if int(h) < 8 or int(w) < 8:
        raise ConfigError(f"matrix must be at least 8×8, got {h}×{w}")
    return int(h), int(w)


def _crop_box(shape: tuple[int, int], aspect: float, centre: tuple[float, float]) -> tuple[slice, slice]:
    """Largest box of ``rows/cols = aspect`` inside ``shape``, centred on ``centre`` as far as the edges allow."""
    rows, cols = shape
    h, w = (rows, int(round(rows / aspect))) if rows / aspect <= cols else (int(round(cols * aspect)), cols)
    y0 = int(np.clip(round(centre[0] - h / 2), 0, rows - h))
    x0 = int(np.clip(round(centre[1] - w / 2), 0, cols - w))
    return slice(y0, y0 + h), slice(x0, x0 + w)


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Smooth (cubic, anti-aliased) resampling of a real 2-D image."""
    return resize(img, shape, order=3, mode="edge", anti_aliasing=img.shape[0] > shape[0] or img.shape[1] > shape[1],
                  preserve_range=True)


def _resize_complex(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return _resize(img.real, shape) + 1j * _resize(img.imag, shape)


def synthetic_phase(shape: tuple[int, int], seed: int, peak: float = np.pi / 2) -> np.ndarray:
    """``(H, W)`` smooth phase (radians, |φ| <= ``peak``): a random quadratic polynomial over the FOV, from ``seed``."""
    rng = np.random.default_rng(seed)
    v, u = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    terms = np.stack([np.ones_like(u), u, v, u * v, u * u, v * v])
    p = np.tensordot(rng.standard_normal(len(terms)), terms, axes=1)
    return peak * p / max(np.abs(p).max(), 1e-12)


def acdc_images(matrix: int | tuple[int, int], frames: int | None = None, seed: int = 0,
                data_dir: Path | None = None) -> np.ndarray:
    """The ACDC cine on a ``matrix`` grid: ``(frames, H, W)`` complex64, magnitude max 1 (see :func:`acdc_cine`)."""
    h, w = _grid(matrix)
    if frames is not None and frames < 1:
        raise ConfigError(f"frames must be >= 1, got {frames}")
    raw = scipy.io.loadmat(data_file(ACDC_FILE, data_dir))["demo_data"]  # (rows, cols, frames) uint8
    cine = np.moveaxis(raw.astype(np.float32), -1, 0)  # (30, 184, 256)
    # The heart is where the image changes over the cycle.
    motion = ndimage.gaussian_filter(cine.std(0), 5)
    ys, xs = np.nonzero(motion > 0.5 * motion.max())
    box = _crop_box(cine.shape[1:], h / w, (ys.mean(), xs.mean()))
    mag = np.stack([_resize(f[box], (h, w)) for f in cine])
    if frames is not None and frames != mag.shape[0]:
        mag = scipy.signal.resample(mag, frames, axis=0)  # Fourier: the cine is one period of the heartbeat
    mag = np.maximum(mag, 0.0)
    mag /= mag.max()
    return (mag * np.exp(1j * synthetic_phase((h, w), seed))[None]).astype(np.complex64)


def radial_cardiac_frame(data_dir: Path | None = None, matrix: tuple[int, int] = (256, 256)) -> CineData:
    """The real 12-coil radial frame (25 spokes × 256 samples) as a one-frame :class:`CineData`.

    The file stores ``k = kx + i·ky`` in gpuNUFFT's MATLAB convention, where the first k component pairs with the first
    array axis (rows). In ours ``traj[..., 0]`` pairs with columns, so ``traj = (imag k, real k)``; this reproduces
    the README's preview image. The readout samples span [-0.5, 0.5] in steps of 1/255 cycles/pixel (2× oversampled
    readout), so a 256×256 grid shows the whole field of view and 128×128 its central half.
    """
    mat = scipy.io.loadmat(data_file(RADIAL_FILE, data_dir))
    raw, k = mat["rawdata"], mat["k"]  # (samples, spokes, coils), (samples, spokes)
    kspace = np.transpose(raw, (2, 1, 0))[None].astype(np.complex64)  # (1, coils, spokes, samples)
    traj = np.stack([k.imag.T, k.real.T], axis=-1)[None].astype(np.float32)  # (1, spokes, samples, 2)
    return CineData(kspace=kspace, traj=traj, matrix=tuple(int(v) for v in matrix))


def _normalise(maps: np.ndarray) -> np.ndarray:
    norm = np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    return (maps / np.maximum(norm, 1e-12)).astype(np.complex64)


@functools.lru_cache(maxsize=4)
def _smooth_radial_maps(coils: int, data_dir: str, smooth_px: float) -> np.ndarray:
    """``(coils, 256, 256)`` maps of the real radial frame, extended smoothly into low-signal regions (cached: every
    slice of a multi-slice simulation reuses them)."""
    frame = radial_cardiac_frame(Path(data_dir), RADIAL_GRID)
    frame.kspace = compress(frame.kspace, compression_matrix(frame.kspace, coils))
    maps = estimate_coil_maps(frame, mask_threshold=None)
    # Trust the estimate where the frame has signal; elsewhere fill in from nearby by normalised convolution.
    low = time_averaged_coil_images(frame, cutoff=default_lowres_cutoff(frame.n_spokes, frame.matrix))
    weight = (np.abs(low) ** 2).sum(0)
    sigma = (0, smooth_px, smooth_px)
    num = ndimage.gaussian_filter(maps.real * weight, sigma) + 1j * ndimage.gaussian_filter(maps.imag * weight, sigma)
    den = ndimage.gaussian_filter(weight, smooth_px)
    out = _normalise(num / np.maximum(den, 1e-12 * den.max()))
    out.flags.writeable = False
    return out


def radial_coil_maps(shape: tuple[int, int], coils: int = RADIAL_COILS, data_dir: Path | None = None,
                     field: float = 0.75, smooth_px: float = 12.0) -> np.ndarray:
    """Coil maps of the real radial frame, smooth everywhere, on an ``(H, W)`` grid.

    Parameters
    ----------
    shape:
        ``(H, W)`` target grid.
    coils:
        1..12; fewer than 12 are SVD virtual coils of the frame's k-space.
    field:
        Fraction of the frame's 256-pixel field of view (centred) that is mapped onto the target grid; 0.75 keeps the
        whole torso region the coils see.
    smooth_px:
        Gaussian width (pixels of the 256 grid) of the normalised convolution that extends the maps from where the
        frame has signal into the rest of the field of view.

    Returns
    -------
    ``(coils, H, W)`` complex64, ``Σ_c |S_c|² = 1`` at every pixel.
    """
    if not 1 <= coils <= RADIAL_COILS:
        raise ConfigError(f"the real radial frame has {RADIAL_COILS} coils; ask for 1..{RADIAL_COILS}, not {coils}")
    maps = _smooth_radial_maps(coils, str(Path(DEFAULT_DATA_DIR if data_dir is None else data_dir).resolve()),
                               smooth_px)
    # A centred box of the target's aspect ratio whose longer side is `field` of the frame's field of view.
    side = field * min(RADIAL_GRID)
    h, w = (side, side * shape[1] / shape[0]) if shape[0] >= shape[1] else (side * shape[0] / shape[1], side)
    h, w = max(2, int(round(h))), max(2, int(round(w)))
    y0, x0 = (RADIAL_GRID[0] - h) // 2, (RADIAL_GRID[1] - w) // 2
    crop = maps[:, y0:y0 + h, x0:x0 + w]
    return _normalise(np.stack([_resize_complex(m, shape) for m in crop]))


def acdc_cine(matrix: int | tuple[int, int], frames: int | None = None, coils: int = RADIAL_COILS, seed: int = 0,
              data_dir: Path | None = None) -> AcdcCine:
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
    :class:`AcdcCine` with ``images (frames, H, W)`` and ``coil_maps (coils, H, W)``, complex64.

    Raises
    ------
    InputError
        When a data file is missing (``--source phantom`` needs no data).
    ConfigError
        For a matrix below 8, ``frames < 1`` or a coil count outside 1..12.
    """
    h, w = _grid(matrix)
    if not 1 <= coils <= RADIAL_COILS:
        raise ConfigError(f"the real radial frame has {RADIAL_COILS} coils; ask for 1..{RADIAL_COILS}, not {coils}")
    images = acdc_images((h, w), frames, seed, data_dir)
    return AcdcCine(images=images, coil_maps=radial_coil_maps((h, w), coils, data_dir))
