"""The passive gadget (``python -m gadget.dainr_gadget --port N``, for ``<connect>`` chains) warms up at start
(issue 16 goal 3): it listens at once, a connection that arrives during the warm-up is accepted and read, and its
first reconstruction waits for the warm-up; ``--no-warm-up`` skips it."""

from __future__ import annotations

import threading
import time

import pytest

from dainr.stream import startup
from tests.gadget.harness import TIMEOUT, configuration_node, exchange, passive_over_tcp, read_acquisitions

pytestmark = pytest.mark.timeout(120)

CONFIG = configuration_node(preset="cpu-test", method="adjoint", device="cpu")


class SlowWarmUp:
    """Stands in for :func:`dainr.stream.startup.warm_up`: records its device spec, then blocks until released."""

    def __init__(self) -> None:
        self.calls: list[str | None] = []
        self.release = threading.Event()

    def __call__(self, devices, report):
        self.calls.append(devices)
        self.release.wait(TIMEOUT)
        report.phases.append(("import torch", 100.0, 101.5))
        return report


def _wait_for(caplog, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in caplog.text:
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{caplog.text}"
        time.sleep(0.02)


def test_a_connection_during_the_warm_up_is_served_once_it_ends(raw_single, monkeypatch, caplog):
    slow = SlowWarmUp()
    monkeypatch.setattr(startup, "warm_up", slow)
    header, acqs = read_acquisitions(raw_single)
    replies: list = []
    with caplog.at_level("INFO", logger="dainr.gadget"):
        server, result, sock = passive_over_tcp("--device", "cuda:1")  # listening while the warm-up runs
        with sock:
            client = threading.Thread(target=lambda: replies.append(exchange(sock, CONFIG, header, acqs)),
                                      daemon=True)
            client.start()
            _wait_for(caplog, "slice 0: waiting for the warm-up")  # accepted, and the whole slice read
            assert replies == [] and "warm-up done" not in caplog.text
            slow.release.set()
            client.join(TIMEOUT)
        server.join(TIMEOUT)
    assert slow.calls == ["cuda:1"]
    assert not server.is_alive() and result == [0]
    (reply,) = replies
    assert reply.errors == [] and len(reply.images) == 3 and reply.ids[-1] == 4
    log = caplog.text
    assert "warm-up done in 1.50 s: import torch 1.50 s" in log
    assert log.index("waiting for the warm-up") < log.index("warm-up done") < log.index("sent 3 images")


def test_no_warm_up_option(raw_single, monkeypatch, caplog):
    slow = SlowWarmUp()
    monkeypatch.setattr(startup, "warm_up", slow)
    header, acqs = read_acquisitions(raw_single)
    with caplog.at_level("INFO", logger="dainr.gadget"):
        server, result, sock = passive_over_tcp("--no-warm-up")
        with sock:
            reply = exchange(sock, CONFIG, header, acqs)
        server.join(TIMEOUT)
    assert slow.calls == [] and "warm" not in caplog.text
    assert result == [0] and reply.errors == [] and len(reply.images) == 3
