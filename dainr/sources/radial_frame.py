"""The real 12-coil radial cardiac frame (``gpuNUFFT_radial_cardiac_25_projections.mat``) and the smooth coil maps
estimated from it, which every real-data source uses as its receive sensitivities (the shared data hold no other
multi-coil acquisition).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.io
from scipy import ndimage

from dainr.data import CineData
from dainr.errors import ConfigError
from dainr.prep import compress, compression_matrix, estimate_coil_maps, time_averaged_coil_images
from dainr.prep.coil_maps import default_lowres_cutoff
from dainr.sources.realdata import DEFAULT_DATA_DIR, RealCine, data_file, grid_shape, resize_complex

RADIAL_FILE = "gpuNUFFT_radial_cardiac_25_projections.mat"
#: Coils of the real radial frame.
RADIAL_COILS = 12
#: Grid on which the radial frame's maps are estimated: its whole (2× oversampled) readout field of view.
RADIAL_GRID = (256, 256)


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


def check_coils(coils: int) -> None:
    if not 1 <= coils <= RADIAL_COILS:
        raise ConfigError(f"the real radial frame has {RADIAL_COILS} coils; ask for 1..{RADIAL_COILS}, not {coils}")


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
                     field: float = 0.75, smooth_px: float = 12.0, turns: int = 0) -> np.ndarray:
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
    turns:
        Quarter turns (counter-clockwise, :func:`numpy.rot90`) of the coil layout relative to the image, so that two
        sources do not share the same sensitivities over their anatomy.

    Returns
    -------
    ``(coils, H, W)`` complex64, ``Σ_c |S_c|² = 1`` at every pixel.
    """
    check_coils(coils)
    maps = _smooth_radial_maps(coils, str(Path(DEFAULT_DATA_DIR if data_dir is None else data_dir).resolve()),
                               smooth_px)
    grid = tuple(shape) if turns % 2 == 0 else (shape[1], shape[0])  # the grid before the turn
    # A centred box of the grid's aspect ratio whose longer side is `field` of the frame's field of view.
    side = field * min(RADIAL_GRID)
    h, w = (side, side * grid[1] / grid[0]) if grid[0] >= grid[1] else (side * grid[0] / grid[1], side)
    h, w = max(2, int(round(h))), max(2, int(round(w)))
    y0, x0 = (RADIAL_GRID[0] - h) // 2, (RADIAL_GRID[1] - w) // 2
    crop = maps[:, y0:y0 + h, x0:x0 + w]
    out = _normalise(np.stack([resize_complex(m, grid) for m in crop]))
    return np.ascontiguousarray(np.rot90(out, turns, axes=(1, 2))) if turns % 4 else out


def with_radial_maps(images: Callable[..., np.ndarray], matrix: int | tuple[int, int], frames: int | None,
                     coils: int, seed: int, data_dir: Path | None, turns: int = 0) -> RealCine:
    """A source's :class:`RealCine`: ``images((H, W), frames, seed, data_dir)`` and the radial frame's coil maps
    (:func:`radial_coil_maps`, turned by ``turns`` quarters) on the same grid; checks the matrix and coil count first."""
    h, w = grid_shape(matrix)
    check_coils(coils)
    return RealCine(images=images((h, w), frames, seed, data_dir),
                    coil_maps=radial_coil_maps((h, w), coils, data_dir, turns=turns))
