"""A cine that is one cycle (``dainr.periodic_time``): time encoding, frame times, frame windows, rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dainr.config import load_config
from dainr.data import RenderRequest
from dainr.model.encodings import PeriodicEncoding
from dainr.model.networks import frame_times
from dainr.recon import reconstruct
from dainr.recon.dainr_fit import FrameSampler
from dainr.recon.dainr_model import build_model
from dainr.recon.rendering import frame_positions, render_slice, render_times
from dainr.simulate import simulate

N, F = 24, 6


def test_periodic_encoding_repeats_every_cycle():
    enc = PeriodicEncoding(4)
    t = torch.rand(50, 1)
    assert enc.output_dim == 8 and enc(t).shape == (50, 8)
    assert torch.allclose(enc(t), enc(t + 1.0), atol=1e-5)
    assert not torch.allclose(enc(t), enc(t + 0.5), atol=1e-2)  # the first harmonic tells half a cycle apart


def test_periodic_model_gives_the_same_value_one_cycle_later():
    torch.manual_seed(0)
    cfg = load_config("cpu-test", overrides=["dainr.periodic_time=true", "dainr.features.enabled=false"])
    model = build_model(cfg.dainr, 0)
    p = torch.rand(20, 2) * 2 - 1
    t = torch.rand(20, 1)
    assert torch.allclose(model(p, t), model(p, t + 1.0), atol=1e-4)


def test_frame_times_span_the_cycle():
    assert torch.allclose(frame_times(4, periodic=True), torch.tensor([0, 0.25, 0.5, 0.75]))
    assert torch.allclose(frame_times(4), torch.tensor([0, 1 / 3, 2 / 3, 1]))
    assert torch.allclose(render_times(4, 8, periodic=True)[::2], frame_times(4, periodic=True))
    assert np.array_equal(frame_positions(4, 8, periodic=True), np.arange(8) / 2)


def test_windows_wrap_only_for_a_periodic_cine():
    frames = np.arange(5)
    starts = set()
    for seed in range(40):
        w = FrameSampler(frames, seed, consecutive=True, wrap=True).take(3)
        assert all((b - a) % 5 == 1 for a, b in zip(w, w[1:]))
        starts.add(w[0])
        plain = FrameSampler(frames, seed, consecutive=True).take(3)
        assert plain == sorted(plain) and plain[-1] - plain[0] == 2
    assert {3, 4} <= starts  # windows that run past the last frame into the first


@pytest.fixture(scope="module")
def periodic_fit():
    ser = simulate("phantom", matrix=N, frames=F, coils=4, spokes=13, snr=200, seed=5)
    cfg = load_config("cpu-test", overrides=["dainr.steps=20", "dainr.periodic_time=true"])
    return reconstruct(ser.slices[0], cfg, keep_model=True)


def test_periodic_fit_renders_the_whole_cycle(periodic_fit):
    fm = periodic_fit.fitted
    same = render_slice(fm, RenderRequest(frames=F), (200.0, 200.0))
    assert np.array_equal(same.images, periodic_fit.images)
    finer = render_slice(fm, RenderRequest(frames=2 * F), (200.0, 200.0))
    assert finer.images.shape == (2 * F, N, N)
    assert np.allclose(finer.images[::2], periodic_fit.images, atol=1e-5 * np.abs(periodic_fit.images).max())
    assert np.array_equal(finer.positions, np.arange(2 * F) / 2)  # the last one lies between frame F−1 and frame 0
