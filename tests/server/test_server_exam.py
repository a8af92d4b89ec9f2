"""A connection's slices run together, as ``dainr recon`` runs a file's (issue 16 goal 1): several in flight at once,
each with the images it gets alone, in stream order; a failed slice ends the stream with ERROR after the slices
before it."""

from __future__ import annotations

import threading

import ismrmrd
import pytest

import dainr.stream.exam
from dainr.errors import InputError
from dainr.mrd import read_acquisitions
from dainr.server.workers import ExamOptions
from dainr.stream import protocol
from tests.conftest import simulate_file
from tests.gadget.compare import DAINR_TOLERANCE, assert_same_images, cli_images
from tests.server.conftest import TINY, connect, make_server, read_reply

pytestmark = pytest.mark.timeout(180)

SLICES = 3


@pytest.fixture(scope="module")
def raw_three(tmp_path_factory):
    return simulate_file(tmp_path_factory.mktemp("srv") / "three.h5", "--slices", str(SLICES), seed=3, **TINY)[0]


def _stream(srv, raw) -> list[tuple[int, object]]:
    """Send ``raw`` without ACQ_LAST_IN_SLICE flags (every slice completes at CLOSE, so all wait together, as a
    file's slices do); the server's reply."""
    header, acqs = read_acquisitions(raw)
    last = 1 << (ismrmrd.ACQ_LAST_IN_SLICE - 1)
    for a in acqs:
        h = a.getHead()
        h.flags &= ~last
        a.setHead(h)
    with connect(srv) as sock:
        sock.sendall(protocol.frame_config_file("default") + protocol.frame_text(header, protocol.HEADER)
                     + b"".join(protocol.frame_item(a) for a in acqs) + protocol.frame_close())
        return read_reply(sock)


def _images(reply) -> list:
    return [value for mid, value in reply if mid == protocol.IMAGE]


def _serve(tmp_path, raw, concurrent: int, **kw):
    srv = make_server(tmp_path, exam=ExamOptions(concurrent_slices=concurrent), **kw)
    with srv.running():
        return _stream(srv, raw)


def test_slices_in_flight_together_give_the_images_of_one_at_a_time(tmp_path, raw_three, monkeypatch):
    one_at_a_time = _images(_serve(tmp_path, raw_three, 1))
    real = dainr.stream.exam.reconstruct_slice
    together = threading.Barrier(SLICES)
    met: list[bool] = []

    def in_flight(job, *args, **kwargs):
        try:
            together.wait(timeout=20)  # every slice has started before any goes on
            met.append(True)
        except threading.BrokenBarrierError:
            met.append(False)
        return real(job, *args, **kwargs)

    monkeypatch.setattr(dainr.stream.exam, "reconstruct_slice", in_flight)
    reply = _serve(tmp_path, raw_three, SLICES)
    assert met == [True] * SLICES, "the stream's slices were not in flight together"
    images = _images(reply)
    assert [(im.slice, im.phase) for im in images] == [(s, f) for s in range(SLICES) for f in range(TINY["frames"])]
    assert reply[-1][0] == protocol.CLOSE
    assert_same_images(images, one_at_a_time)
    assert_same_images(images, cli_images(raw_three, tmp_path / "cli.h5", "--preset", "cpu-test"), DAINR_TOLERANCE)


def test_a_failed_slice_ends_the_stream_with_error(tmp_path, raw_three, monkeypatch):
    """As in ``dainr recon``: the failure stops the slices still running (those before it included: slice 0 here
    is stopped at its next progress report), nothing after it is sent, and the client gets ERROR then CLOSE."""
    real = dainr.stream.exam.reconstruct_slice

    def fail_second(job, *args, **kwargs):
        if job.cine.slice_index == 1:
            raise InputError("slice 1 is broken")
        return real(job, *args, **kwargs)

    monkeypatch.setattr(dainr.stream.exam, "reconstruct_slice", fail_second)
    reply = _serve(tmp_path, raw_three, SLICES, isolate=False)
    assert [mid for mid, _ in reply[-2:]] == [protocol.TEXT, protocol.CLOSE]
    assert reply[-2][1].startswith("ERROR:") and "slice 1 is broken" in reply[-2][1]
    assert {im.slice for im in _images(reply)} <= {0}
