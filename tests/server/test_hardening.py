"""Issue 19: no client can hold a slot, exhaust memory or probe files. One test (or more) per finding, each failing on
the server before the fix; all on 127.0.0.1 with tiny data, bounded in time."""

from __future__ import annotations

import gc
import logging
import socket
import struct
import threading
import time
import weakref

import ismrmrd
import pytest

from dainr.server.replay import ServerError, replay
from dainr.stream import protocol
from dainr.stream.protocol import Limits
from tests.gadget.compare import assert_same_images
from tests.server.conftest import ADJOINT, TIMEOUT, connect, make_server, read_reply, send_request, wait_until

pytestmark = pytest.mark.timeout(120)


def _error(reply: list) -> str:
    """The one error line of a reply that is ``TEXT ERROR: ..., CLOSE``."""
    assert [m for m, _ in reply] == [protocol.TEXT, protocol.CLOSE], reply
    assert reply[0][1].startswith("ERROR: ")
    return reply[0][1]


# -- 1: a client that leaves after CLOSE keeps neither its job nor its slot; every connection has a deadline ----------

@pytest.mark.parametrize("config, isolate, message", [
    ("long", False, "the client closed the connection before its images were sent"),
    # dainr.log_every beyond dainr.steps: the cancel can only take effect by killing the worker process
    ("stubborn", True, "did not stop within 1.0 s of being cancelled"),
], ids=["progress-reports", "never-reports-progress"])
def test_a_client_that_leaves_after_close_has_its_job_cancelled(tmp_path, operator_dir, raw_one, ref_adjoint, caplog,
                                                                config, isolate, message):
    srv = make_server(tmp_path, config_dirs=[operator_dir], max_jobs=1, isolate=isolate, cancel_grace_s=1.0)
    with srv.running(), caplog.at_level(logging.INFO, logger="dainr"):
        sock = connect(srv)
        send_request(sock, raw_one, config=config)  # CLOSE sent: the server no longer reads a message
        wait_until(lambda: srv.pool.running, what="the slice to start")
        sock.close()
        wait_until(lambda: not srv.pool.running and srv.jobs == 0, timeout=20, what="the job to be cancelled")
        assert message in caplog.text
        # the worker (restarted after a kill) takes the next job
        assert_same_images(replay(raw_one, "127.0.0.1", srv.address[1], config_text=ADJOINT).images,
                           ref_adjoint[raw_one])


def test_every_connection_has_a_deadline_reconstruction_included(tmp_path, operator_dir, raw_one):
    srv = make_server(tmp_path, config_dirs=[operator_dir], max_jobs=1, connection_timeout_s=1.5)
    with srv.running():
        with connect(srv) as sock:
            send_request(sock, raw_one, config="long")  # then waits, connected, for images that never come
            text = _error(read_reply(sock))
        assert "reached the server's limit of 1.5 s" in text and "--max-time" in text
        wait_until(lambda: not srv.pool.running and srv.jobs == 0, what="the job to be cancelled")


# -- 2: what a client may set, and bounds on it ------------------------------------------------------------------------

@pytest.mark.parametrize("text, fragment", [
    ("preset: cpu-test\ndainr.steps: 100000000\n", "dainr.steps 100000000 is more than this server allows"),
    ("preset: cpu-test\ndainr:\n  grid:\n    log2_table_size: 28\n",
     "config key 'dainr.grid.log2_table_size' cannot be set by a client"),
    ("preset: cpu-test\ndainr.log_every: 100000000\n", "config key 'dainr.log_every' cannot be set by a client"),
], ids=["steps", "grid", "log_every"])
def test_client_config_keys_are_a_short_list_with_bounds(server, raw_one, text, fragment):
    with connect(server) as sock:
        send_request(sock, raw_one, text=text)
        assert fragment in _error(read_reply(sock))


# -- 3: no file probing --------------------------------------------------------------------------------------------

def test_clients_never_name_server_paths(server, raw_one, tmp_path):
    secret = tmp_path / "secret.pt"
    secret.write_bytes(b"\x80\x02secret")
    replies = []
    for path in (secret, tmp_path / "absent.pt"):
        with connect(server) as sock:
            send_request(sock, raw_one, text=f"preset: cpu-test\ndainr.features.weights: {path}\n")
            replies.append(_error(read_reply(sock)))
    assert replies[0] == replies[1]  # the same answer whether the file exists or not
    assert "dainr.features.weights' cannot be set by a client" in replies[0]
    assert str(tmp_path) not in replies[0] and "secret" not in replies[0]
    with pytest.raises(ServerError, match="must be a name, not a path"):
        replay(raw_one, "127.0.0.1", server.address[1], config_text=f"config_file: {secret}")


# -- 4: idle and slow clients --------------------------------------------------------------------------------------

def test_a_client_that_drips_bytes_is_dropped_at_the_stream_deadline(tmp_path, raw_one, ref_adjoint, caplog):
    """One byte every 0.2 s never trips the 1 s idle time-out; the 2 s deadline of the stream frees the slot."""
    srv = make_server(tmp_path, max_jobs=1, limits=Limits(idle_timeout_s=1.0, stream_timeout_s=2.0))
    with srv.running(), caplog.at_level(logging.INFO, logger="dainr"):
        with connect(srv) as sock:
            sock.sendall(protocol.frame_config_file("cpu-test"))
            wait_until(lambda: srv.jobs == 1, what="the slot")
            header = protocol.frame_text("<x/>" * 100, protocol.HEADER)
            for i in range(40):  # at most 8 s of dripping
                if srv.jobs == 0:
                    break
                sock.sendall(header[i:i + 1])
                time.sleep(0.2)
            text = _error(read_reply(sock))
        assert "did not finish its stream within 2 s" in text
        assert "dropped: the client did not finish its stream" in caplog.text
        assert_same_images(replay(raw_one, "127.0.0.1", srv.address[1], config_text=ADJOINT).images,
                           ref_adjoint[raw_one])


def test_a_silent_client_is_dropped_and_logged(tmp_path, caplog):
    srv = make_server(tmp_path, limits=Limits(idle_timeout_s=0.5))
    with srv.running(), caplog.at_level(logging.INFO, logger="dainr"):
        with connect(srv) as sock:
            sock.sendall(protocol.frame_config_file("cpu-test"))
            assert "sent nothing for 0.5 s" in _error(read_reply(sock))
    assert "dropped: the client sent nothing for 0.5 s" in caplog.text


# -- 5: connections cost no thread once refused, and a failed thread start does not stop the listener -----------------

def test_refused_connections_take_no_thread_and_linger_nowhere(tmp_path, raw_one):
    srv = make_server(tmp_path, max_jobs=1)
    with srv.running():
        holder = connect(srv)
        holder.sendall(protocol.frame_config_file("cpu-test"))  # takes the only job slot
        wait_until(lambda: srv.jobs == 1, what="the holder's slot")
        baseline = threading.active_count()
        clients = []
        for _ in range(40):
            c = connect(srv)
            c.sendall(protocol.frame_config_file("cpu-test"))  # and then never closes
            clients.append(c)
        answers = [_error(read_reply(c)) for c in clients]
        assert all("server busy" in a for a in answers), answers
        # every refusal is sent, the clients still connected: no thread waits on any of them (the old server kept
        # one per refused client for 5 s)
        wait_until(lambda: threading.active_count() <= baseline, timeout=2, what="no thread per refused client")
        for c in clients:
            c.close()
        holder.close()
        wait_until(lambda: not any(t.is_alive() for t, _ in srv._sessions.values()), what="the sessions to end")
        assert len(replay(raw_one, "127.0.0.1", srv.address[1], config_text=ADJOINT).images) == 3


def test_a_failed_thread_start_refuses_that_client_and_keeps_listening(tmp_path, raw_one, monkeypatch):
    srv = make_server(tmp_path)
    real_start = threading.Thread.start
    failures = [1]

    def start(self):
        if self.name.startswith("dainr-conn") and failures:
            failures.pop()
            raise RuntimeError("can't start new thread")
        return real_start(self)

    with srv.running():
        monkeypatch.setattr(threading.Thread, "start", start)
        with connect(srv) as sock:
            send_request(sock, raw_one, text=ADJOINT)
            assert "cannot take this connection now" in _error(read_reply(sock))
        assert len(replay(raw_one, "127.0.0.1", srv.address[1], config_text=ADJOINT).images) == 3


# -- 6 and 8: a failed job leaves nothing behind, and clients get the cause in their own terms ---------------------

def test_a_failed_job_is_freed_without_a_garbage_collection_and_its_internals_stay_in_the_log(
        tmp_path, raw_one, monkeypatch, caplog):
    from dainr.stream import exam

    kept = []

    def failing(job, settings, progress=None, device=None):
        kept.append(weakref.ref(job.cine.kspace))
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(exam, "reconstruct_slice", failing)  # the server runs its slices as an exam
    srv = make_server(tmp_path)
    gc.collect()
    gc.disable()
    try:
        with srv.running(), caplog.at_level(logging.INFO, logger="dainr"):
            with connect(srv) as sock:
                send_request(sock, raw_one, text=ADJOINT)
                text = _error(read_reply(sock))
            wait_until(lambda: not srv.pool.running and not any(t.is_alive() for t, _ in srv._sessions.values()),
                       what="the session to end")
            time.sleep(0.3)  # the worker finishes its bookkeeping
            assert kept and kept[0]() is None, "the failed slice's k-space is still referenced"
    finally:
        gc.enable()
    assert text == "ERROR: internal error in the reconstruction (RuntimeError); the server log has the details"
    assert "alloc_cpu.cpp:127" in caplog.text


def test_errors_name_no_server_file_nor_its_contents(tmp_path, raw_one, caplog):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "secret_site.yaml").write_text("preset: cpu-test\n")
    (conf / "broken.yaml").write_text("database_password: hunter2\n")
    outside = tmp_path / "outside.yaml"
    outside.write_text("preset: cpu-test\nmethod: adjoint\n")
    (conf / "linked.yaml").symlink_to(outside)
    srv = make_server(tmp_path, config_dirs=[conf])
    with srv.running(), caplog.at_level(logging.INFO, logger="dainr"):
        answers = {}
        for name in ("nope", "broken", "linked"):
            with pytest.raises(ServerError) as info:
                replay(raw_one, "127.0.0.1", srv.address[1], config=name)
            answers[name] = str(info.value)
        assert len(replay(raw_one, "127.0.0.1", srv.address[1], config="secret_site").images) == 3
    for name, text in answers.items():
        assert str(tmp_path) not in text and "secret_site" not in text and "database_password" not in text, text
    assert "unknown config 'nope'" in answers["nope"] and "unknown config 'linked'" in answers["linked"]
    assert "the server's config 'broken' does not load: tell the server's operator" in answers["broken"]
    assert "database_password" in caplog.text and str(conf / "broken.yaml") not in answers["broken"]


# -- 7: --grace is a hard limit -------------------------------------------------------------------------------------

def test_shutdown_ends_within_grace_plus_cancel_grace_even_if_a_job_ignores_the_cancel(tmp_path, operator_dir,
                                                                                      raw_one):
    srv = make_server(tmp_path, config_dirs=[operator_dir], isolate=True, grace_s=0.5, cancel_grace_s=1.0)
    srv.bind()
    serving = threading.Thread(target=srv.serve_forever, daemon=True)
    serving.start()
    sock = connect(srv)
    send_request(sock, raw_one, config="stubborn")
    wait_until(lambda: srv.pool.running, what="the slice to start")
    process = srv.pool._workers[0].process
    srv.request_shutdown()
    serving.join(0.5 + 1.0 + 2.0 + 5.0)  # grace + cancel grace + the server's own 2 s, and a margin for a busy CI
    alive = serving.is_alive()
    reply = read_reply(sock)
    sock.close()
    assert not alive, "the shutdown outlived --grace + the cancel grace"
    assert not process.is_alive()
    assert "shutting down" in _error(reply)


# -- 9: a finished session frees its slot before the client sees CLOSE ----------------------------------------------

def test_the_slot_is_free_before_the_client_sees_close(tmp_path, raw_one):
    srv = make_server(tmp_path, max_jobs=1)
    kept = []
    with srv.running():
        for i in range(10):
            sock = connect(srv)  # each keeps its socket open after the reply: the slot must not wait for that
            kept.append(sock)
            send_request(sock, raw_one, text=ADJOINT)
            reply = read_reply(sock)
            assert [m for m, _ in reply] == [protocol.IMAGE] * 3 + [protocol.CLOSE], (i, reply)
        for _ in range(10):  # rapid connect-and-close clients (probes) never take a slot
            socket.create_connection(("127.0.0.1", srv.address[1])).close()
        assert len(replay(raw_one, "127.0.0.1", srv.address[1], config_text=ADJOINT).images) == 3
    for sock in kept:
        sock.close()


# -- 10: what a server never reads ---------------------------------------------------------------------------------

def test_an_image_from_a_client_is_refused_before_its_body(server, raw_one):
    from dainr.mrd import read_acquisitions

    header, _ = read_acquisitions(raw_one)
    head = ismrmrd.ImageHeader()
    head.data_type, head.channels, head.matrix_size[0], head.matrix_size[1], head.matrix_size[2] = \
        ismrmrd.DATATYPE_CXFLOAT, 1, 8192, 8192, 1  # 512 MiB of pixels that never come
    with connect(server) as sock:
        sock.sendall(protocol.frame_config_file("cpu-test") + protocol.frame_text(header, protocol.HEADER)
                     + protocol.frame_id(protocol.IMAGE) + bytes(head) + struct.pack("<Q", 0))
        assert "unexpected message id 1022 (IMAGE)" in _error(read_reply(sock))


# -- 11: the health probe checks that a worker can take a job -------------------------------------------------------

def test_health_query_answers_whether_a_worker_can_take_a_job(tmp_path, raw_one, monkeypatch):
    from dainr.server import health, workers
    from dainr.stream import exam

    release = threading.Event()

    def deaf(job, settings, progress=None, device=None):
        release.wait(30)  # an optimisation that never looks at its cancel
        raise workers.JobCancelled()

    srv = make_server(tmp_path, max_jobs=1, cancel_grace_s=0.2)
    with srv.running():
        port = srv.address[1]
        assert health.probe(port=port) == "ok"
        assert srv.jobs == 0  # a probe takes no slot
        monkeypatch.setattr(exam, "reconstruct_slice", deaf)
        sock = connect(srv)
        send_request(sock, raw_one, text=ADJOINT)
        wait_until(lambda: srv.pool.running, what="the slice to start")
        assert health.probe(port=port) == "ok"  # busy is healthy
        sock.close()
        wait_until(lambda: health.probe(port=port) != "ok", timeout=10, what="the health to change")
        assert "stuck in a cancelled reconstruction" in health.probe(port=port)
        assert health.main(["--port", str(port)]) == 1
        release.set()
        wait_until(lambda: health.probe(port=port) == "ok", what="the worker to be free")
        assert health.main(["--port", str(port)]) == 0


def test_a_worker_process_killed_while_idle_is_restarted(tmp_path):
    import signal

    from dainr.server import health

    srv = make_server(tmp_path, isolate=True)
    with srv.running():
        worker = srv.pool._workers[0]
        first = worker.process
        wait_until(lambda: first.is_alive(), what="the worker process")
        first.kill()
        wait_until(lambda: worker.process is not first and worker.process.is_alive(), what="a new worker process")
        assert health.probe(port=srv.address[1]) == "ok"
        assert first.exitcode == -signal.SIGKILL
