"""Warm worker processes: started with the server, warmed up before their first job, reused job after job, and
replaced (warm again) after a kill (issue 16 goal 3)."""

from __future__ import annotations

import pytest

from dainr.server.replay import replay
from tests.gadget.compare import assert_same_images
from tests.server.conftest import ADJOINT, TIMEOUT, make_server, wait_until

pytestmark = pytest.mark.timeout(240)


def test_later_connections_reuse_the_worker_process_and_a_killed_one_is_replaced(tmp_path, raw_one, ref_adjoint):
    srv = make_server(tmp_path, isolate=True)
    with srv.running():
        worker = srv.pool._workers[0]
        first = worker.process
        wait_until(lambda: worker.ready, what="the worker's warm-up")  # said by the process itself, before any job
        for _ in range(2):  # the second connection finds the same, already started interpreter
            result = replay(raw_one, "127.0.0.1", srv.address[1], config_text=ADJOINT, timeout=TIMEOUT)
            assert_same_images(result.images, ref_adjoint[raw_one])
            assert worker.process is first and first.is_alive()
            assert worker.spawns == 1
        first.kill()
        wait_until(lambda: worker.process is not first and worker.process.is_alive(), what="a new worker process")
        assert worker.spawns == 2
        wait_until(lambda: worker.ready, what="the new worker's warm-up")  # warm before its first job
        replaced = worker.process
        result = replay(raw_one, "127.0.0.1", srv.address[1], config_text=ADJOINT, timeout=TIMEOUT)
        assert_same_images(result.images, ref_adjoint[raw_one])
        assert worker.process is replaced and worker.spawns == 2
