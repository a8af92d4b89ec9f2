"""The server's workers run several slices of one stream at once, per device and over devices, each slice with the
images it gets alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import dainr.server.workers as workers
from dainr.mrd import read_raw
from dainr.server.replay import replay
from dainr.server.workers import WorkerPool
from dainr.stream import ReconSettings, reconstruct_slice, slice_jobs
from tests.conftest import simulate_file
from tests.gadget.compare import DAINR_TOLERANCE, assert_same_images, cli_images
from tests.server.conftest import TIMEOUT, make_server

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("devices, per_device", [(["cpu"], 2), (["cpu", "cpu"], None)])
def test_slices_of_one_stream_run_at_once(tmp_path, monkeypatch, devices, per_device):
    raw = simulate_file(tmp_path / "raw.h5", "--slices", "3", matrix=16, frames=3, coils=2, spokes=5)[0]
    jobs = slice_jobs(read_raw(raw))
    settings = ReconSettings.load("cpu-test")
    alone = [reconstruct_slice(j, settings).result.images for j in jobs]
    both_running = threading.Barrier(2, timeout=60)
    calls: list[str] = []

    def spy(job, settings, progress=None, device=None):
        calls.append(device)
        if job.cine.slice_index < 2:
            both_running.wait()  # only two slices in flight at once get past this
        return reconstruct_slice(job, settings, progress, device)

    monkeypatch.setattr(workers, "reconstruct_slice", spy)
    pool = WorkerPool(devices, per_device=per_device)
    try:
        items = [pool.submit(j, settings, f"slice {j.cine.slice_index}", threading.Event()) for j in jobs]
        outputs = [item.future.result(timeout=TIMEOUT) for item in items]
    finally:
        pool.shutdown()
    assert calls == ["cpu"] * 3
    for out, ref in zip(outputs, alone):
        assert np.array_equal(out.result.images, ref)


def test_server_with_two_cpu_workers_gives_the_cli_images(tmp_path, raw_two):
    srv = make_server(tmp_path, devices=["cpu", "cpu"])
    assert len(srv.pool._workers) == 2 and all(not w.isolate for w in srv.pool._workers)
    with srv.running():
        got = replay(raw_two, "127.0.0.1", srv.address[1], config="cpu-test", timeout=TIMEOUT)
    assert_same_images(got.images, cli_images(raw_two, tmp_path / "cli.h5", "--preset", "cpu-test"),
                       DAINR_TOLERANCE)


def test_isolated_workers_run_one_slice_per_device():
    pool = WorkerPool(["cpu"], isolate=True, per_device=3)
    try:
        assert len(pool._workers) == 1
    finally:
        pool.shutdown()
    with pytest.raises(ValueError, match="per_device"):
        WorkerPool(["cpu"], per_device=0)
