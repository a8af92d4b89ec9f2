"""``dainr.metrics.quality``: every reconstruction scored through the same support mask."""

import numpy as np
import pytest

from dainr.metrics import quality


def test_support_masks_the_reconstruction_only():
    rng = np.random.default_rng(0)
    truth = np.zeros((2, 16, 16), np.complex64)
    truth[:, 4:12, 4:12] = 1.0
    support = np.zeros((16, 16), bool)
    support[2:14, 2:14] = True
    recon = truth + 0.05 * rng.standard_normal(truth.shape)
    recon[:, 0, :] = 0.9  # junk outside the support
    masked = quality(recon, truth, support)
    assert masked.psnr > quality(recon, truth).psnr + 3
    assert masked.psnr == quality(recon * support, truth).psnr
    # The truth is never masked: signal of the truth outside the support counts against every method alike.
    truth_out = truth.copy()
    truth_out[:, 0, 0] = 1.0
    assert quality(recon, truth_out, support).psnr < masked.psnr


def test_support_shape_is_checked():
    with pytest.raises(ValueError, match="support"):
        quality(np.ones((2, 8, 8)), np.ones((2, 8, 8)), np.ones((8, 9), bool))
