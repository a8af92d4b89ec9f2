"""The MRD wire format's reader: memory and time it may spend on what a peer sends (issue 19 items 4 and 10)."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc

import ismrmrd
import numpy as np
import pytest

from dainr.stream import protocol

pytestmark = pytest.mark.timeout(60)


def _pair(payload: bytes = b"", drip: float | None = None):
    """A socket pair whose far end sends ``payload`` (at once, or a byte every ``drip`` seconds) from a thread."""
    a, b = socket.socketpair()

    def send():
        try:
            if drip is None:
                b.sendall(payload)
            else:
                for i in range(len(payload)):
                    b.sendall(payload[i:i + 1])
                    time.sleep(drip)
        except OSError:
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return a, b, thread


def test_an_acquisition_is_read_into_its_own_arrays_without_copies():
    """32 MiB of samples cost about 32 MiB to receive, not a multiple (the old reader peaked near 4x)."""
    channels, samples = 128, 1 << 15
    head = ismrmrd.AcquisitionHeader()
    head.number_of_samples, head.active_channels, head.available_channels = samples, channels, channels
    head.trajectory_dimensions, head.scan_counter = 2, 42
    acq = ismrmrd.Acquisition(head, np.full((channels, samples), 1 + 2j, np.complex64),
                              np.full((samples, 2), 0.25, np.float32))
    frame = protocol.frame_item(acq)
    size = channels * samples * 8
    a, b, thread = _pair(frame)
    reader = protocol.MessageReader(a, protocol.Limits(idle_timeout_s=10))
    tracemalloc.start()
    try:
        msg = reader.read_message(frozenset({protocol.ACQUISITION}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        a.close()
        b.close()
    got = msg.value
    assert np.array_equal(got.data, acq.data) and np.array_equal(got.traj, acq.traj)
    assert bytes(got.getHead()) == bytes(acq.getHead())
    assert peak < 1.2 * size, f"{peak / size:.2f} x the samples allocated to receive them"


def test_a_peer_that_drips_bytes_is_cut_off_at_the_stream_deadline():
    """One byte every 0.1 s never trips a 1 s idle time-out; the 0.6 s deadline of the whole stream does."""
    a, b, thread = _pair(protocol.frame_text("x" * 100, protocol.HEADER), drip=0.1)
    reader = protocol.MessageReader(a, protocol.Limits(idle_timeout_s=1.0, stream_timeout_s=0.6))
    with pytest.raises(protocol.TimedOut, match="did not finish its stream within 0.6 s") as info:
        reader.read_message()
    assert not info.value.idle
    a.close()
    b.close()


def test_silence_is_an_idle_time_out():
    a, b = socket.socketpair()
    reader = protocol.MessageReader(a, protocol.Limits(idle_timeout_s=0.3, stream_timeout_s=None))
    with pytest.raises(protocol.TimedOut, match="sent nothing for 0.3 s") as info:
        reader.read_message()
    assert info.value.idle
    a.close()
    b.close()


def test_a_huge_waveform_or_an_image_is_refused_before_its_body_arrives():
    head = ismrmrd.WaveformHeader()
    head.channels, head.number_of_samples = 1024, 65535  # 256 MiB declared
    a, b = socket.socketpair()
    b.sendall(protocol.frame_id(protocol.WAVEFORM) + bytes(head))  # the body never comes
    reader = protocol.MessageReader(a, protocol.Limits(idle_timeout_s=5))
    with pytest.raises(protocol.ProtocolError, match="a waveform declares 67107840 samples"):
        reader.read_message()
    b.sendall(protocol.frame_id(protocol.IMAGE))
    with pytest.raises(protocol.ProtocolError, match="unexpected message id 1022"):
        reader.read_message(frozenset({protocol.ACQUISITION, protocol.WAVEFORM, protocol.CLOSE}))
    a.close()
    b.close()


def test_query_and_response_as_gadgetron_frames_them():
    a, b = socket.socketpair()
    b.sendall(protocol.frame_query("dainr::health", correlation=7) + protocol.frame_response(7, "ok"))
    reader = protocol.MessageReader(a, protocol.Limits(idle_timeout_s=5))
    assert reader.read_message().value == (7, "dainr::health")
    assert reader.read_message().value == (7, "ok")
    a.close()
    b.close()
