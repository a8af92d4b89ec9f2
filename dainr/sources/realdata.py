"""What the real-data sources share: the data folder, the result type, cropping and resampling in space and time, and
the smooth synthetic phase that every magnitude-only cine gets.

Nothing is downloaded: when a file is missing, :class:`~dainr.errors.InputError` says which and where.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.interpolate
import scipy.signal
from scipy import ndimage
from skimage.transform import resize

from dainr.errors import ConfigError, InputError

#: ``$DAINR_DATA_DIR`` when set, else ``../shared/cardiac_data`` beside the repository.
DEFAULT_DATA_DIR = Path(os.environ.get("DAINR_DATA_DIR") or
                        Path(__file__).resolve().parents[2].parent / "shared" / "cardiac_data")


@dataclass
class RealCine:
    """Ground truth for a radial simulation built from real data.

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


def grid_shape(matrix: int | tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` of a matrix given as N (N×N) or ``(H, W)``; :class:`ConfigError` below 8×8."""
    h, w = (matrix, matrix) if np.isscalar(matrix) else tuple(matrix)
    if int(h) < 8 or int(w) < 8:
        raise ConfigError(f"matrix must be at least 8×8, got {h}×{w}")
    return int(h), int(w)


def check_frames(frames: int | None) -> None:
    if frames is not None and frames < 1:
        raise ConfigError(f"frames must be >= 1, got {frames}")


def crop_box(shape: tuple[int, int], aspect: float, centre: tuple[float, float]) -> tuple[slice, slice]:
    """Largest box of ``rows/cols = aspect`` inside ``shape``, centred on ``centre`` as far as the edges allow."""
    rows, cols = shape
    h, w = (rows, int(round(rows / aspect))) if rows / aspect <= cols else (int(round(cols * aspect)), cols)
    y0 = int(np.clip(round(centre[0] - h / 2), 0, rows - h))
    x0 = int(np.clip(round(centre[1] - w / 2), 0, cols - w))
    return slice(y0, y0 + h), slice(x0, x0 + w)


def moving_centre(cine: np.ndarray) -> tuple[float, float]:
    """``(row, col)`` centre of where a real ``(frames, rows, cols)`` cine changes most over the cycle (the heart)."""
    motion = ndimage.gaussian_filter(cine.std(0), 5)
    ys, xs = np.nonzero(motion > 0.5 * motion.max())
    return float(ys.mean()), float(xs.mean())


def resize_real(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Smooth (cubic, anti-aliased) resampling of a real 2-D image."""
    return resize(img, shape, order=3, mode="edge", anti_aliasing=img.shape[0] > shape[0] or img.shape[1] > shape[1],
                  preserve_range=True)


def resize_complex(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return resize_real(img.real, shape) + 1j * resize_real(img.imag, shape)


def crop_and_resize(cine: np.ndarray, shape: tuple[int, int], centre: tuple[float, float]) -> np.ndarray:
    """``(frames, rows, cols)`` real cine -> ``(frames, H, W)``: the largest box of the target's aspect ratio centred
    on ``centre``, resampled smoothly to ``shape``."""
    box = crop_box(cine.shape[1:], shape[0] / shape[1], centre)
    return np.stack([resize_real(f[box], shape) for f in cine])


def periodic_resample(mag: np.ndarray, frames: int | None, kind: str) -> np.ndarray:
    """Resample a ``(F, H, W)`` cine that is one period of a cycle to ``frames`` frames (None keeps F).

    ``kind``: ``fourier`` (band-limited, :func:`scipy.signal.resample`; fine for a well-sampled cycle) or ``spline``
    (periodic cubic spline through the frames, C² in time: no Fourier ringing when the cycle has few frames). Frame
    ``f`` of the output sits at phase ``f / frames`` of the cycle, as frame ``i`` of the input sits at ``i / F``.
    """
    if frames is None or frames == mag.shape[0]:
        return mag
    if kind == "fourier":
        return scipy.signal.resample(mag, frames, axis=0)
    if kind == "spline":
        n = mag.shape[0]
        t = np.arange(n + 1) / n
        spline = scipy.interpolate.CubicSpline(t, np.concatenate([mag, mag[:1]]), axis=0, bc_type="periodic")
        return spline(np.arange(frames) / frames)
    raise ValueError(f"unknown resampling {kind!r}; choose fourier or spline")


def synthetic_phase(shape: tuple[int, int], seed: int, peak: float = np.pi / 2) -> np.ndarray:
    """``(H, W)`` smooth phase (radians, |φ| <= ``peak``): a random quadratic polynomial over the FOV, from ``seed``."""
    rng = np.random.default_rng(seed)
    v, u = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    terms = np.stack([np.ones_like(u), u, v, u * v, u * u, v * v])
    p = np.tensordot(rng.standard_normal(len(terms)), terms, axes=1)
    return peak * p / max(np.abs(p).max(), 1e-12)


def with_phase(mag: np.ndarray, seed: int) -> np.ndarray:
    """``(F, H, W)`` magnitude -> complex64 cine: clipped at 0, scaled to max 1, times :func:`synthetic_phase`."""
    mag = np.maximum(mag, 0.0)
    mag = mag / mag.max()
    return (mag * np.exp(1j * synthetic_phase(mag.shape[1:], seed))[None]).astype(np.complex64)
