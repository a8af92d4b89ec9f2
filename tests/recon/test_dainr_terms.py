"""Loss terms of the DA-INR fit: values of the data term and the regularisers, and which terms a config builds."""

import numpy as np
import pytest
import torch

from dainr.config import load_config
from dainr.recon.dainr_terms import DataTerm, SpatialTV, TemporalTV, data_loss, loss_terms, spatial_tv, temporal_tv


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
