"""Deformation/canonical networks, DAINR composition, render, parameter counts, reference initialisation."""

import pytest
import torch
from torch import nn

from dainr.errors import ConfigError
from dainr.model import DAINR, CanonicalNet, DeformationNet, GridEncoding, build_reference_models, centred_coords
from dainr.model.networks import frame_times


def small_grid():
    return GridEncoding(n_levels=4, base_resolution=4, desired_resolution=32, log2_hashmap_size=8, backend="torch")


def small_model(feature_dim=8):
    torch.manual_seed(0)
    return DAINR(feature_dim=feature_dim, grid=small_grid())


def test_coordinate_convention():
    p = centred_coords(3, 4)
    assert p.shape == (12, 2)
    torch.testing.assert_close(p[0], torch.tensor([-1.0, -2 / 3]))
    torch.testing.assert_close(p[3], torch.tensor([0.5, -2 / 3]))  # x runs along columns
    torch.testing.assert_close(p[4], torch.tensor([-1.0, 0.0]))  # next row: y steps
    torch.testing.assert_close(p[1 * 4 + 2], torch.tensor([0.0, 0.0]))  # pixel (H//2, W//2), the NUFFT's centre
    torch.testing.assert_close(p[-1], torch.tensor([0.5, 2 / 3]))
    torch.testing.assert_close(frame_times(5), torch.linspace(0, 1, 5))
    assert frame_times(1).tolist() == [0.0]


def test_coarse_and_fine_coordinates_coincide():
    fine, coarse = centred_coords(8, 8).reshape(8, 8, 2), centred_coords(4, 4).reshape(4, 4, 2)
    assert torch.equal(fine[::2, ::2], coarse)


def test_deformation_net_shape_and_layers():
    net = DeformationNet()
    dims = [(m.in_features, m.out_features) for m in net.layers]
    assert dims == [(55, 128), (128, 128), (128, 128), (128, 128), (128, 2)]
    assert all(m.bias is None for m in net.layers)
    assert sum(p.numel() for p in net.parameters()) == 56_448
    p = torch.rand(10, 2) * 2 - 1
    assert net(p, torch.rand(10, 1)).shape == (10, 2)
    assert net(p, torch.tensor([[0.5]])).shape == (10, 2)  # one time broadcast


def test_canonical_net_shapes_and_feature_dim():
    net = CanonicalNet(GridEncoding(backend="torch"))
    assert net.in_dim == 215 and net.sigma_net[0].in_features == 215
    assert [(m.in_features, m.out_features) for m in net.sigma_net] == [(215, 64), (64, 64)]
    assert [(m.in_features, m.out_features) for m in net.color_net] == [(64, 64), (64, 64), (64, 2)]
    assert sum(p.numel() for p in net.sigma_net.parameters()) == 17_856
    assert sum(p.numel() for p in net.color_net.parameters()) == 8_320
    p = torch.rand(6, 2) * 2 - 1
    assert net(p, p, torch.rand(6, 1), torch.randn(6, 128)).shape == (6, 2)
    with pytest.raises(ValueError):
        net(p, p, torch.rand(6, 1), None)
    net0 = CanonicalNet(small_grid(), feature_dim=0)
    assert net0.in_dim == 8 + 42 + 13
    assert net0(p, p, torch.rand(6, 1)).shape == (6, 2)


def test_dainr_parameter_count_and_bias_free():
    m = DAINR(backend="torch")
    total = sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert total == 5_612_576  # ≈ 5.61M
    assert m.grid.n_params == 5_529_952
    assert not any(name.endswith("bias") for name, _ in m.named_parameters())
    assert all(mod.bias is None for mod in m.modules() if isinstance(mod, nn.Linear))


def test_built_from_parts():
    torch.manual_seed(0)
    grid = small_grid()
    m = DAINR(DeformationNet(width=16, depth=3), CanonicalNet(grid, feature_dim=0, hidden=8))
    assert m.grid is grid and m.feature_dim == 0
    assert m(torch.rand(4, 2), torch.rand(4, 1)).shape == (4, 2)
    with pytest.raises(ConfigError):
        DAINR(DeformationNet(space_degree=4), CanonicalNet(grid))
    with pytest.raises(ConfigError):
        DAINR(canonical=CanonicalNet(grid), backend="torch")


def test_deformation_moves_the_canonical_image():
    """f(p, t) = Ψ_x(p + Ψ_t(p, t), ...): a deformation that is a global shift by two columns and one row (at t = 0)
    shows each pixel the undeformed image two columns right and one row down. Fails if the grid were read at p, if
    Δp were subtracted, or if x paired with rows."""
    torch.manual_seed(0)
    grid = small_grid()
    with torch.no_grad():
        grid.embeddings.normal_()  # a textured canonical image
    canon = CanonicalNet(grid, space_degree=4, time_degree=3, feature_dim=0, hidden=16)
    with torch.no_grad():
        canon.sigma_net[0].weight[:, grid.output_dim:] = 0  # the output depends on the grid at p' only
    deform = DeformationNet(space_degree=4, time_degree=3, width=8, depth=1)  # Δp = W · [γ(p), γ(t)]
    enc_t0 = deform.encode_t(torch.zeros(1, 1))[0]
    one = deform.encode_p.output_dim + int(torch.nonzero(enc_t0 == 1)[0])  # cos(0) = 1 at t = 0, for every p
    h = w = 16
    with torch.no_grad():
        deform.layers[0].weight.zero_()
        deform.layers[0].weight[:, one] = torch.tensor([2 * 2.0 / w, 1 * 2.0 / h])  # (x, y): 2 columns, 1 row
    model = DAINR(deform, canon)
    coords, t0 = centred_coords(h, w), torch.zeros(1)
    moved = model.render(t0, coords, image_shape=(h, w))[0]
    with torch.no_grad():
        deform.layers[0].weight.zero_()
    still = model.render(t0, coords, image_shape=(h, w))[0]
    assert not torch.allclose(moved, still)
    torch.testing.assert_close(moved[:-1, :-2], still[1:, 2:])


def test_gradient_reaches_deformation_through_grid_positions():
    m = small_model(feature_dim=0)
    with torch.no_grad():
        m.grid.embeddings.normal_()  # make the grid's spatial gradient large
        m.deformation.layers[-1].weight.mul_(0.01)  # keep p' inside [-1, 1]
    p = centred_coords(8, 8) * 0.9
    out = m(p, torch.full((64, 1), 0.3))
    out.pow(2).sum().backward()
    g_last = m.deformation.layers[-1].weight.grad
    assert g_last is not None and g_last.abs().sum() > 0
    # without the grid-position path the deformation output would get no gradient at all: cut it and compare
    m.zero_grad()
    dp = m.deformation(p, torch.full((64, 1), 0.3))
    enc_p, enc_t = m.deformation.encode_p(p), m.deformation.encode_t(torch.full((64, 1), 0.3))
    m.canonical.forward_encoded(p + dp.detach(), enc_p, enc_t, None).pow(2).sum().backward()
    assert m.deformation.layers[-1].weight.grad is None or m.deformation.layers[-1].weight.grad.abs().sum() == 0


def test_render_matches_forward():
    m = small_model()
    h, w = 5, 6
    coords = centred_coords(h, w)
    ts = torch.tensor([0.0, 0.25, 1.0])
    feats = torch.randn(3, 8, h, w)
    img = m.render(ts, coords, feats)
    assert img.shape == (3, h, w) and img.dtype == torch.complex64
    img2 = m.render(ts, coords, feats.flatten(2).transpose(1, 2), image_shape=(h, w))
    torch.testing.assert_close(img, img2)
    k = 1
    ref = m(coords, ts[k].reshape(1, 1), feats[k].flatten(1).T)
    torch.testing.assert_close(img[k], torch.complex(ref[:, 0], ref[:, 1]).reshape(h, w))
    with pytest.raises(ValueError):
        m.render(ts, coords, feats.flatten(2).transpose(1, 2))  # 30 points: not square, no shape given


def test_reference_initialisation_replayed():
    """build_reference_models draws like the reference main.py: seed, full MDSR, then the network layers."""
    state = torch.get_rng_state()
    extractor, model = build_reference_models(seed=0)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched

    # the reference sequence, written out independently
    torch.manual_seed(0)
    convs = [nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 64, 3, padding=1)]
    convs += [nn.Conv2d(64, 64, 5, padding=2) for _ in range(4)]
    convs += [nn.Conv2d(64, 64, 3, padding=1) for _ in range(33)]
    convs += [nn.Conv2d(64, 256, 3, padding=1), nn.Conv2d(64, 3, 3, padding=1)]
    deform = [nn.Linear(55, 128, bias=False)] + [nn.Linear(128, 128, bias=False) for _ in range(3)]
    deform += [nn.Linear(128, 2, bias=False)]
    table = torch.empty(2_764_976, 2).uniform_(-1e-4, 1e-4)
    sigma = [nn.Linear(215, 64, bias=False), nn.Linear(64, 64, bias=False)]
    color = [nn.Linear(64, 64, bias=False), nn.Linear(64, 64, bias=False), nn.Linear(64, 2, bias=False)]
    torch.set_rng_state(state)

    assert torch.equal(extractor.head[0].weight, convs[2].weight)
    assert torch.equal(extractor.pre_process[0][1].body[2].bias, convs[6].bias)
    for ours, ref in zip(model.deformation.layers, deform):
        assert torch.equal(ours.weight, ref.weight)
    assert torch.equal(model.grid.embeddings, table)
    for ours, ref in zip(list(model.canonical.sigma_net) + list(model.canonical.color_net), sigma + color):
        assert torch.equal(ours.weight, ref.weight)
