"""Batched DA-INR fits (:mod:`dainr.recon.batched_fit`): several slices in one optimisation step give each slice the
images it gets alone, stop each slice on its own held-out spokes, and leave slices that cannot share a step alone.

Tolerance: a batched step runs batched matrix products (``bmm``) and gathers where one slice runs ``mm`` and
``index_select``; they may add in another order on another BLAS build or thread count, and a few optimisation steps
amplify float32 rounding (1e-7) by a few orders. The images must agree to 1e-5 of the slice's largest pixel; a
coupling between slices, a slice's weights, frames or data given to another, or the wrong stopping step moves them
by 1e-2 or more. (On this CPU they agree bit for bit.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import dainr.recon.batched_fit as batched_fit
import dainr.stream.exam as exam
from dainr.config import load_config
from dainr.mrd import read_raw
from dainr.prep import prepare
from dainr.recon import reconstruct, reconstruct_batch
from dainr.recon.batched_fit import BatchedFit, batch_key
from dainr.recon.dainr_fit import DainrFit
from dainr.simulate import simulate
from dainr.stream import ReconSettings, reconstruct_slice, slice_jobs
from dainr.stream.exam import ExamPlan, batches, run_exam
from tests.conftest import simulate_file

#: cpu-test plus everything that keeps state across steps: held-out selection, averaged weights, both TV terms.
OVERRIDES = ["dainr.validation_fraction=0.2", "dainr.validate_every=4", "dainr.ema=0.9", "dainr.tv_temporal=0.1",
             "dainr.tv_spatial=0.05"]
#: Held-out checks every 2 steps with patience 2 at a high learning rate: the three slices stop at different steps.
STOPPING = ["dainr.validation_fraction=0.2", "dainr.validate_every=2", "dainr.patience=2", "dainr.steps=30",
            "dainr.lr=0.05"]
RTOL = 1e-5


@pytest.fixture(scope="module")
def series():
    return simulate("phantom", matrix=16, frames=4, coils=2, spokes=9, snr=100, seed=2, slices=3)


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.abs(a - b).max()) <= RTOL * float(np.abs(b).max())


@pytest.mark.parametrize("n", [2, 3])
def test_batched_slices_get_the_images_they_get_alone(series, n):
    cfg = load_config("cpu-test", overrides=OVERRIDES)
    cines = series.slices[:n]
    alone = [reconstruct(c, cfg) for c in cines]
    together = reconstruct_batch(cines, cfg)
    for a, b in zip(alone, together):
        assert b.info["batch_slices"] == n
        assert _close(b.images, a.images)
        assert (b.iterations, b.selected_step, b.info["train_frames"]) == (a.iterations, a.selected_step,
                                                                          a.info["train_frames"])
        assert [s for s, _ in b.validation] == [s for s, _ in a.validation]
        assert np.allclose([v for _, v in b.validation], [v for _, v in a.validation], rtol=1e-4)
        assert np.allclose(b.loss, a.loss, rtol=1e-4)
    # The slices differ, so a batch that mixed up their weights or data could not pass the comparison above.
    assert not _close(alone[0].images, alone[1].images)


def test_each_slice_stops_on_its_own_held_out_spokes(series):
    cfg = load_config("cpu-test", overrides=STOPPING)
    alone = [reconstruct(c, cfg) for c in series.slices]
    stops = [a.iterations for a in alone]
    assert len(set(stops)) > 1 and max(stops) < cfg.dainr.steps  # the case tests something
    together = reconstruct_batch(series.slices, cfg)
    assert [b.iterations for b in together] == stops
    assert [b.selected_step for b in together] == [a.selected_step for a in alone]
    for a, b in zip(alone, together):
        assert _close(b.images, a.images)
        assert [s for s, _ in b.validation] == [s for s, _ in a.validation]


def test_a_slice_of_another_shape_is_fitted_alone(series):
    cfg = load_config("cpu-test", overrides=OVERRIDES)
    other = simulate("phantom", matrix=16, frames=4, coils=2, spokes=7, snr=100, seed=5).slices[0]
    cines = [series.slices[0], other, series.slices[1]]
    together = reconstruct_batch(cines, cfg)
    assert [r.info["batch_slices"] for r in together] == [2, 1, 2]
    for c, r in zip(cines, together):
        assert _close(r.images, reconstruct(c, cfg).images)


def test_what_cannot_be_batched():
    cfg = load_config("cpu-test")
    cines = simulate("phantom", matrix=16, frames=4, coils=2, spokes=9, snr=100, seed=2, slices=2).slices
    dev = torch.device("cpu")
    fits = [DainrFit(prepare(c), cfg, dev) for c in cines]
    assert batch_key(fits[0]) == batch_key(fits[1]) is not None
    pre = dataclasses.replace(cfg, dainr=dataclasses.replace(cfg.dainr, preconditioned_gradient=True))
    assert batch_key(DainrFit(prepare(cines[0]), pre, dev)) is None
    fewer = dataclasses.replace(cfg, dainr=dataclasses.replace(cfg.dainr, frames_per_step=1))
    assert batch_key(DainrFit(prepare(cines[0]), fewer, dev)) != batch_key(fits[0])
    with pytest.raises(ValueError, match="one shape and one setting"):
        BatchedFit([fits[0], DainrFit(prepare(cines[1]), fewer, dev)])


def test_out_of_memory_in_a_batch_fits_the_slices_alone(series, monkeypatch):
    """An out-of-memory error after a few batched steps: every slice is fitted again alone, from its own start
    (the batch never advanced the slices' own frame samplers or weights)."""
    cfg = load_config("cpu-test", overrides=OVERRIDES)
    calls = {"n": 0}
    real = batched_fit.BatchedStep.__call__

    def failing(self, frames):
        calls["n"] += 1
        if calls["n"] == 5:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(self, frames)

    monkeypatch.setattr(batched_fit.BatchedStep, "__call__", failing)
    together = reconstruct_batch(series.slices[:2], cfg)
    assert calls["n"] == 5 and [r.info["batch_slices"] for r in together] == [1, 1]
    for c, r in zip(series.slices[:2], together):
        assert np.array_equal(r.images, reconstruct(c, cfg).images)


@pytest.fixture(scope="module")
def exam_jobs(tmp_path_factory):
    raw = simulate_file(tmp_path_factory.mktemp("batched") / "raw.h5", "--slices", "3", matrix=16, frames=4,
                        coils=2, spokes=5)[0]
    return slice_jobs(read_raw(raw))


def test_the_exam_groups_slices_of_one_shape_and_settings(series):
    cfg = load_config("cpu-test")
    other = simulate("phantom", matrix=16, frames=4, coils=2, spokes=7, snr=100, seed=5).slices[0]
    cines = [series.slices[0], other, series.slices[1], series.slices[2], other]
    assert batches(cines, [cfg] * 5, 2) == [[0, 2], [1, 4], [3]]
    assert batches(cines, [cfg] * 5, 1) == [[0], [1], [2], [3], [4]]
    fewer = dataclasses.replace(cfg, dainr=dataclasses.replace(cfg.dainr, frames_per_step=1))
    assert batches(cines[:3], [cfg, cfg, fewer], 3) == [[0], [1], [2]]
    adjoint = load_config("cpu-test", overrides=["method=adjoint"])
    assert batches(cines[:3:2], [adjoint] * 2, 3) == [[0], [1]]


def test_the_exam_fits_its_batches_and_yields_in_exam_order(exam_jobs, monkeypatch):
    settings = ReconSettings.load("cpu-test", overrides=OVERRIDES)
    alone = [reconstruct_slice(job, settings).result.images for job in exam_jobs]
    units = []
    real = exam.reconstruct_slices

    def spy(jobs, settings, progress=None, device=None):
        units.append([j.cine.slice_index for j in jobs])
        return real(jobs, settings, progress, device)

    monkeypatch.setattr(exam, "reconstruct_slices", spy)
    seen = []
    plan = ExamPlan(devices=("cpu",), per_device=1, configs=(settings.config,) * 3, batch=2)
    outputs = list(run_exam(exam_jobs, plan, settings, progress=lambda i, *_: seen.append(i)))
    assert units == [[exam_jobs[0].cine.slice_index, exam_jobs[1].cine.slice_index]]  # the third alone
    assert [o.job.cine.slice_index for o in outputs] == [j.cine.slice_index for j in exam_jobs]
    assert set(seen) == {0, 1, 2}
    for out, ref in zip(outputs, alone):
        assert _close(out.result.images, ref)
    assert [o.result.info.get("batch_slices") for o in outputs] == [2, 2, None]


def test_seeds_of_one_slice_in_one_batch(series):
    """K seeds of one slice batched: each draws its own initialisation and frame order, as it does alone."""
    dev = torch.device("cpu")
    prepared = prepare(series.slices[0])
    configs = [load_config("cpu-test", overrides=[*OVERRIDES, f"seed={s}"]) for s in (0, 1, 2)]
    together = BatchedFit([DainrFit(prepared, c, dev) for c in configs]).run()
    alone = [DainrFit(prepared, c, dev).run() for c in configs]
    for a, b in zip(alone, together):
        assert _close(b.images.numpy(), a.images.numpy())
    assert not _close(alone[0].images.numpy(), alone[1].images.numpy())
