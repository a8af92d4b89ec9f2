"""What lets slices run at once in one process: the seeded initialisation, the deterministic switch, the GPU lease
(:mod:`dainr.recon.concurrent`, :mod:`dainr.stream.device_lock`)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from dainr.recon.concurrent import deterministic, seeded
from dainr.stream.device_lock import gpu_lock


def _in_thread(target) -> threading.Thread:
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


def test_seeded_draws_are_the_seeds_own_even_when_threads_interleave():
    """Two threads draw slowly inside seeded(); each gets exactly what its seed gives alone, and the caller's
    generator state is left as it was."""
    alone = {s: torch.Generator().manual_seed(s) for s in (0, 1)}
    expected = {s: [torch.rand(2, generator=alone[s]) for _ in range(5)] for s in (0, 1)}
    got: dict[int, list] = {}

    def draw(seed: int) -> None:
        with seeded(seed):
            got[seed] = []
            for _ in range(5):
                got[seed].append(torch.rand(2))
                time.sleep(0.01)  # another thread's draws would land here without the lock

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    threads = [_in_thread(lambda s=s: draw(s)) for s in (0, 1)]
    for t in threads:
        t.join(30)
    for s in (0, 1):
        assert all(torch.equal(a, b) for a, b in zip(got[s], expected[s]))
    assert torch.equal(torch.random.get_rng_state(), before)


def test_deterministic_stays_on_while_any_reconstruction_asks_for_it():
    """Two overlapping reconstructions: the first to finish must not switch the algorithms back under the other."""
    torch.use_deterministic_algorithms(False)
    first_in, second_in, first_out, second_out = (threading.Event() for _ in range(4))
    seen: list[bool] = []

    def first():
        with deterministic(True):
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with deterministic(True):
            second_in.set()
            first_out.wait(10)
            seen.append(torch.are_deterministic_algorithms_enabled())
        second_out.set()

    threads = [_in_thread(first), _in_thread(second)]
    for t in threads:
        t.join(30)
    assert seen == [True]
    assert not torch.are_deterministic_algorithms_enabled()


_PROBE = """
import fcntl, sys
with open(sys.argv[1], "a+b") as fh:
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(1)
"""


def _other_process_can_lock(path) -> bool:
    return subprocess.run([sys.executable, "-c", _PROBE, str(path)], timeout=60).returncode == 0


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_gpu_lease_is_shared_in_the_process_and_exclusive_across_processes(tmp_path):
    lock_file = tmp_path / "dainr-gpu-0.lock"
    holding, release, done = threading.Event(), threading.Event(), threading.Event()

    def hold():
        with gpu_lock("cuda:0", tmp_path):
            holding.set()
            release.wait(30)
        done.set()

    _in_thread(hold)
    assert holding.wait(10)
    second = threading.Event()

    def share():
        with gpu_lock("cuda:0", tmp_path) as waited:
            assert waited < 5
            second.set()

    _in_thread(share)
    assert second.wait(10), "a second slice of the same process waited for the GPU lock"
    assert not _other_process_can_lock(lock_file)
    release.set()
    assert done.wait(10)
    assert _other_process_can_lock(lock_file)
    with gpu_lock("cpu", tmp_path) as waited:  # the CPU takes no lock
        assert waited == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_slices_at_once_on_one_gpu_give_their_images_alone(tmp_path):
    """On a GPU (CUDA graphs, several streams, captures from several threads): each slice's images are those it
    gets alone."""
    from dainr.mrd import read_raw
    from dainr.stream import ReconSettings, reconstruct_slice, slice_jobs
    from dainr.stream.exam import ExamPlan, run_exam
    from tests.conftest import simulate_file

    raw = simulate_file(tmp_path / "raw.h5", "--slices", "3", matrix=32, frames=6, coils=4, spokes=9)[0]
    jobs = slice_jobs(read_raw(raw))
    settings = ReconSettings.load("fast", overrides=["device=cuda", "dainr.steps=40"])
    alone = [reconstruct_slice(j, settings).result.images for j in jobs]
    outputs = list(run_exam(jobs, ExamPlan(("cuda:0",), 3, (settings.config,) * 3), settings))
    for out, ref in zip(outputs, alone):
        assert out.result.info["cuda_graph"] and np.array_equal(out.result.images, ref)
