"""Image quality against a ground truth: PSNR and SSIM on per-frame max-normalised magnitude (scikit-image)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


@dataclass
class Quality:
    """Mean and per-frame PSNR (dB) and SSIM."""

    psnr: float
    ssim: float
    psnr_frames: list[float]
    ssim_frames: list[float]


def normalise_frames(images: np.ndarray) -> np.ndarray:
    """``(frames, H, W)`` -> magnitude divided by each frame's maximum (float64)."""
    mag = np.abs(images).astype(np.float64)
    peak = mag.reshape(mag.shape[0], -1).max(axis=1)
    return mag / np.where(peak > 0, peak, 1.0)[:, None, None]


def quality(recon: np.ndarray, truth: np.ndarray, support: np.ndarray | None = None) -> Quality:
    """PSNR/SSIM of ``recon`` against ``truth``, both ``(frames, H, W)``, averaged over frames (data_range 1).

    ``support``: optional ``(H, W)`` mask that the reconstruction (never the truth) is multiplied by before it is
    normalised and scored. To compare methods, score every one through the same mask (a benchmark passes the coil-map
    support of the data, which DA-INR already applies to its own output): what differs is then the reconstruction,
    not the scoring.
    """
    if recon.shape != truth.shape:
        raise ValueError(f"reconstruction {recon.shape} and truth {truth.shape} differ in shape")
    if support is not None:
        if support.shape != recon.shape[1:]:
            raise ValueError(f"support {support.shape} and frames {recon.shape[1:]} differ in shape")
        recon = recon * support
    r, t = normalise_frames(recon), normalise_frames(truth)
    psnr = [float(peak_signal_noise_ratio(t[i], r[i], data_range=1.0)) for i in range(len(r))]
    ssim = [float(structural_similarity(t[i], r[i], data_range=1.0)) for i in range(len(r))]
    return Quality(float(np.mean(psnr)), float(np.mean(ssim)), psnr, ssim)
