"""Frequency and grid encodings: torch-ngp semantics, gradients, backends."""

import math
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from dainr.errors import ConfigError
from dainr.model import encodings as enc
from dainr.model.encodings import FrequencyEncoding, GridEncoding, grid_layout, torch_grid_kernel

REFERENCE_RESOLUTIONS = (16, 23, 31, 43, 59, 81, 112, 154, 213, 295, 407, 562, 777, 1073, 1483, 2048)


def tiny_grid(**kw):
    args = dict(n_levels=3, n_features=2, base_resolution=4, desired_resolution=16, log2_hashmap_size=6,
                backend="torch")
    args.update(kw)
    return GridEncoding(**args)


# ---------------------------------------------------------------------------------------------- frequency encoding


def test_frequency_dims():
    assert FrequencyEncoding(2, 10).output_dim == 42
    assert FrequencyEncoding(1, 6).output_dim == 13
    assert FrequencyEncoding(2, 10)(torch.zeros(7, 2)).shape == (7, 42)
    assert FrequencyEncoding(1, 6)(torch.zeros(3, 5, 1)).shape == (3, 5, 13)


def test_frequency_values_and_order():
    a, b = 0.3, -0.7
    out = FrequencyEncoding(2, 2)(torch.tensor([[a, b]], dtype=torch.float64))[0]
    expected = [a, b, math.sin(a), math.sin(b), math.cos(a), math.cos(b),
                math.sin(2 * a), math.sin(2 * b), math.cos(2 * a), math.cos(2 * b)]
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- grid layout


def test_reference_layout():
    lay = grid_layout()  # the reference settings are the defaults
    assert lay.resolutions == REFERENCE_RESOLUTIONS
    assert lay.kernel_resolutions == REFERENCE_RESOLUTIONS
    assert lay.n_entries == 2_764_976
    assert all(s % 8 == 0 for s in lay.sizes)
    # dense (R+1)^2 fits below level 12; levels 12.. wrap modulo 2^19 (tiled: no hashing)
    assert all(s == 2**19 for s in lay.sizes[12:])
    assert all(s < 2**19 for s in lay.sizes[:12])
    assert lay.sizes[0] == 296  # 17^2 = 289 rounded up to a multiple of 8
    assert not any(lay.use_hash)
    assert np.isclose(lay.scales[1], 16 * 2 ** (7 / 15) - 1, rtol=1e-6)


def test_reference_grid_parameter_count():
    g = GridEncoding(backend="torch")
    assert g.embeddings.shape == (2_764_976, 2)
    assert g.n_params == 5_529_952
    assert g.offsets.tolist() == list(g.layout.offsets)
    assert g.embeddings.abs().max() <= 1e-4
    assert g.embeddings.std() > 5e-5  # actually filled, U(-1e-4, 1e-4) has std 5.8e-5
    x = torch.rand(100, 2)
    assert g(x).shape == (100, 32)
    assert g(x.reshape(4, 25, 2)).shape == (4, 25, 32)


def test_hash_layout_flags():
    lay = grid_layout(n_levels=3, base_resolution=4, desired_resolution=16, log2_hashmap_size=6, gridtype="hash")
    # level 0: R=4, (R+1)^2 = 25 fits 64; levels 1, 2 (R=8, 16) do not.
    assert lay.resolutions == (4, 8, 16)
    assert lay.use_hash == (False, True, True)
    assert grid_layout(n_levels=3, base_resolution=4, desired_resolution=16, log2_hashmap_size=6).use_hash == (
        False, False, False)


def test_bad_config():
    with pytest.raises(ConfigError):
        GridEncoding(gridtype="dense", backend="torch")
    with pytest.raises(ConfigError):
        GridEncoding(backend="nope")


# ---------------------------------------------------------------------------------------------- grid values


def _bilinear_level(x, table, lay, level):
    """Hand-written torch-ngp lookup of one level, one point at a time (python ints)."""
    c = lay.n_features
    res = lay.kernel_resolutions[level]
    size = lay.sizes[level]
    off = lay.offsets[level]
    scale = lay.scales[level]
    out = np.zeros((x.shape[0], c))
    for n, (px, py) in enumerate(x.tolist()):
        if not (0 <= px <= 1 and 0 <= py <= 1):
            continue
        fx, fy = px * scale + 0.5, py * scale + 0.5
        ix, iy = math.floor(fx), math.floor(fy)
        wx, wy = fx - ix, fy - iy
        for dx in (0, 1):
            for dy in (0, 1):
                cx, cy = ix + dx, iy + dy
                if lay.use_hash[level]:
                    idx = ((cx * 1) ^ ((cy * 2654435761) & 0xFFFFFFFF)) % size
                else:
                    idx = (cx + cy * (res + 1)) % size
                w = (wx if dx else 1 - wx) * (wy if dy else 1 - wy)
                out[n] += w * table[off + idx].numpy()
    return out


@pytest.mark.parametrize("gridtype", ["tiled", "hash"])
def test_brute_force_levels(gridtype):
    g = tiny_grid(gridtype=gridtype).double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        g.embeddings.copy_(torch.randn(g.embeddings.shape, generator=gen, dtype=torch.float64))
    x = torch.rand(40, 2, generator=gen, dtype=torch.float64)
    x[0] = torch.tensor([0.0, 0.0])
    x[1] = torch.tensor([1.0, 1.0])
    x[2] = torch.tensor([1.0, 0.0])
    out = g(x).detach()
    for level in range(g.n_levels):
        ref = _bilinear_level(x, g.embeddings.detach(), g.layout, level)
        np.testing.assert_allclose(out[:, 2 * level : 2 * level + 2].numpy(), ref, rtol=1e-10, atol=1e-12)


def test_brute_force_reference_fine_level():
    """A wrapping level (13, R=1073 > 2^19 entries) of the reference grid, against the hand-written lookup."""
    g = GridEncoding(backend="torch")
    x = torch.rand(30, 2, generator=torch.Generator().manual_seed(2))
    out32 = g(x).detach()
    g = g.double()
    out = g(x.double()).detach()
    # float32 positions lose ~1e-4 of a cell at the fine levels; the index arithmetic must still be identical
    torch.testing.assert_close(out32.double(), out, rtol=0, atol=1e-7)
    for level in (0, 12, 13, 15):
        ref = _bilinear_level(x.double(), g.embeddings.detach(), g.layout, level)
        np.testing.assert_allclose(out[:, 2 * level : 2 * level + 2].numpy(), ref, rtol=1e-9, atol=1e-14)


def test_level_major_output():
    g = tiny_grid()
    with torch.no_grad():
        for lvl in range(g.n_levels):
            a, b = g.layout.offsets[lvl], g.layout.offsets[lvl + 1]
            g.embeddings[a:b, 0] = lvl
            g.embeddings[a:b, 1] = 10 + lvl
    out = g(torch.rand(9, 2))
    expected = torch.tensor([0.0, 10, 1, 11, 2, 12]).expand(9, -1)
    torch.testing.assert_close(out, expected)


def test_out_of_range_zero_features_and_gradients():
    g = tiny_grid()
    x = torch.tensor([[0.2, 0.3], [-0.01, 0.5], [0.5, 1.2], [0.7, 0.9], [1.0, 0.0]], requires_grad=True)
    out = g(x)
    assert torch.all(out[[1, 2]] == 0)
    assert torch.all(out[[0, 3, 4]].abs() > 0)
    out.pow(2).sum().mul(1e8).backward()
    assert torch.all(x.grad[[1, 2]] == 0)
    assert torch.all(x.grad[0].abs() > 0)
    # the table gradient is the one from the in-range points alone
    grad_all = g.embeddings.grad.clone()
    g.embeddings.grad = None
    g(x.detach()[[0, 3, 4]]).pow(2).sum().mul(1e8).backward()
    torch.testing.assert_close(grad_all, g.embeddings.grad)


@pytest.mark.parametrize("gridtype", ["tiled", "hash"])
def test_gradcheck_table_and_positions(gridtype):
    g = tiny_grid(gridtype=gridtype).double()
    lay = g.layout
    gen = torch.Generator().manual_seed(3)
    table = torch.randn(g.embeddings.shape, generator=gen, dtype=torch.float64, requires_grad=True)
    x = (0.05 + 0.9 * torch.rand(12, 2, generator=gen, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda xx, tt: torch_grid_kernel(xx, tt, lay), (x, table), eps=1e-7, atol=1e-6)


def test_tiled_and_hash_agree_without_collisions_and_differ_with():
    for log2, same in ((12, True), (6, False)):
        gt = tiny_grid(gridtype="tiled", log2_hashmap_size=log2)
        gh = tiny_grid(gridtype="hash", log2_hashmap_size=log2)
        assert gt.layout.sizes == gh.layout.sizes
        with torch.no_grad():
            gh.embeddings.copy_(gt.embeddings)
        x = torch.rand(200, 2, generator=torch.Generator().manual_seed(4))
        a, b = gt(x), gh(x)
        if same:
            assert not any(gh.layout.use_hash)
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        else:
            assert any(gh.layout.use_hash)
            assert not torch.allclose(a, b)
            torch.testing.assert_close(a[:, :2], b[:, :2], rtol=0, atol=0)  # level 0 is dense in both


def test_3d_grid_runs():
    g = GridEncoding(input_dim=3, n_levels=2, base_resolution=4, desired_resolution=8, log2_hashmap_size=8,
                     gridtype="hash", backend="torch")
    assert g(torch.rand(5, 3)).shape == (5, 4)


# ---------------------------------------------------------------------------------------------- backends


def test_auto_backend_choice(monkeypatch):
    """``auto`` is the torch grid even where tiny-cuda-nn is installed (measured faster: RESULTS.md); ``tcnn`` builds
    tiny-cuda-nn's hash grid with this grid's settings and zeroes out-of-range points; an unknown backend is refused
    naming the choices."""
    seen = {}

    class FakeEncoding(nn.Module):  # stands in for tinycudann.Encoding
        def __init__(self, n_input_dims, encoding_config, dtype=None):
            super().__init__()
            seen.update(n_input_dims=n_input_dims, config=encoding_config)
            self.params = nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return x.sum(-1, keepdim=True).expand(-1, 6) + 1.0

    monkeypatch.setitem(sys.modules, "tinycudann", types.SimpleNamespace(Encoding=FakeEncoding))
    monkeypatch.setattr(enc, "tcnn_available", lambda: True)
    g = tiny_grid(backend="auto")
    assert g.backend == "torch" and g.embeddings.shape == (g.layout.n_entries, 2) and not seen
    g = tiny_grid(backend="tcnn")
    assert g.backend == "tcnn" and not hasattr(g, "embeddings")
    assert g.gridtype == "hash" and g.convention == "tcnn"
    assert seen == {"n_input_dims": 2, "config": g.tcnn_config()} and seen["config"]["n_levels"] == 3
    out = g(torch.tensor([[0.25, 0.5], [1.5, 0.5]]))  # the second point lies outside [0, 1]²: zero features
    torch.testing.assert_close(out, torch.tensor([[1.75] * 6, [0.0] * 6]))
    monkeypatch.setattr(enc, "tcnn_available", lambda: False)
    with pytest.raises(ConfigError, match="needs tinycudann"):
        tiny_grid(backend="tcnn")
    with pytest.raises(ConfigError, match="auto, torch, tcnn"):
        tiny_grid(backend="triton")


def test_tcnn_config():
    cfg = GridEncoding(backend="torch").tcnn_config()
    assert cfg["otype"] == "Grid" and cfg["type"] == "Hash" and cfg["interpolation"] == "Linear"
    assert cfg["n_levels"] == 16 and cfg["n_features_per_level"] == 2 and cfg["log2_hashmap_size"] == 19
    assert np.isclose(cfg["per_level_scale"], 2 ** (7 / 15))


def test_tcnn_convention_layout():
    """tiny-cuda-nn's hash grid (its grid.h): level l has r_l = ceil(scale_l) + 1 vertices a side, dense stride r_l,
    min(2^log2, next multiple of 8 of r_l^D) rows, hashing where r_l^D exceeds them, always the +0.5 shift."""
    lay = grid_layout(gridtype="hash", convention="tcnn")
    ref = grid_layout(gridtype="hash")
    assert lay.scales == ref.scales and lay.kernel_resolutions == ref.kernel_resolutions and lay.shift == 0.5
    for lvl, r in enumerate(lay.kernel_resolutions):
        dense = -(-(r**2) // 8) * 8
        assert lay.sizes[lvl] == min(2**19, dense)
        assert lay.strides[lvl] == (1, r)
        assert lay.use_hash[lvl] == (r**2 > lay.sizes[lvl])
    assert lay.sizes[0] == 16 * 16 and ref.sizes[0] == 17 * 17 + 7  # torch-ngp: (R+1)^D, rounded to 8
    with pytest.raises(ConfigError, match="gridtype='hash'"):
        grid_layout(gridtype="tiled", convention="tcnn")
    with pytest.raises(ConfigError, match="convention"):
        grid_layout(convention="instant-ngp")


@pytest.mark.skipif(not enc.tcnn_available(), reason="tinycudann with CUDA is not available here")
def test_tcnn_backend_agrees_with_the_torch_grid():
    """Same table, same inputs: tiny-cuda-nn's grid and the torch grid in tiny-cuda-nn's convention give the same
    features. Tolerance per level l: 4e-6 · scale_l for a table in [-1, 1] (tiny-cuda-nn computes scale_l with
    fast-math exp2f, ~1e-6 relative, so a point's grid position differs by up to ~1e-6 · scale_l cells and the
    features by that times the table's slope, at most 2 a cell; measured on an H200: 2e-6 at level 0 to 3.4e-3 at
    level 15, scale 2047). Swapping the two input axes misses by ~1.8 on every level (the orientation is tested)."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    gt = GridEncoding(backend="tcnn")
    gr = GridEncoding(backend="torch", gridtype="hash", convention="tcnn").to(dev)
    assert gt.tcnn.enc.params.numel() == gr.embeddings.numel()  # the layouts size every level alike
    with torch.no_grad():
        gr.embeddings.uniform_(-1.0, 1.0)
        gt.tcnn.enc.params.copy_(gr.embeddings.reshape(-1))
    x = torch.rand(1 << 16, 2, device=dev)
    x[:4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-0.1, 0.5], [0.5, 1.1]], device=dev)  # corners, outside
    with torch.no_grad():
        a, b = gt(x), gr(x)
    assert a.shape == b.shape == (1 << 16, 32)
    assert torch.all(a[2:4] == 0) and torch.all(b[2:4] == 0)
    diff = (a - b).abs().reshape(-1, gr.n_levels, 2).amax(dim=(0, 2))
    allowed = 4e-6 * torch.tensor(gr.layout.scales, device=dev)
    assert torch.all(diff <= allowed), (diff, allowed)
    swapped = (gt(x.flip(-1)) - b).abs().reshape(-1, gr.n_levels, 2).amax(dim=(0, 2))
    assert torch.all(swapped > 0.5)
