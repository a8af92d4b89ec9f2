"""The GPU memory budget: the estimate grows with every size, and the decision (keep, reduce frames per step,
refuse) follows a given free memory."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dainr.config import load_config
from dainr.data import CineData
from dainr.errors import ResourceError
from dainr.model import FEATURE_CHANNELS
from dainr.physics import radial_trajectory
from dainr.recon.budget import (USABLE_FRACTION, SeriesShape, estimate_memory, fit_to_device, plan_memory)
from dainr.recon.dainr_model import build_model

SHAPE = SeriesShape(frames=20, coils=8, spokes=13, samples=256, matrix=(128, 128))


def _cfg(*overrides: str, preset: str = "fast"):
    return load_config(preset, None, list(overrides))


def _fits(total: int) -> int:
    """Free memory in which an estimate of ``total`` just fits."""
    return int(np.ceil(total / USABLE_FRACTION)) + 1


def test_estimate_grows_with_frames_per_step():
    cfg = _cfg()
    parts = [estimate_memory(SHAPE, cfg, b) for b in range(1, 9)]
    totals = [e.total for e in parts]
    assert all(a.step < b.step for a, b in zip(parts, parts[1:]))
    assert all(a <= b for a, b in zip(totals, totals[1:]))  # the setup peak may dominate at 1-2 frames
    assert totals[-1] > totals[0]
    assert estimate_memory(SHAPE, cfg).total == totals[cfg.dainr.frames_per_step - 1]


@pytest.mark.parametrize("field,bigger", [("frames", 40), ("coils", 16), ("spokes", 26), ("samples", 512),
                                          ("matrix", (256, 256))])
def test_estimate_grows_with_the_series(field, bigger):
    cfg = _cfg()
    small = estimate_memory(SHAPE, cfg)
    large = estimate_memory(dataclasses.replace(SHAPE, **{field: bigger}), cfg)
    assert large.total > small.total
    for part in ("data", "nufft_tables", "model", "features", "step", "setup"):
        assert getattr(large, part) >= getattr(small, part), part


@pytest.mark.parametrize("override", ["dainr.hidden=128", "dainr.deformation_width=256", "dainr.deformation_depth=8",
                                      "dainr.grid.log2_table_size=21", "dainr.grid.levels=20",
                                      "dainr.features.enabled=true"])
def test_estimate_grows_with_the_networks(override):
    base = _cfg("dainr.features.enabled=false") if "features" in override else _cfg()
    assert estimate_memory(SHAPE, _cfg(override)).total > estimate_memory(SHAPE, base).total


@pytest.mark.parametrize("preset,overrides", [
    ("fast", []),
    ("cpu", ["dainr.features.enabled=false", "dainr.validation_fraction=0"]),
    ("cpu-test", ["dainr.hidden=24", "dainr.deformation_depth=2", "dainr.grid.gridtype=hash", "dainr.ema=0.9"]),
    ("paper", ["dainr.space_degree=6", "dainr.time_degree=2", "dainr.grid.levels=8"]),
])
def test_model_memory_is_the_models(preset, overrides):
    """The estimate's model part is the network the fit builds (its parameters, with their gradients, two AdamW
    moments, and the averaged and kept-best copies when those are on), whatever the network's shape."""
    cfg = _cfg(*overrides, preset=preset)
    c = cfg.dainr
    torch.manual_seed(0)
    model = build_model(c, FEATURE_CHANNELS if c.features.enabled else 0)  # on the CPU, as the fit builds it
    params = sum(p.numel() for p in model.parameters())
    copies = 4 + (c.ema > 0) + (c.validation_fraction > 0)
    assert estimate_memory(SHAPE, cfg).model == 4 * copies * params


def test_spatial_interpolation_needs_less():
    assert estimate_memory(SHAPE, _cfg("dainr.sr_ratio=2")).total < estimate_memory(SHAPE, _cfg()).total


def test_plan_keeps_reduces_or_refuses():
    cfg = _cfg("dainr.frames_per_step=8")
    est = {b: estimate_memory(SHAPE, cfg, b).total for b in range(1, 9)}
    keep = plan_memory(SHAPE, cfg, _fits(est[8]))
    assert keep.frames_per_step == 8 and not keep.reduced
    tight = plan_memory(SHAPE, cfg, _fits(est[3]))
    assert tight.frames_per_step == 3 and tight.reduced and tight.requested == 8
    one = plan_memory(SHAPE, cfg, _fits(est[1]))
    assert one.frames_per_step == max(b for b, t in est.items() if t <= est[1])  # equal when the setup dominates
    with pytest.raises(ResourceError, match="even at one frame per step"):
        plan_memory(SHAPE, cfg, _fits(est[1]) - 1024 ** 2)
    cpu = plan_memory(SHAPE, cfg, None)  # the CPU: nothing checked
    assert cpu.frames_per_step == 8 and cpu.estimate is None


def test_plan_never_asks_for_more_frames_than_the_series_has():
    cfg = _cfg("dainr.frames_per_step=8")
    small = dataclasses.replace(SHAPE, frames=3)
    assert plan_memory(small, cfg, 10 ** 13).frames_per_step == 3


def test_baselines_fit_or_are_refused():
    cfg = _cfg("method=cgsense")
    total = estimate_memory(SHAPE, cfg).total
    assert plan_memory(SHAPE, cfg, _fits(total)).frames_per_step == 1
    with pytest.raises(ResourceError, match="cgsense"):
        plan_memory(SHAPE, cfg, total // 2)


def _cine(frames=6, coils=4, spokes=8, matrix=32):
    ns = 2 * matrix
    k = np.zeros((frames, coils, spokes, ns), np.complex64)
    return CineData(kspace=k, traj=radial_trajectory("goldenangle", frames, spokes, ns), matrix=(matrix, matrix))


def test_fit_to_device(caplog):
    cine = _cine()
    cfg = _cfg("dainr.frames_per_step=4")
    assert fit_to_device(cine, cfg, torch.device("cpu")) is cfg  # CPU: skipped
    shape = SeriesShape.of(cine)
    assert fit_to_device(cine, cfg, torch.device("cuda"), free_bytes=10 ** 13) is cfg
    two = fit_to_device(cine, cfg, torch.device("cuda"), free_bytes=_fits(estimate_memory(shape, cfg, 2).total))
    assert two.dainr.frames_per_step == 2 and cfg.dainr.frames_per_step == 4  # a copy; the original is kept
    assert dataclasses.replace(two.dainr, frames_per_step=4) == cfg.dainr
    assert "running with 2 frame(s) per step" in caplog.text
    with pytest.raises(ResourceError):
        fit_to_device(cine, cfg, torch.device("cuda"), free_bytes=1024)


def test_fit_to_device_counts_virtual_coils():
    cine = _cine(frames=20, coils=16, spokes=32, matrix=64)
    cfg = _cfg("dainr.frames_per_step=4", "prep.virtual_coils=4")
    shape4 = SeriesShape.of(cine, 4)
    free = _fits(estimate_memory(shape4, cfg, 4).total)
    assert estimate_memory(SeriesShape.of(cine), cfg, 4).total > free  # all 16 coils would not fit
    assert fit_to_device(cine, cfg, torch.device("cuda"), free_bytes=free).dainr.frames_per_step == 4
