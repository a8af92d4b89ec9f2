"""Fixtures of the server tests: tiny raw files, the CLI's images for them, an in-process server on 127.0.0.1."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from dainr.stream.protocol import Limits
from dainr.server.listener import ReconServer, ServerOptions
from tests.conftest import simulate_file
from tests.gadget.compare import cli_images

TINY = dict(matrix=16, frames=3, coils=2, spokes=5)
#: CONFIG_TEXT selecting what ``--preset cpu-test --method adjoint`` selects (fast on CPU).
ADJOINT = "preset: cpu-test\nmethod: adjoint\n"
TIMEOUT = 60.0


@pytest.fixture(scope="session")
def raw_one(tmp_path_factory) -> Path:
    return simulate_file(tmp_path_factory.mktemp("srv") / "one.h5", **TINY)[0]


@pytest.fixture(scope="session")
def raw_two(tmp_path_factory) -> Path:
    return simulate_file(tmp_path_factory.mktemp("srv") / "two.h5", "--slices", "2", "--no-traj", seed=2, **TINY)[0]


@pytest.fixture(scope="session")
def ref_adjoint(tmp_path_factory, raw_one, raw_two) -> dict:
    """The CLI's adjoint images of both files."""
    d = tmp_path_factory.mktemp("ref")
    return {p: cli_images(p, d / f"{p.stem}.h5", "--preset", "cpu-test", "--method", "adjoint")
            for p in (raw_one, raw_two)}


def make_server(tmp_path: Path, **kw) -> ReconServer:
    """A server on a free port of 127.0.0.1; its worker is a thread unless ``isolate=True`` (faster to start)."""
    opts = dict(host="127.0.0.1", port=0, devices=["cpu"], isolate=False, max_jobs=8, default_config="cpu-test",
                config_dirs=[], limits=Limits(idle_timeout_s=20.0), grace_s=10.0)
    opts.update(kw)
    return ReconServer(ServerOptions(**opts))


@pytest.fixture
def operator_dir(tmp_path) -> Path:
    """An operator's --config-dir: ``long`` (an optimisation that never ends on its own, reporting progress at every
    step) and ``stubborn`` (the same, never reporting progress)."""
    d = tmp_path / "operator"
    d.mkdir()
    (d / "long.yaml").write_text("preset: cpu-test\ndainr:\n  steps: 100000000\n  log_every: 1\n")
    (d / "stubborn.yaml").write_text("preset: cpu-test\ndainr:\n  steps: 100000000\n  log_every: 100000000\n")
    return d


def send_request(sock: socket.socket, raw: Path, config: str | None = None, text: str | None = None,
                 close: bool = True) -> None:
    """Send a whole request by hand: CONFIG_FILE ``config`` (or CONFIG_TEXT ``text``), the header, every
    acquisition of ``raw`` and (``close``) CLOSE."""
    from dainr.mrd import read_acquisitions
    from dainr.stream import protocol

    header, acqs = read_acquisitions(raw)
    first = protocol.frame_text(text, protocol.CONFIG_TEXT) if text is not None else \
        protocol.frame_config_file(config or "default")
    sock.sendall(first + protocol.frame_text(header, protocol.HEADER) + b"".join(protocol.frame_item(a) for a in acqs)
                 + (protocol.frame_close() if close else b""))


@pytest.fixture
def server(tmp_path):
    """An in-process server on 127.0.0.1 (free port), CPU worker, default config cpu-test."""
    srv = make_server(tmp_path)
    with srv.running():
        yield srv


def connect(srv: ReconServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.address[1]), timeout=TIMEOUT)
    return sock


def read_reply(sock: socket.socket) -> list[tuple[int, object]]:
    """Every message the server sends until CLOSE or EOF, as (id, value)."""
    from dainr.stream.protocol import MessageReader, PeerClosed

    reader = MessageReader(sock, Limits(idle_timeout_s=TIMEOUT), peer="the server")
    out = []
    while True:
        try:
            msg = reader.read_message()
        except PeerClosed:
            return out
        out.append((msg.id, msg.value))
        if msg.id == 4:
            return out


def wait_until(predicate, timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def u16(mid: int) -> bytes:
    return struct.pack("<H", mid)
