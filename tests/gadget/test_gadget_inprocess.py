"""The gadget's protocol handling in-process (socketpair and loopback TCP): errors, pass-through, vanished peers,
passive (``<connect>``) mode."""

from __future__ import annotations

import io
import re
import socket
import struct
import threading
import time

import ismrmrd
import numpy as np
import pytest
from gadgetron.external import writers
from gadgetron.external.connection import Connection

from gadget import dainr_gadget
from tests.gadget.compare import assert_same_images
from tests.gadget.harness import (TIMEOUT, configuration_node, exchange, passive_over_tcp, read_acquisitions,
                                  socketpair_run)

pytestmark = pytest.mark.timeout(120)

CONFIG = configuration_node(preset="cpu-test", method="adjoint", device="cpu")


def active(sock: socket.socket) -> None:
    """What ``python -m gadgetron`` does with the accepted socket."""
    with Connection(sock) as conn:
        dainr_gadget.recon(conn)


def test_same_images_in_process(raw_single):
    header, acqs = read_acquisitions(raw_single)
    first = socketpair_run(active, CONFIG, header, acqs)
    second = socketpair_run(active, CONFIG, header, acqs)
    assert first.errors == [] and first.ids[-1] == 4 and len(first.images) == 3
    assert_same_images(first.images, second.images)


def test_nan_sample_is_refused_with_error(raw_single):
    header, acqs = read_acquisitions(raw_single)
    bad = acqs[-2]
    data = bad.data.copy()
    data[0, 0] = np.nan
    bad.data[:] = data
    reply = socketpair_run(active, CONFIG, header, acqs)
    assert reply.ids == [8, 4]
    assert "NaN" in reply.errors[0] and reply.errors[0].startswith(dainr_gadget.ERROR_PREFIX)


def test_cartesian_header_is_refused_before_data(raw_single):
    header, acqs = read_acquisitions(raw_single)
    cartesian = header.replace(b"<trajectory>goldenangle</trajectory>", b"<trajectory>cartesian</trajectory>")
    assert cartesian != header
    reply = socketpair_run(active, CONFIG, cartesian, acqs)
    assert reply.ids == [8, 4] and "radial" in reply.errors[0]


def test_unknown_message_id_is_an_error_not_the_end(raw_single):
    header, acqs = read_acquisitions(raw_single)
    reply = socketpair_run(active, CONFIG, header, [acqs[0], struct.pack("<H", 1337) + b"\0" * 16])
    assert reply.ids == [8, 4] and "message id 1337" in reply.errors[0]


def test_images_and_waveforms_pass_through_byte_for_byte(raw_single):
    header, acqs = read_acquisitions(raw_single)
    image = ismrmrd.Image.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), transpose=False,
                                     image_series_index=7)
    image.attribute_string = "<ismrmrdMeta/>"
    wav = ismrmrd.Waveform.from_array(np.ones((1, 4), np.uint32))
    reply = socketpair_run(active, CONFIG, header, [image, *acqs[:4], wav, *acqs[4:]])
    assert reply.errors == []
    assert reply.ids[:2] == [1022, 1026] and reply.ids[-1] == 4
    echoed = reply.images[0]
    sent, got = io.BytesIO(), io.BytesIO()
    writers.write_image(sent, image)
    writers.write_image(got, echoed)
    assert sent.getvalue() == got.getvalue()
    assert len(reply.images) == 1 + 3


def test_stream_without_acquisitions_is_an_error(raw_single):
    header, _ = read_acquisitions(raw_single)
    reply = socketpair_run(active, CONFIG, header, [])
    assert reply.ids == [8, 4] and "no acquisitions" in reply.errors[0]


def test_vanished_gadgetron_stops_the_gadget_without_spinning(raw_single):
    header, acqs = read_acquisitions(raw_single)
    ours, theirs = socket.socketpair()
    worker = threading.Thread(target=active, args=(theirs,), daemon=True)
    worker.start()
    ours.sendall(struct.pack("<H", 2))
    writers.write_byte_string(ours.makefile("wb", buffering=0), CONFIG)
    ours.sendall(struct.pack("<H", 3))
    writers.write_byte_string(ours.makefile("wb", buffering=0), header)
    for acq in acqs[:5]:
        writers.write_acquisition(ours.makefile("wb", buffering=0), acq)
    t0 = time.process_time()
    ours.close()  # Gadgetron dies: no CLOSE, the socket just ends
    worker.join(30)
    assert not worker.is_alive(), "the gadget kept running after its peer closed"
    assert time.process_time() - t0 < 20


def test_passive_mode_reports_an_unparseable_header(raw_single):
    header, acqs = read_acquisitions(raw_single)
    broken = header.replace(b"<encoding>", b"<encoding><bogusElement>1</bogusElement>", 1)
    reply = socketpair_run(dainr_gadget.handle_socket, CONFIG, broken, acqs)
    assert reply.ids == [8, 4], reply
    assert "not a valid ISMRMRD header" in reply.errors[0]


def test_passive_mode_over_tcp_warms_up_at_start(raw_single, caplog):
    header, acqs = read_acquisitions(raw_single)
    with caplog.at_level("INFO", logger="dainr.gadget"):
        server, result, sock = passive_over_tcp("--device", "cpu")
        with sock:
            reply = exchange(sock, CONFIG, header, acqs)
        server.join(TIMEOUT)
    assert not server.is_alive() and result == [0]
    assert reply.errors == [] and len(reply.images) == 3 and reply.ids[-1] == 4
    # the real warm-up (dainr.stream.startup) ran, and ended before the reconstruction
    done = re.search(r"warm-up done in [\d.]+ s: import torch [\d.]+ s, import engine [\d.]+ s", caplog.text)
    assert done, caplog.text
    assert done.start() < caplog.text.index("sent 3 images")


def _passive(idle: float, deadline: float):
    return lambda sock: dainr_gadget.handle_socket(sock, idle_timeout_s=idle, deadline_s=deadline)


def test_passive_mode_drops_a_peer_silent_after_its_header(raw_single, caplog):
    """Passive mode serves one connection at a time: a peer that goes quiet must not block the next one for long
    (issue 19 item 4)."""
    header, _ = read_acquisitions(raw_single)
    with caplog.at_level("WARNING", logger="dainr"):
        reply = socketpair_run(_passive(0.5, 30), CONFIG, header, [], close=False)
    assert reply.ids == [8, 4], reply
    assert "the peer sent nothing for 0.5 s" in reply.errors[0]
    assert "dropped: the peer sent nothing for 0.5 s" in caplog.text


def test_passive_mode_drops_a_peer_that_drips_bytes_at_the_deadline(raw_single):
    header, acqs = read_acquisitions(raw_single)
    frame = io.BytesIO()
    writers.write_acquisition(frame, acqs[3])
    ours, theirs = socket.socketpair()
    worker = threading.Thread(target=_passive(1.0, 1.5), args=(theirs,), daemon=True)
    worker.start()
    ours.sendall(struct.pack("<H", 2))
    writers.write_byte_string(ours.makefile("wb", buffering=0), CONFIG)
    ours.sendall(struct.pack("<H", 3))
    writers.write_byte_string(ours.makefile("wb", buffering=0), header)
    for i in range(40):  # a byte every 0.2 s: never 1 s of silence
        if not worker.is_alive():
            break
        try:
            ours.sendall(frame.getvalue()[i:i + 1])
        except OSError:
            break
        time.sleep(0.2)
    worker.join(10)
    assert not worker.is_alive(), "the gadget kept waiting for the dripping peer"
    ours.settimeout(5)
    data = b""
    while chunk := ours.recv(1 << 16):
        data += chunk
    ours.close()
    assert struct.unpack("<H", data[:2])[0] == 8 and b"the stream did not end within 1.5 s" in data


def test_passive_mode_command_line_takes_the_time_outs(raw_single):
    """``python -m gadget.dainr_gadget --timeout S --max-time S``: an idle client is dropped, the gadget goes on."""
    server, result, sock = passive_over_tcp("--timeout", "0.5", "--max-time", "20", "--no-warm-up")
    header, _ = read_acquisitions(raw_single)
    with sock:
        reply = exchange(sock, CONFIG, header, [], close=False)
    server.join(10)
    assert reply.ids == [8, 4] and "sent nothing for 0.5 s" in reply.errors[0]
    assert result == [1]
