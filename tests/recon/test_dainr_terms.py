"""Loss terms of the DA-INR fit: values of the data term and the regularisers, and which terms a config builds."""

import numpy as np
import pytest
import torch

from dainr.config import load_config
from dainr.recon.dainr_terms import (DataTerm, SpatialTV, TemporalTV, data_loss, loss_terms, radial_acceleration,
                                     sampling_tv, spatial_tv, temporal_tv)


def test_data_loss_l1_and_l2_over_the_masked_samples():
    data = torch.tensor([[[[3 + 4j, 100.0]], [[-1 + 0j, 100j]]]], dtype=torch.complex64)  # (1, 2 coils, 1, 2)
    pred = torch.zeros_like(data)
    mask = torch.tensor([[[1.0, 0.0]]])  # the second sample is not compared
    # per compared sample and coil: l1 = |Re| + |Im| of the residual, l2 = |residual|²
    assert float(data_loss(pred, data, mask, "l1")) == pytest.approx((7 + 1) / 2)
    assert float(data_loss(pred, data, mask, "l2")) == pytest.approx((25 + 1) / 2)


def test_tv_values():
    flat = torch.full((2, 6, 6), 1 + 2j, dtype=torch.complex64)
    assert float(spatial_tv(flat)) < 1e-3 and float(temporal_tv(flat)) < 1e-3
    edge = torch.zeros(1, 6, 6, dtype=torch.complex64)
    edge[..., 3:] = 3j  # a vertical edge of height 3: |∇| = 3 on one column of the 5×5 difference grid
    assert np.isclose(float(spatial_tv(edge)), 3 * 5 / 25, rtol=1e-3)
    pair = torch.zeros(2, 4, 4, dtype=torch.complex64)
    pair[1] = 2.0
    assert np.isclose(float(temporal_tv(pair)), 2.0, rtol=1e-3)
    assert float(TemporalTV(0.5)(pair[:1], torch.tensor([0]))) == 0.0  # one frame has no temporal variation
    assert np.isclose(float(TemporalTV(0.5)(pair, torch.tensor([0, 1]))), 1.0, rtol=1e-3)


def test_loss_terms_follow_the_config():
    data = DataTerm(problem=None, mask=None)  # type: ignore[arg-type]  # not called here
    plain = loss_terms(load_config("cpu-test").dainr, data)
    assert plain == [data]
    both = loss_terms(load_config("cpu-test", overrides=["dainr.tv_temporal=0.2", "dainr.tv_spatial=0.1"]).dainr,
                      data)
    assert both == [data, TemporalTV(0.2), SpatialTV(0.1)]
    assert [t.consecutive_frames for t in both] == [False, True, False]
    spatial = loss_terms(load_config("cpu-test", overrides=["dainr.tv_spatial=0.1"]).dainr, data)
    assert spatial == [data, SpatialTV(0.1)] and not any(t.consecutive_frames for t in spatial)


def test_radial_acceleration_counts_measured_spokes_against_nyquist():
    mask = np.zeros((3, 8), bool)
    mask[:, :5] = True  # 5 spokes a frame measured of 8 slots
    assert radial_acceleration(mask, (128, 128)) == pytest.approx(np.pi / 2 * 128 / 5)  # 40.2
    mask[0, 5:] = True  # frames of 8, 5, 5 spokes: the mean counts
    assert radial_acceleration(mask, (96, 128)) == pytest.approx(np.pi / 2 * 128 / 6)


def test_sampling_tv_doubles_the_weights_only_at_high_acceleration():
    c = load_config("cpu-test", overrides=["dainr.tv_temporal=0.2", "dainr.tv_spatial=0.05",
                                           "dainr.tv_sparse_acceleration=32", "dainr.tv_sparse_factor=2"]).dainr
    assert sampling_tv(c, 25.1) is c  # 8 spokes at 128²
    sparse = sampling_tv(c, 40.2)  # 5 spokes at 128²
    assert (sparse.tv_temporal, sparse.tv_spatial) == (0.4, 0.1)
    assert sampling_tv(c, 32.0).tv_temporal == 0.4  # the threshold itself counts
    off = load_config("cpu-test", overrides=["dainr.tv_temporal=0.2"]).dainr  # tv_sparse_acceleration 0 = off
    assert sampling_tv(off, 1000.0) is off
    shipped = load_config("fast").dainr
    assert shipped.tv_sparse_acceleration > radial_acceleration(np.ones((1, 8), bool), (128, 128))
    assert shipped.tv_sparse_acceleration <= radial_acceleration(np.ones((1, 5), bool), (128, 128))
