"""Soak (issue 19, "done when"): a few hundred mixed good and bad sessions against ``dainr serve`` (a separate process,
its worker a child process), some clients vanishing mid-job; then a normal replay gets the CLI's images bit for bit,
the server's memory (its process and its worker's) is back within 10% of its baseline, no job slot is held, and
SIGTERM ends it within the hard limit.

``DAINR_SOAK_SESSIONS`` sets the number of sessions (default 200, well under a minute on two idle cores); e.g. 3000 for a long
run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dainr.mrd import read_acquisitions
from dainr.server import health
from dainr.server.replay import ServerError, replay
from dainr.stream import protocol
from tests.gadget.compare import assert_same_images
from tests.server.conftest import ADJOINT, read_reply, u16, wait_until

REPO = Path(__file__).resolve().parents[2]
SESSIONS = int(os.environ.get("DAINR_SOAK_SESSIONS", "200"))
MAX_JOBS = 3
GRACE = 5

pytestmark = pytest.mark.timeout(300 + SESSIONS)


def _rss(pid: int) -> int:
    """Resident memory of ``pid`` and its children, bytes."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    total = 0
    for p in [pid, *kids]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) * 1024 if match else 0
    return total


@pytest.fixture
def soak_server(tmp_path):
    operator = tmp_path / "operator"
    operator.mkdir()
    (operator / "long.yaml").write_text("preset: cpu-test\ndainr:\n  steps: 100000000\n  log_every: 1\n")
    (operator / "stubborn.yaml").write_text("preset: cpu-test\ndainr:\n  steps: 100000000\n  log_every: 100000000\n")
    log = tmp_path / "serve.log"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "dainr", "serve", "--port", "0", "--device", "cpu",
                                 "--max-jobs", str(MAX_JOBS), "--default-config", "cpu-test", "--config-dir",
                                 str(operator), "--timeout", "3", "--stream-timeout", "20", "--max-time", "60",
                                 "--grace", str(GRACE)], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    try:
        wait_until(lambda: re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text()) or proc.poll() is not None,
                   what="the server to listen")
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text()).group(1))
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class _Client:
    """The sessions of the soak: each returns its kind; an unexpected reply fails the test."""

    def __init__(self, port: int, raw: Path, reference: list) -> None:
        self.port = port
        self.raw = raw
        self.reference = reference
        header, acqs = read_acquisitions(raw)
        self.header = protocol.frame_text(header, protocol.HEADER)
        self.acqs = [protocol.frame_item(a) for a in acqs]
        bad = acqs[-1]
        bad.data[0, 0] = float("nan")
        self.nan = protocol.frame_item(bad)

    def _exchange(self, payload: bytes, expect: str) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            try:
                sock.sendall(payload)
            except OSError:
                pass  # refused early: the reply says why
            reply = read_reply(sock)
        texts = [v for m, v in reply if m == protocol.TEXT]
        assert len(texts) == 1 and reply[-1][0] == protocol.CLOSE, reply
        assert expect in texts[0] or "server busy" in texts[0], texts[0]

    def good(self, rng) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                result = replay(self.raw, "127.0.0.1", self.port, config_text=ADJOINT, timeout=60)
            except ServerError as exc:
                assert "server busy" in str(exc), exc
                time.sleep(rng.uniform(0.02, 0.2))
                continue
            assert_same_images(result.images, self.reference)
            return "good"
        raise AssertionError("always busy")

    def garbage(self, rng) -> str:
        self._exchange(u16(rng.choice([9, 999, 4242, 65535])) + bytes(rng.getrandbits(8) for _ in range(64)),
                       "unknown message id")
        return "garbage"

    def unknown_config(self, rng) -> str:
        self._exchange(protocol.frame_config_file(f"nope{rng.randrange(1000)}") + self.header, "unknown config")
        return "unknown config"

    def refused_data(self, rng) -> str:
        body = b"".join(self.acqs[:-1]) + self.nan + protocol.frame_close()
        self._exchange(protocol.frame_text(ADJOINT, protocol.CONFIG_TEXT) + self.header + body, "NaN or Inf")
        return "refused data"

    def client_key(self, rng) -> str:
        text = rng.choice(["dainr.grid.log2_table_size: 28\n", "dainr.features.weights: /etc/passwd\n",
                           "device: cuda\n"])
        self._exchange(protocol.frame_text(text, protocol.CONFIG_TEXT) + self.header, "cannot be set by a client")
        return "client key"

    def image(self, rng) -> str:
        self._exchange(protocol.frame_config_file("cpu-test") + self.header + u16(protocol.IMAGE) + b"\0" * 64,
                       "unexpected message id 1022")
        return "image"

    def truncated(self, rng) -> str:
        frame = self.acqs[rng.randrange(len(self.acqs))]
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            sock.sendall(protocol.frame_config_file("cpu-test") + self.header + frame[: rng.randrange(1, len(frame))])
            sock.shutdown(socket.SHUT_WR)
            texts = [v for m, v in read_reply(sock) if m == protocol.TEXT]
        assert len(texts) == 1 and ("in the middle of" in texts[0] or "server busy" in texts[0]), texts
        return "truncated"

    def vanish_mid_job(self, rng) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            sock.sendall(protocol.frame_config_file("long") + self.header + b"".join(self.acqs)
                         + protocol.frame_close())
            time.sleep(rng.uniform(0.0, 0.5))
        return "vanish mid-job"

    def vanish_mid_stream(self, rng) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            sock.sendall(protocol.frame_config_file("cpu-test") + self.header
                         + b"".join(self.acqs[: rng.randrange(len(self.acqs))]))
        return "vanish mid-stream"

    def probe(self, rng) -> str:
        socket.create_connection(("127.0.0.1", self.port), timeout=60).close()
        return "connect-and-close"

    def health(self, rng) -> str:
        assert health.probe(port=self.port, timeout=30).startswith(("ok", "unhealthy"))
        return "health"


def test_soak_mixed_sessions_then_bit_identical_images_memory_back_and_no_slot_held(soak_server, raw_one,
                                                                                    ref_adjoint, monkeypatch):
    from dainr.server import replay as replay_module

    proc, port, log = soak_server
    # The file is read once: h5py must not read it from several client threads at once (a crash of the client).
    stored = read_acquisitions(raw_one)
    monkeypatch.setattr(replay_module, "read_acquisitions", lambda path, group="dataset": stored)
    reference = ref_adjoint[raw_one]
    client = _Client(port, raw_one, reference)
    rng = random.Random(19)
    for _ in range(3):  # warm up: the worker process has imported and run everything once
        client.good(rng)
    time.sleep(0.5)
    baseline = _rss(proc.pid)

    kinds = ([client.good] * 3 + [client.garbage, client.unknown_config, client.refused_data, client.client_key,
                                  client.image, client.truncated, client.probe, client.health]
             + [client.vanish_mid_job] * 2 + [client.vanish_mid_stream])
    plan = [rng.choice(kinds) for _ in range(SESSIONS - 1)]
    seeds = [rng.randrange(1 << 30) for _ in plan]
    # First a job that never reports progress, its client gone once it runs: the server must kill its worker
    # process (after 5 s) while the other sessions queue behind it.
    done = Counter([_stubborn_vanishes(port, client)])
    with ThreadPoolExecutor(max_workers=6) as pool:
        done.update(pool.map(lambda p: p[0](random.Random(p[1])), zip(plan, seeds)))
    assert sum(done.values()) == SESSIONS and done["good"] > 0 and done["vanish mid-job"] > 1, done

    # Afterwards: the worker (restarted after the kill) can take a job, and every job slot is free.
    wait_until(lambda: health.probe(port=port, timeout=30) == "ok", timeout=120, what="a healthy worker")
    holders = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(MAX_JOBS)]
    for h in holders:
        h.sendall(protocol.frame_config_file("cpu-test"))
    time.sleep(0.5)
    for h in holders:
        h.setblocking(False)
        with pytest.raises(BlockingIOError):
            h.recv(1)  # no "server busy": the slot was free
        h.close()
    assert "did not stop within 5.0 s of being cancelled" in log.read_text()

    for _ in range(3):  # a normal replay gets the CLI's images (the holders' slots may take a moment to free)
        client.good(rng)
    time.sleep(0.5)
    after = _rss(proc.pid)
    assert after <= 1.10 * baseline, f"RSS {after / 2**20:.0f} MiB after, {baseline / 2**20:.0f} MiB before"

    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(GRACE + 7 + 10) == 0
    assert time.monotonic() - t0 < GRACE + 7 + 10
    print(f"soak: {dict(done)}; RSS {baseline / 2**20:.0f} -> {after / 2**20:.0f} MiB")


def _stubborn_vanishes(port: int, client: _Client) -> str:
    """A job whose optimisation never reports progress, on an idle server; its client leaves once it runs."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(protocol.frame_config_file("stubborn") + client.header + b"".join(client.acqs)
                     + protocol.frame_close())
        time.sleep(1.5)
    return "vanish mid-job"
