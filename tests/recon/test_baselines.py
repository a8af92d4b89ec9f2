"""Adjoint and CG-SENSE on a simulated phantom: shapes, data consistency, CG-SENSE beats the adjoint."""

import dataclasses

import numpy as np
import pytest
import torch

from dainr.config import CGSenseConfig, load_config
from dainr.metrics import quality
from dainr.recon import reconstruct
from dainr.recon.baselines import adjoint_chunk, adjoint_recon, cgsense_recon
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


def test_cg_solves_the_regularised_normal_equations():
    """Per-frame CG-SENSE minimises f(x) = ½ xᴴNx − Re bᴴx with N = AᴴMA + λI, b = AᴴMy: f falls at every
    iteration in every frame, the reported residual is the true ‖b − Nx‖/‖b‖, and the converged x is the dense
    solution of Nx = b (λ included)."""
    n, frames, lam = 16, 2, 0.05
    s = simulate("phantom", matrix=n, frames=frames, coils=3, spokes=6, snr=50, trajectory="goldenangle", seed=4)
    problem = build_problem(s.slices[0], true_maps(n, frames, 3, 4), torch.device("cpu"))
    idx = torch.arange(frames)
    b = problem.op.adjoint(problem.kspace * problem.mask[:, None], idx).reshape(frames, -1)
    unit = torch.eye(n * n, dtype=torch.complex64).reshape(n * n, n, n)
    dense = []  # N of each frame, column j = N e_j
    for f in range(frames):
        at = torch.full((n * n,), f)
        cols = problem.op.normal(unit, problem.mask[at], at).reshape(n * n, -1) + lam * unit.reshape(n * n, -1)
        dense.append(cols.T)
    dense = torch.stack(dense).to(torch.complex128)
    torch.testing.assert_close(dense, dense.conj().transpose(1, 2), rtol=0, atol=1e-5)  # Hermitian, as CG needs

    def objective(x):
        x = x.reshape(frames, -1, 1).to(torch.complex128)
        return (0.5 * (x.conj().transpose(1, 2) @ dense @ x).real - (b.to(torch.complex128)[..., None].conj()
                                                                      * x).sum(1, keepdim=True).real).flatten()

    values, cfg = [], CGSenseConfig(tolerance=0.0, regularization=lam)
    for k in range(1, 7):
        x, iters, hist = cgsense_recon(problem, dataclasses.replace(cfg, iterations=k))
        assert iters == k and len(hist) == k
        values.append(objective(x))
        res = b.to(torch.complex128)[..., None] - dense @ x.reshape(frames, -1, 1).to(torch.complex128)
        true_rel = (res.norm(dim=(1, 2)) / b.to(torch.complex128).norm(dim=1)).max()
        assert np.isclose(hist[-1], float(true_rel), rtol=1e-3)
    assert all((later < earlier).all() for earlier, later in zip(values, values[1:]))
    x, _, _ = cgsense_recon(problem, CGSenseConfig(iterations=200, tolerance=1e-7, regularization=lam))
    exact = np.linalg.solve(dense.numpy(), b.to(torch.complex128).numpy()[..., None])[..., 0]
    np.testing.assert_allclose(x.reshape(frames, -1).numpy(), exact, rtol=0, atol=2e-4 * np.abs(exact).max())


def test_cgsense_with_true_maps_recovers_truth():
    """Nyquist-sampled noiseless data, true coil maps: CG-SENSE converges close to the truth (the radial disc
    misses the k-space corners, which bounds the PSNR)."""
    s = simulate("phantom", matrix=32, frames=1, coils=4, spokes=64, snr=0, trajectory="uniform", seed=1)
    problem = build_problem(s.slices[0], true_maps(32, 1, 4, 1), torch.device("cpu"))
    x, _, _ = cgsense_recon(problem, CGSenseConfig(iterations=40, tolerance=1e-7))
    assert quality(x.numpy(), s.truth[0]).psnr > 30.0


@pytest.mark.parametrize("backend", ["gather", "csr"])
def test_adjoint_chunks_do_not_change_the_images(series, backend):
    """adjoint_recon's frame chunks (default: 64 frame × coil pairs, here 16 frames of 4 coils) only bound memory:
    one frame at a time gives the same images bit for bit, and both NUFFT backends agree."""
    cine = series.slices[0]
    problem = build_problem(cine, true_maps(48, 4, 4, 3), torch.device("cpu"), backend=backend)
    assert adjoint_chunk(problem.op.n_coils) == 16 and adjoint_chunk(64) == 1 and adjoint_chunk(100) == 1
    default, single = adjoint_recon(problem), adjoint_recon(problem, chunk=1)
    assert torch.equal(default, single)
    gather = adjoint_recon(build_problem(cine, true_maps(48, 4, 4, 3), torch.device("cpu")))
    torch.testing.assert_close(default, gather, rtol=0, atol=1e-5 * float(gather.abs().max()))
