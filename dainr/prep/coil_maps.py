"""Coil sensitivity maps from the time-averaged k-space of the whole series.

Pipeline (:func:`estimate_coil_maps`):

1. pool all measured spokes of all frames and grid them with the ramp density of the pooled spoke count, through a
   k-space Hann window that keeps only the centre (:func:`dainr.prep.gridding.time_averaged_coil_images`): smooth,
   low-resolution coil images ``x_c = S_c · m`` of the time-averaged object ``m``;
2. per pixel, the sensitivity vector is the dominant eigenvector of the local coil covariance
   ``R(r) = Σ_{r' near r} x(r') x(r')ᴴ`` (Walsh, Gmitro & Marcellin, MRM 2000), or ``x / ‖x‖`` (``"rss"``);
3. the per-pixel phase, arbitrary in both methods, is fixed against a reference coil combination ``u``:
   ``S ← S · conj(uᴴS)/|uᴴS|`` (``u`` = first SVD virtual coil, or the strongest coil), which makes the maps smooth and
   moves the object's phase into the image;
4. maps are unit-norm per pixel (``Σ_c |S_c|² = 1``) inside the signal mask and zero outside it (optional).

Maps are ``(coils, H, W)`` complex64, ``[..., y, x]`` like images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dainr.data import CineData
from dainr.errors import ConfigError
from dainr.prep.gridding import time_averaged_coil_images

METHODS = ("walsh", "rss")
PHASE_REFERENCES = ("svd", "strongest")


def default_lowres_cutoff(n_spokes: int, matrix: tuple[int, int], max_cycles: float = 24.0,
                          min_cycles: float = 6.0) -> float:
    """k-space window radius (cycles/pixel) for coil-map images.

    The pooled spokes sample k-space without angular aliasing up to about ``S/π`` cycles per FOV (S spokes); coil
    maps need no more than ``max_cycles`` cycles per FOV (and never more than half the band, 0.25 cycles/pixel), and
    at least ``min_cycles`` are kept even when the spokes are fewer (Walsh's local covariance tolerates some streaking).
    """
    n = max(matrix)
    cycles = float(np.clip(n_spokes / np.pi, min_cycles, max_cycles))
    return min(0.25, cycles / n)


def _box_filter(x: np.ndarray, kernel: int) -> np.ndarray:
    """Mean over a ``kernel × kernel`` window on the last two axes (edges reflected); complex-safe."""
    size = (1,) * (x.ndim - 2) + (kernel, kernel)
    if np.iscomplexobj(x):
        return (ndimage.uniform_filter(x.real, size, mode="reflect")
                + 1j * ndimage.uniform_filter(x.imag, size, mode="reflect")).astype(x.dtype)
    return ndimage.uniform_filter(x, size, mode="reflect")


def walsh_maps(coil_images: np.ndarray, kernel: int = 5, n_iter: int = 30) -> np.ndarray:
    """Walsh's adaptive-combine sensitivities: dominant eigenvector of the local coil covariance.

    Parameters
    ----------
    coil_images:
        ``(coils, H, W)`` complex (low-resolution) coil images.
    kernel:
        Side of the square smoothing window (pixels) over which the ``(coils, coils)`` covariance is averaged.
    n_iter:
        Power iterations per pixel, started from the pixel's own coil vector (already ≈ the answer where one source
        dominates); the error falls as ``(λ₂/λ₁)^n_iter``, negligible wherever there is signal. Batched power
        iteration is ~7× faster than a batched ``eigh`` on 12 coils.

    Returns
    -------
    ``(coils, H, W)`` complex64, unit norm over coils at every pixel, arbitrary per-pixel phase (see
    :func:`reference_phase`).
    """
    c, h, w = coil_images.shape
    x = coil_images.astype(np.complex64)
    cov = _box_filter(x[:, None] * x[None].conj(), max(int(kernel), 1))  # (C, C, H, W)
    cov = np.ascontiguousarray(cov.transpose(2, 3, 0, 1)).reshape(h * w, c, c)
    v = x.reshape(c, -1).T[..., None] + np.complex64(1e-6 / np.sqrt(c))  # (HW, C, 1); the offset avoids 0/0
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(n_iter):
        v = cov @ v
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        v /= np.where(norm > 0, norm, 1.0)
    v = v[..., 0]
    # Pixels whose covariance is all zero (no signal at all) keep a unit-norm vector: the uniform one.
    dead = np.linalg.norm(v, axis=1) < 0.5
    v[dead] = 1.0 / np.sqrt(c)
    return np.ascontiguousarray(v.T).reshape(c, h, w).astype(np.complex64)


def rss_maps(coil_images: np.ndarray) -> np.ndarray:
    """``x_c / sqrt(Σ_c |x_c|²)``: coil images over their root-sum-of-squares; ``(coils, H, W)`` complex64."""
    rss = np.sqrt((np.abs(coil_images) ** 2).sum(0))
    return (coil_images / np.where(rss > 0, rss, 1.0)).astype(np.complex64)


def reference_vector(coil_images: np.ndarray, reference: str = "svd") -> np.ndarray:
    """``(coils,)`` unit coil combination ``u`` whose phase the maps take as zero.

    ``"svd"``: the first virtual coil (dominant eigenvector of ``Σ_r x(r) x(r)ᴴ``), a body-coil-like combination that
    rarely vanishes; ``"strongest"``: the coil with the most energy.
    """
    c = coil_images.shape[0]
    x = coil_images.reshape(c, -1).astype(np.complex128)
    if reference == "strongest":
        u = np.zeros(c, np.complex128)
        u[int(np.argmax((np.abs(x) ** 2).sum(1)))] = 1.0
        return u
    if reference == "svd":
        _, vecs = np.linalg.eigh(x @ x.conj().T)
        u = vecs[:, -1]
        big = u[np.argmax(np.abs(u))]
        return u * (abs(big) / big) if big != 0 else u
    raise ConfigError(f"unknown coil-map phase reference {reference!r}; choose one of {', '.join(PHASE_REFERENCES)}")


def reference_phase(maps: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Rotate each pixel's sensitivity vector so that ``uᴴ S(r)`` is real and >= 0; ``(coils, H, W)`` complex64."""
    proj = np.tensordot(u.conj(), maps, axes=(0, 0))  # (H, W)
    mag = np.abs(proj)
    rot = np.where(mag > 0, proj.conj() / np.where(mag > 0, mag, 1.0), 1.0)
    return (maps * rot[None]).astype(np.complex64)


def signal_mask(coil_images: np.ndarray, threshold: float, percentile: float = 99.0) -> np.ndarray:
    """``(H, W)`` bool: root-sum-of-squares above ``threshold`` × its ``percentile``-th percentile, holes filled."""
    rss = np.sqrt((np.abs(coil_images) ** 2).sum(0))
    level = np.percentile(rss, percentile)
    if level <= 0:
        return np.zeros(rss.shape, bool)
    return ndimage.binary_fill_holes(rss > threshold * level)


def estimate_coil_maps(cine: CineData, method: str = "walsh", kernel: int = 5, lowres: float | None = None,
                       mask_threshold: float | None = 0.05, phase_reference: str = "svd") -> np.ndarray:
    """Coil sensitivity maps of a radial cine from its time-averaged k-space.

    Parameters
    ----------
    cine:
        The series (all frames and coils; prewhiten/compress it first if the reconstruction will use such data).
    method:
        ``"walsh"`` (local covariance eigenvector) or ``"rss"`` (coil images over their root-sum-of-squares).
    kernel:
        Walsh smoothing window side, pixels of the ``cine.matrix`` grid.
    lowres:
        k-space Hann window radius in cycles/pixel; None = :func:`default_lowres_cutoff` of the pooled spoke count.
    mask_threshold:
        Maps are zeroed where the low-resolution root-sum-of-squares is below this fraction of its 99th percentile
        (enclosed holes kept); None keeps unit-norm maps everywhere.
    phase_reference:
        ``"svd"`` or ``"strongest"``, see :func:`reference_vector`.

    Returns
    -------
    ``(coils, H, W)`` complex64 maps with ``Σ_c |S_c|² = 1`` inside the mask (0 outside).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown coil-map method {method!r}; choose one of {', '.join(METHODS)}")
    n_measured = int(cine.n_frames * cine.n_spokes if cine.spoke_mask is None else np.count_nonzero(cine.spoke_mask))
    cutoff = default_lowres_cutoff(n_measured, cine.matrix) if lowres is None else float(lowres)
    images = time_averaged_coil_images(cine, cutoff)
    maps = walsh_maps(images, kernel) if method == "walsh" else rss_maps(images)
    maps = reference_phase(maps, reference_vector(images, phase_reference))
    if mask_threshold is not None:
        maps = maps * signal_mask(images, mask_threshold)[None]
    return maps.astype(np.complex64)
