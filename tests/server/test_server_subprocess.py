"""``dainr serve`` as a separate process with two isolated CPU workers, driven by ``dainr replay``; SIGTERM at the end.

The tests run in file order: the last one shuts the server down.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dainr.cli import main
from dainr.mrd import read_acquisitions, read_images
from dainr.server.replay import ServerError, replay
from dainr.stream import protocol
from tests.gadget.compare import DAINR_TOLERANCE, assert_same_images, cli_images
from tests.server.conftest import ADJOINT, TIMEOUT, read_reply, wait_until

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(process, port, log path) of ``dainr serve --port 0 --device cpu --workers 2``."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "dainr", "serve", "--port", "0", "--device", "cpu",
                                 "--workers", "2", "--default-config", "cpu-test", "--grace", "60",
                                 "--timeout", "60"], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    try:
        wait_until(lambda: re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text()) or proc.poll() is not None,
                   what="the server to listen")
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text())
        assert match, log.read_text()
        yield proc, int(match.group(1)), log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_replay_cli_multi_slice_matches_recon(served, tmp_path):
    raw = tmp_path / "raw.h5"
    assert main(["simulate", "--matrix", "16", "--frames", "3", "--coils", "2", "--spokes", "5", "--slices", "2",
                 "-o", str(raw), "-q"]) == 0
    _, port, log = served
    out = tmp_path / "images.h5"
    assert main(["replay", str(raw), "--port", str(port), "--config", "cpu-test", "-o", str(out), "--group", "run",
                 "-q"]) == 0, log.read_text()
    # DA-INR in two isolated worker processes: the CLI's pixels (see DAINR_TOLERANCE).
    assert_same_images(read_images(out, "run")[1], cli_images(raw, tmp_path / "cli.h5", "--preset", "cpu-test"),
                       DAINR_TOLERANCE)


def test_four_concurrent_clients(served, tmp_path):
    _, port, _ = served
    raws = []
    for i in range(2):
        raw = tmp_path / f"raw{i}.h5"
        assert main(["simulate", "--matrix", "16", "--frames", "3", "--coils", "2", "--spokes", "5", "--slices",
                     str(i + 1), "--seed", str(i), "-o", str(raw), "-q"]) == 0
        raws.append(raw)
    refs = [cli_images(r, tmp_path / f"cli{i}.h5", "--preset", "cpu-test", "--method", "adjoint")
            for i, r in enumerate(raws)]
    results: dict[int, object] = {}

    def client(i):
        try:
            results[i] = replay(raws[i % 2], "127.0.0.1", port, config_text=ADJOINT, timeout=TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - checked below
            results[i] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    for i in range(4):
        assert not isinstance(results[i], Exception), results[i]
        assert_same_images(results[i].images, refs[i % 2])


def test_health_probe_command_as_docker_runs_it(served):
    """The standalone image's HEALTHCHECK: ``python -m dainr.server.health --port P`` exits 0 and prints ok."""
    _, port, _ = served
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "dainr.server.health", "--port", str(port)], capture_output=True,
                         text=True, timeout=60, env=env)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr


def test_sigterm_lets_the_running_connection_finish_then_exits(served, tmp_path):
    proc, port, log = served
    raw = tmp_path / "raw.h5"
    assert main(["simulate", "--matrix", "16", "--frames", "3", "--coils", "2", "--spokes", "5", "-o", str(raw),
                 "-q"]) == 0
    header, acqs = read_acquisitions(raw)
    started = log.read_text().count("starting on")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        # Everything but CLOSE: the connection is in progress when SIGTERM arrives, however fast the recon is.
        sock.sendall(protocol.frame_text(ADJOINT, protocol.CONFIG_TEXT) + protocol.frame_text(header, protocol.HEADER)
                     + b"".join(protocol.frame_item(a) for a in acqs))
        wait_until(lambda: log.read_text().count("starting on") > started, what="the slice to start")
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "shutdown requested" in log.read_text(), what="the server to see SIGTERM")
        sock.sendall(protocol.frame_close())
        reply = read_reply(sock)
    assert [m for m, _ in reply] == [protocol.IMAGE] * 3 + [protocol.CLOSE]
    assert proc.wait(TIMEOUT) == 0
    text = log.read_text()
    assert "shutdown requested; 1 connection(s) in progress" in text
    assert "1 connection(s) finished during shutdown, 0 cancelled" in text
    with pytest.raises(ServerError, match="cannot connect"):
        replay(raw, "127.0.0.1", port, config_text=ADJOINT, timeout=5)
