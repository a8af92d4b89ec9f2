"""Frozen MDSR features, checkpoint loading, the neighbour rule and its no-leak property."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dainr.errors import ConfigError
from dainr.model import FEATURE_CHANNELS, MDSRFeatures, neighbour_features, neighbour_frames
from dainr.model.features import normalise_for_features


@pytest.fixture(scope="module")
def extractor():
    return MDSRFeatures(seed=0)


def official_state_dict(n_feats=64, seed=5):
    """A synthetic EDSR-PyTorch MDSR state dict with the official key names (scales 2, 3, 4)."""
    g = torch.Generator().manual_seed(seed)
    sd = {
        "sub_mean.weight": torch.eye(3).view(3, 3, 1, 1), "sub_mean.bias": torch.zeros(3),
        "add_mean.weight": torch.eye(3).view(3, 3, 1, 1), "add_mean.bias": torch.zeros(3),
        "head.0.weight": torch.randn(n_feats, 3, 3, 3, generator=g), "head.0.bias": torch.randn(n_feats, generator=g),
    }
    for s in range(3):
        for r in range(2):
            for c in (0, 2):
                sd[f"pre_process.{s}.{r}.body.{c}.weight"] = torch.randn(n_feats, n_feats, 5, 5, generator=g) * 0.01
                sd[f"pre_process.{s}.{r}.body.{c}.bias"] = torch.randn(n_feats, generator=g)
    for b in range(16):
        for c in (0, 2):
            sd[f"body.{b}.body.{c}.weight"] = torch.randn(n_feats, n_feats, 3, 3, generator=g)
            sd[f"body.{b}.body.{c}.bias"] = torch.randn(n_feats, generator=g)
    sd["body.16.weight"] = torch.randn(n_feats, n_feats, 3, 3, generator=g)
    sd["upsample.0.0.weight"] = torch.randn(4 * n_feats, n_feats, 3, 3, generator=g)
    sd["tail.0.weight"] = torch.randn(3, n_feats, 3, 3, generator=g)
    return sd


def manual_forward(sd, x):
    """head -> two 5x5 ResBlocks (x + conv(relu(conv(x)))), from a state dict with official names."""
    x = x.expand(-1, 3, -1, -1)
    h = F.conv2d(x, sd["head.0.weight"], sd["head.0.bias"], padding=1)
    for r in range(2):
        k = f"pre_process.0.{r}.body."
        y = F.relu(F.conv2d(h, sd[k + "0.weight"], sd[k + "0.bias"], padding=2))
        h = h + F.conv2d(y, sd[k + "2.weight"], sd[k + "2.bias"], padding=2)
    return h


# ---------------------------------------------------------------------------------------------- extractor


def test_shape_frozen_and_eval(extractor):
    out = extractor(torch.rand(2, 1, 16, 12) * 2 - 1)
    assert out.shape == (2, 64, 16, 12)
    assert not any(p.requires_grad for p in extractor.parameters())
    extractor.train()
    assert not extractor.training
    assert set(extractor.state_dict()) == {
        "head.0.weight", "head.0.bias",
        *(f"pre_process.0.{r}.body.{c}.{w}" for r in range(2) for c in (0, 2) for w in ("weight", "bias")),
    }


def test_seeded_init_deterministic_and_rng_neutral():
    state = torch.get_rng_state()
    a, b, c = MDSRFeatures(seed=0), MDSRFeatures(seed=0), MDSRFeatures(seed=1)
    assert torch.equal(state, torch.get_rng_state())
    x = torch.rand(1, 1, 10, 10)
    assert torch.equal(a(x), b(x))
    assert not torch.allclose(a(x), c(x))


def test_seed_reproduces_reference_draw_order():
    """Reference: manual_seed(0); MDSR builds sub_mean, add_mean (1x1 convs), head, pre_process[0] in this order."""
    state = torch.get_rng_state()
    torch.manual_seed(0)
    ref = [nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 64, 3, padding=1)]
    ref += [nn.Conv2d(64, 64, 5, padding=2) for _ in range(4)]
    torch.set_rng_state(state)
    ours = MDSRFeatures(seed=0)
    convs = [ours.head[0]] + [ours.pre_process[0][r].body[c] for r in range(2) for c in (0, 2)]
    for mine, theirs in zip(convs, ref[2:]):
        assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)


def test_forward_semantics_with_official_checkpoint(tmp_path):
    sd = official_state_dict()
    m = MDSRFeatures(weights=sd)
    x = torch.rand(2, 1, 9, 9) * 2 - 1
    torch.testing.assert_close(m(x), manual_forward(sd, x))
    # from a file, and with the "model." prefix EDSR-PyTorch's wrapper adds
    path = tmp_path / "mdsr.pt"
    torch.save({"model." + k: v for k, v in sd.items()}, path)
    torch.testing.assert_close(MDSRFeatures(weights=path)(x), m(x))


def test_bad_checkpoints_raise_config_error(tmp_path):
    sd = official_state_dict()
    missing = {k: v for k, v in sd.items() if not k.startswith("pre_process.0.")}
    with pytest.raises(ConfigError, match="lack"):
        MDSRFeatures(weights=missing)
    with pytest.raises(ConfigError, match="shape"):
        MDSRFeatures(weights=official_state_dict(n_feats=32))
    with pytest.raises(ConfigError):
        MDSRFeatures(weights=tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError):
        MDSRFeatures(weights=tmp_path / "junk.pt")


# ---------------------------------------------------------------------------------------------- neighbour rule


def test_reference_rule_all_frames():
    assert neighbour_frames(5, 1) == [(1, 1), (0, 2), (1, 3), (2, 4), (3, 3)]
    assert neighbour_frames(6, 2) == [(2, 2), (3, 3), (0, 4), (1, 5), (2, 2), (3, 3)]


def test_temporal_rule_never_uses_held_out_frames():
    train = list(range(1, 23, 2))
    pairs = neighbour_frames(23, 2, train)
    assert all(a in train and b in train for a, b in pairs)
    assert pairs[1] == (3, 3) and pairs[3] == (1, 5) and pairs[21] == (19, 19)  # the reference for training frames
    assert pairs[0] == (1, 1) and pairs[4] == (3, 5) and pairs[22] == (21, 21)  # nearest training frames
    assert all(f not in pairs[f] for f in range(23))


def test_rule_errors_and_degenerate_cases():
    with pytest.raises(ConfigError):
        neighbour_frames(5, 1, [])
    with pytest.raises(ConfigError):
        neighbour_frames(5, 1, [7])
    with pytest.raises(ConfigError):
        neighbour_frames(5, 0)
    assert neighbour_frames(1, 1) == [(0, 0)]
    assert neighbour_frames(3, 1, [1]) == [(1, 1), (1, 1), (1, 1)]


# ---------------------------------------------------------------------------------------------- features of a scan


def test_neighbour_features_values(extractor):
    mag = torch.rand(5, 12, 10)
    feats = neighbour_features(extractor, mag, distance=1)
    assert feats.shape == (5, FEATURE_CHANNELS, 12, 10) and feats.dtype == torch.float32
    norm = normalise_for_features(mag)
    assert norm.min() >= -1 and norm.max() <= 1
    one = extractor(norm[:, None])
    torch.testing.assert_close(feats[2, :64], one[1])
    torch.testing.assert_close(feats[2, 64:], one[3])
    torch.testing.assert_close(feats[0], torch.cat([one[1], one[1]]))
    torch.testing.assert_close(neighbour_features(extractor, mag, chunk=1), feats)
    torch.testing.assert_close(neighbour_features(extractor, mag, frames=[4, 2]), feats[[4, 2]])


def test_held_out_frames_do_not_leak(extractor):
    gen = torch.Generator().manual_seed(0)
    mag = torch.rand(9, 8, 8, generator=gen)
    train = [1, 3, 5, 7]
    base = neighbour_features(extractor, mag, distance=2, allowed=train)
    changed = mag.clone()
    changed[4] = 50 * torch.rand(8, 8, generator=gen)  # a held-out frame's own data, far outside the others' range
    changed[0] = -3.0
    torch.testing.assert_close(neighbour_features(extractor, changed, distance=2, allowed=train), base, rtol=0, atol=0)
    # the same change does leak with the reference rule (every frame allowed): the test can fail
    leaky = neighbour_features(extractor, changed, distance=2)
    assert not torch.allclose(leaky, neighbour_features(extractor, mag, distance=2))
