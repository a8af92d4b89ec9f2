"""A Gadgetron that goes away (or stays silent) while gadgetron-python is still reading CONFIG and HEADER: the child
started as ``python -m gadgetron`` exits instead of spinning (``gadget/startup_guard.py``), and the passive gadget
gives up on a silent peer."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from gadgetron.external import constants, writers

from gadget import dainr_gadget
from gadget.channel import PeerGone, SafeSocket, open_connection
from tests.gadget.harness import REPO, configuration_node

pytestmark = pytest.mark.timeout(120)

_ID = struct.Struct("<H")


class _Stream:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data) -> None:
        self.sock.sendall(data)


def _config_only(sock: socket.socket) -> None:
    stream = _Stream(sock)
    stream.write(_ID.pack(constants.GADGET_MESSAGE_CONFIG))
    writers.write_byte_string(stream, configuration_node(preset="cpu-test"))


@pytest.mark.parametrize("cut", ["after-config", "inside-header"])
def test_child_exits_when_gadgetron_hangs_up_during_connection_setup(tmp_path, cut):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(60)
    env = dict(os.environ, PYTHONPATH=str(REPO), GADGETRON_EXTERNAL_LOG_LEVEL="INFO")
    log_path = tmp_path / "child.log"
    with server, open(log_path, "wb") as log:
        # exactly what Gadgetron's Python.cpp runs
        child = subprocess.Popen([sys.executable, "-m", "gadgetron", str(server.getsockname()[1]),
                                  "gadget.dainr_gadget", "recon"], stdout=log, stderr=subprocess.STDOUT, env=env,
                                 cwd=str(REPO))
        try:
            sock, _ = server.accept()
            with sock:
                _config_only(sock)
                if cut == "inside-header":
                    sock.sendall(_ID.pack(constants.GADGET_MESSAGE_HEADER) + struct.pack("<I", 1000) + b"<ismr")
            rc = child.wait(30)  # spun forever before the guard
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    text = log_path.read_text(errors="replace")
    assert rc == 1, text
    assert "Gadgetron closed the connection before the module started; exiting" in text
    assert "Traceback" not in text


def test_passive_gadget_gives_up_on_a_silent_peer():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        _config_only(ours)  # CONFIG, then nothing
        t0 = time.monotonic()
        with pytest.raises(PeerGone, match="no CONFIG and HEADER within 0.3 s"):
            open_connection(SafeSocket(theirs, setup_timeout_s=0.3))
        assert time.monotonic() - t0 < 10


def test_passive_listener_serves_the_next_connection_after_a_silent_one(monkeypatch):
    monkeypatch.setattr(dainr_gadget, "SETUP_TIMEOUT_S", 0.3)
    results: list[bool] = []
    ours, theirs = socket.socketpair()
    worker = threading.Thread(target=lambda: results.append(dainr_gadget.handle_socket(theirs)), daemon=True)
    with ours:
        _config_only(ours)
        worker.start()
        worker.join(20)
        assert not worker.is_alive() and results == [False]
        # the gadget closed its side (with CLOSE, which nobody will read): the listener is free again
        ours.settimeout(5)
        assert ours.recv(2) == _ID.pack(constants.GADGET_MESSAGE_CLOSE)
