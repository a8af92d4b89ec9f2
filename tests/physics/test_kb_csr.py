"""The CSR interpolation (``nufft_backend=csr``) against the gather interpolation it re-expresses: same operator,
same gradients, exact adjoint, bit-identical repeats, fixed-shape frame subsets."""

import numpy as np
import pytest
import torch

from dainr.physics import MultiCoilNufft, radial_trajectory
from dainr.physics.kb_csr import KbCsr
from dainr.physics.nufft import traj_to_omega

H, W, F, C = 10, 14, 3, 2


def _complex(rng: np.random.Generator, *shape: int) -> torch.Tensor:
    return torch.from_numpy((rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64))


@pytest.fixture(scope="module")
def ops():
    rng = np.random.default_rng(3)
    traj = torch.from_numpy(radial_trajectory("goldenangle", F, 4, 2 * W))
    maps = _complex(rng, C, H, W)
    return {b: MultiCoilNufft(traj, maps, backend=b) for b in ("gather", "csr")}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("frames", [None, [2, 0], [1]])
def test_forward_and_adjoint_equal_gather(ops, frames):
    rng = np.random.default_rng(4)
    idx = None if frames is None else torch.tensor(frames)
    b = F if frames is None else len(frames)
    x = _complex(rng, b, H, W)
    y = _complex(rng, b, C, 4, 2 * W)
    assert _rel(ops["csr"](x, idx), ops["gather"](x, idx)) < 1e-5
    assert _rel(ops["csr"].adjoint(y, idx), ops["gather"].adjoint(y, idx)) < 1e-5


def test_subset_is_the_rows_of_all_frames(ops):
    """A frame subset's block-diagonal matrix gives exactly those frames' rows of the all-frames product."""
    rng = np.random.default_rng(5)
    x = _complex(rng, F, H, W)
    full = ops["csr"](x)
    sub = ops["csr"](x[[2, 0]], torch.tensor([2, 0]))
    assert torch.allclose(sub, full[[2, 0]], atol=1e-5)


def test_gradients_equal_gather(ops):
    """Backward of the forward (the csr path: Mᴴ · dy) and of the adjoint (M · dx) against autograd of the gather
    path (gather / scatter-add), through a non-linear loss so the incoming gradients are generic."""
    rng = np.random.default_rng(6)
    x0, y0 = _complex(rng, 2, H, W), _complex(rng, 2, C, 4, 2 * W)
    frames = torch.tensor([2, 1])
    grads = {}
    for name, op in ops.items():
        x, y = x0.clone().requires_grad_(True), y0.clone().requires_grad_(True)
        loss = op(x, frames).abs().pow(1.5).sum() + op.adjoint(y, frames).abs().sum()
        loss.backward()
        grads[name] = (x.grad, y.grad)
    for a, b in zip(grads["csr"], grads["gather"]):
        assert _rel(a, b) < 1e-5


def test_adjoint_identity(ops):
    """<A x, y> = <x, Aᴴ y> for all frames and for a subset."""
    rng = np.random.default_rng(7)
    op = ops["csr"]
    for idx in (None, torch.tensor([1, 2])):
        b = F if idx is None else len(idx)
        x, y = _complex(rng, b, H, W), _complex(rng, b, C, 4, 2 * W)
        lhs = torch.vdot(op(x, idx).flatten(), y.flatten())
        rhs = torch.vdot(x.flatten(), op.adjoint(y, idx).flatten())
        assert abs(lhs - rhs) / abs(lhs) < 1e-5


def test_matrices_are_each_others_conjugate_transpose(ops):
    """The stored Mᴴ is exactly conj(M)ᵀ, and every row of M has J entries, for a subset's block-diagonal matrix;
    both are valid CSR (row pointers consistent, columns sorted and distinct within a row, as cuSPARSE expects)."""
    a, a_h = ops["csr"]._interp.matrices(torch.tensor([2, 0]))
    for m in (a, a_h):
        torch.sparse_csr_tensor(m.crow_indices(), m.col_indices(), m.values(), m.shape, check_invariants=True)
    dense, dense_h = a.to_dense(), a_h.to_dense()
    assert torch.equal(dense_h, dense.conj().T)
    assert torch.equal(a.crow_indices().diff(), torch.full((dense.shape[0],), 36, dtype=torch.int32))
    assert a_h.values().shape == a.values().shape
    g = ops["csr"]._interp.n_grid
    assert not dense[: dense.shape[0] // 2, g:].any() and not dense[dense.shape[0] // 2:, :g].any()


def test_two_runs_bit_identical():
    """Same trajectory, same inputs: the tables, the outputs and the gradients are bit for bit the same."""
    rng = np.random.default_rng(8)
    traj = torch.from_numpy(radial_trajectory("goldenangle", F, 4, 2 * W))
    om = traj_to_omega(traj.reshape(F, -1, 2))
    x0 = _complex(rng, 2, C, H, W)
    runs = []
    for _ in range(2):
        interp = KbCsr(om, (H, W), (2 * H, 2 * W))
        x = x0.clone().requires_grad_(True)
        y = interp(x, torch.tensor([0, 2]))
        y.abs().sum().backward()
        runs.append((y.detach(), x.grad, interp.vals_h, interp.crow_h))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_double_backward_matches_gather(ops):
    """The backward is itself differentiable (the same product with the matrices swapped)."""
    rng = np.random.default_rng(9)
    x0 = _complex(rng, 1, H, W)
    out = {}
    for name, op in ops.items():
        x = x0.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(op(x, torch.tensor([1])).abs().square().sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.abs().sum(), x)
        out[name] = gg
    assert _rel(out["csr"], out["gather"]) < 1e-4
