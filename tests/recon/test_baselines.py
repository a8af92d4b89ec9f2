"""Adjoint and CG-SENSE on a simulated phantom: shapes, data consistency, CG-SENSE beats the adjoint."""

import numpy as np
import pytest
import torch

from dainr.config import CGSenseConfig, load_config
from dainr.metrics import quality
from dainr.recon import reconstruct
from dainr.recon.baselines import cgsense_recon
from dainr.recon.operators import build_problem
from dainr.simulate import simulate


def true_maps(matrix, frames, coils, seed):
    from dainr.phantom import cardiac_phantom

    return cardiac_phantom(matrix=matrix, frames=frames, coils=coils, seed=seed).coil_maps


@pytest.fixture(scope="module")
def series():
    return simulate("phantom", matrix=48, frames=4, coils=4, spokes=21, snr=0, trajectory="goldenangle", seed=3)


def test_cgsense_beats_adjoint(series):
    cine, truth = series.slices[0], series.truth[0]
    results = {}
    for method in ("adjoint", "cgsense"):
        cfg = load_config("cpu-test", overrides=[f"method={method}", "cgsense.iterations=10"])
        res = reconstruct(cine, cfg)
        assert res.images.shape == truth.shape and res.images.dtype == np.complex64
        results[method] = quality(res.images, truth).psnr
    assert results["cgsense"] > results["adjoint"] + 1.0
    assert results["cgsense"] > 20.0


def test_cg_residual_decreases(series):
    cine = series.slices[0]
    problem = build_problem(cine, true_maps(48, 4, 4, 3), torch.device("cpu"))
    _, iters, hist = cgsense_recon(problem, CGSenseConfig(iterations=6, tolerance=0.0))
    assert iters == 6 and hist[-1] < hist[0]


def test_cgsense_with_true_maps_recovers_truth():
    """Nyquist-sampled noiseless data, true coil maps: CG-SENSE converges close to the truth (the radial disc
    misses the k-space corners, which bounds the PSNR)."""
    s = simulate("phantom", matrix=32, frames=1, coils=4, spokes=64, snr=0, trajectory="uniform", seed=1)
    problem = build_problem(s.slices[0], true_maps(32, 1, 4, 1), torch.device("cpu"))
    x, _, _ = cgsense_recon(problem, CGSenseConfig(iterations=40, tolerance=1e-7))
    assert quality(x.numpy(), s.truth[0]).psnr > 30.0
