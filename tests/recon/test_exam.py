"""The exam scheduler (:mod:`dainr.stream.exam`): slices at once, over several devices, with each slice's images
those it gets alone; its plan; its failures."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
import torch

import dainr.stream.exam as exam
from dainr.config import load_config
from dainr.errors import ConfigError, InputError
from dainr.mrd import read_raw
from dainr.recon.budget import USABLE_FRACTION
from dainr.stream import ReconSettings, reconstruct_slice, slice_jobs
from dainr.stream.exam import ExamPlan, plan_exam, run_exam
from tests.conftest import simulate_file

#: cpu-test plus the parts of the fit that keep state across steps: held-out selection and averaged weights.
OVERRIDES = ["dainr.validation_fraction=0.2", "dainr.validate_every=4", "dainr.ema=0.9"]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    raw = simulate_file(tmp_path_factory.mktemp("exam") / "raw.h5", "--slices", "3", matrix=16, frames=4, coils=2,
                        spokes=5)[0]
    return slice_jobs(read_raw(raw))


@pytest.fixture(scope="module")
def settings():
    return ReconSettings.load("cpu-test", overrides=OVERRIDES)


@pytest.fixture(scope="module")
def alone(jobs, settings):
    """Each slice reconstructed alone, one after another, in this thread."""
    return [reconstruct_slice(job, settings).result.images for job in jobs]


def _plan(settings, n: int, devices: tuple[str, ...] = ("cpu",), per_device: int = 1) -> ExamPlan:
    return ExamPlan(devices=devices, per_device=per_device, configs=(settings.config,) * n)


class _Rendezvous:
    """Wraps reconstruct_slice: records (thread, device, slice) and makes the first ``parties`` slices wait for each
    other, which only slices in flight at the same time can do."""

    def __init__(self, parties: int):
        self.barrier = threading.Barrier(parties, timeout=60)
        self.calls: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()

    def __call__(self, job, settings, progress=None, device=None):
        with self.lock:
            self.calls.append((threading.current_thread().name, device, job.cine.slice_index))
            first = len(self.calls) <= self.barrier.parties
        if first:
            self.barrier.wait()  # a BrokenBarrierError (timeout) fails the test: the slices never overlapped
        return reconstruct_slice(job, settings, progress, device)


@pytest.mark.parametrize("per_device", [2, 3])
def test_slices_at_once_give_the_images_of_each_slice_alone(jobs, settings, alone, per_device, monkeypatch):
    spy = _Rendezvous(per_device)
    monkeypatch.setattr(exam, "reconstruct_slice", spy)
    outputs = list(run_exam(jobs, _plan(settings, len(jobs), per_device=per_device), settings))
    assert [o.job.cine.slice_index for o in outputs] == [j.cine.slice_index for j in jobs]
    for out, ref in zip(outputs, alone):
        assert np.array_equal(out.result.images, ref)
    assert len({name for name, _, _ in spy.calls}) == per_device


def test_slices_spread_over_several_devices(jobs, settings, alone, monkeypatch):
    """Three CPU "devices", one slice each at a time: every device gets a slice, the three run at once, and each
    slice's images are its images alone."""
    spy = _Rendezvous(3)
    monkeypatch.setattr(exam, "reconstruct_slice", spy)
    plan = plan_exam([j.cine for j in jobs], settings.config, "cpu,cpu,cpu")
    assert plan.devices == ("cpu", "cpu", "cpu") and plan.per_device == 1 and plan.slots == 3
    outputs = list(run_exam(jobs, plan, settings))
    assert sorted(d for _, d, _ in spy.calls) == ["cpu"] * 3
    assert len({name for name, _, _ in spy.calls}) == 3
    for out, ref in zip(outputs, alone):
        assert np.array_equal(out.result.images, ref)


def test_a_failed_slice_stops_the_exam_and_is_raised_in_order(jobs, settings, monkeypatch):
    """Slice 1 fails while slice 0 still runs: slice 0 is stopped at its next progress report, slice 2 never
    starts, and the exam raises slice 1's error, not the stop."""
    started: list[int] = []

    def fake(job, settings, progress=None, device=None):
        started.append(job.cine.slice_index)
        if job.cine.slice_index == 1:
            raise InputError("slice 1 is broken")
        for step in range(3000):  # until stopped
            progress(step, 3000, "")
            time.sleep(0.01)
        raise AssertionError("never stopped")

    monkeypatch.setattr(exam, "reconstruct_slice", fake)
    with pytest.raises(InputError, match="slice 1 is broken"):
        list(run_exam(jobs, _plan(settings, len(jobs), per_device=2), settings))
    assert sorted(started) == [0, 1]


def test_slices_before_a_failure_come_out_first(jobs, settings, monkeypatch):
    def fake(job, settings, progress=None, device=None):
        if job.cine.slice_index == 2:
            raise InputError("slice 2 is broken")
        return reconstruct_slice(job, settings, progress, device)

    monkeypatch.setattr(exam, "reconstruct_slice", fake)
    adjoint = ReconSettings.load("cpu-test", overrides=["method=adjoint"])
    outputs = run_exam(jobs, _plan(adjoint, len(jobs)), adjoint)
    assert [next(outputs).job.cine.slice_index for _ in range(2)] == [0, 1]
    with pytest.raises(InputError, match="slice 2 is broken"):
        next(outputs)


def test_progress_reports_each_slice_by_its_position(jobs, settings):
    seen: dict[int, set] = {}
    lock = threading.Lock()

    def progress(i, step, total, message):
        with lock:
            seen.setdefault(i, set()).add((total, message.split()[0]))

    list(run_exam(jobs, _plan(settings, len(jobs), per_device=2), settings, progress))
    assert seen == {i: {(settings.config.dainr.steps, "loss")} for i in range(len(jobs))}


def test_plan_on_the_cpu(jobs, settings):
    cines = [j.cine for j in jobs]
    plan = plan_exam(cines, settings.config, "cpu")
    assert (plan.devices, plan.per_device, plan.free_bytes, plan.batch) == (("cpu",), 1, None, 1)
    assert plan.configs == (settings.config,) * 3
    assert plan_exam(cines, settings.config, "cpu", per_device=2).per_device == 2
    assert plan_exam(cines, settings.config, "cpu", per_device=9).per_device == 3  # never more than the slices
    assert plan_exam(cines, settings.config, "cpu,cpu", per_device=9).per_device == 2
    with pytest.raises(ConfigError, match="--concurrent-slices must be >= 1"):
        plan_exam(cines, settings.config, "cpu", per_device=0)
    with pytest.raises(ConfigError, match="'gpu'"):
        plan_exam(cines, settings.config, "gpu")


def test_plan_fits_the_slices_at_once_in_the_memory(jobs, settings, monkeypatch, caplog):
    """On a GPU, slices alone (--batch-slices 1): the default is as many slices at once as fit the free memory (at
    most MAX_DEFAULT_PER_GPU); a larger number asked for is lowered to that, with a warning; a config that fits alone
    is never changed."""
    import dainr.recon.budget as budget

    cines = [j.cine for j in jobs] * 4  # 12 slices
    one = exam._slice_bytes(cines[0], settings.config)
    free = {"n": 0}
    monkeypatch.setattr(budget, "device_free_bytes", lambda device: free["n"])
    for fits in (1, 2, 5, 40):
        free["n"] = int(fits * one / USABLE_FRACTION) + 16
        plan = plan_exam(cines, settings.config, "cpu", batch_slices=1)
        assert plan.per_device == min(fits, exam.MAX_DEFAULT_PER_GPU) and plan.batch == 1
        assert plan.configs == (settings.config,) * 12 and plan.slice_bytes == one
    free["n"] = int(2 * one / USABLE_FRACTION) + 16
    with caplog.at_level(logging.WARNING):
        assert plan_exam(cines, settings.config, "cpu", per_device=5, batch_slices=1).per_device == 2
    assert "--concurrent-slices 5: only 2 slice(s)" in caplog.text


def test_plan_batches_the_slices_that_fit_the_memory(jobs, settings, monkeypatch, caplog):
    """On a GPU the default is no batching (MAX_DEFAULT_BATCH = 1, measured faster); a batch asked for is at most as
    many slices as fit the free memory; the memory left over runs more batches at once; a batch asked for larger
    than fits is lowered, with a warning."""
    import dainr.recon.budget as budget

    cines = [j.cine for j in jobs] * 4  # 12 slices
    one = exam._slice_bytes(cines[0], settings.config)
    free = {"n": 0}
    monkeypatch.setattr(budget, "device_free_bytes", lambda device: free["n"])
    assert exam.MAX_DEFAULT_BATCH == 1
    free["n"] = int(40 * one / USABLE_FRACTION) + 16
    assert plan_exam(cines, settings.config, "cpu").batch == 1
    for fits, batch, at_once in ((1, 1, 1), (2, 2, 1), (5, 5, 1), (13, 6, 2), (40, 6, 2)):
        free["n"] = int(fits * one / USABLE_FRACTION) + 16
        plan = plan_exam(cines, settings.config, "cpu", batch_slices=6)
        assert (plan.batch, plan.per_device) == (batch, at_once), fits
    free["n"] = int(40 * one / USABLE_FRACTION) + 16
    assert plan_exam(cines, settings.config, "cpu", batch_slices=12).batch == 12
    assert plan_exam(cines, settings.config, "cpu", batch_slices=4).per_device == 3
    free["n"] = int(3 * one / USABLE_FRACTION) + 16
    with caplog.at_level(logging.WARNING):
        assert plan_exam(cines, settings.config, "cpu", batch_slices=5).batch == 3
    assert "--batch-slices 5: only 3 slice(s)" in caplog.text
    with pytest.raises(ConfigError, match="--batch-slices must be >= 1"):
        plan_exam(cines, settings.config, "cpu", batch_slices=0)


def test_device_lists(monkeypatch):
    from dainr.recon.device import resolve_devices

    assert resolve_devices("cpu") == ["cpu"] and resolve_devices(" cpu, cpu ") == ["cpu", "cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_devices("cuda") == resolve_devices("auto") == ["cuda:0", "cuda:1"]
    assert resolve_devices("cuda:0,1") == resolve_devices("cuda:0,cuda:1") == ["cuda:0", "cuda:1"]
    assert resolve_devices("cuda:1") == ["cuda:1"]
    with pytest.raises(ConfigError, match="names a GPU twice"):
        resolve_devices("cuda:1,1")
    with pytest.raises(ConfigError, match="only 2 CUDA GPU"):
        resolve_devices("cuda:0,2")
    with pytest.raises(ConfigError, match="'cuda:x'"):
        resolve_devices("cuda:x")


def test_cpu_threads_never_touch_cuda(jobs, settings, monkeypatch):
    """On the CPU a slice thread takes no CUDA stream (and starts no CUDA)."""
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: (_ for _ in ()).throw(AssertionError("a stream")))
    cfg = load_config("cpu-test", overrides=["method=adjoint"])
    list(run_exam(jobs, ExamPlan(("cpu",), 2, (cfg,) * 3), ReconSettings(config=cfg)))
