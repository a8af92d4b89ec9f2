"""A stand-in for Gadgetron's side of an ``<external>`` Python step, built on gadgetron-python's readers and writers.

:class:`FakeGadgetron` listens on 127.0.0.1, spawns ``python -m gadgetron PORT MODULE TARGET`` exactly as Gadgetron's
``Python.cpp`` does, sends CONFIG (the ``<configuration>`` of the external step) and HEADER, streams messages,
sends CLOSE and reads everything that comes back until CLOSE. :func:`socketpair_run` does the same in-process, and
:func:`passive_over_tcp` starts the passive gadget (``<connect>`` chains) in a thread.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import ismrmrd
import numpy as np
from gadgetron.external import constants, readers, writers
from gadgetron.types.recon_data import ReconBit, ReconBuffer, ReconData, SamplingDescription, write_recon_data

REPO = Path(__file__).resolve().parents[2]
XML_DIR = REPO / "xml_configs"
TIMEOUT = 90.0

_ID = struct.Struct("<H")
_U64 = struct.Struct("<Q")


@dataclass
class Reply:
    """What came back from the gadget.

    Attributes
    ----------
    ids: message ids in arrival order (CLOSE included).
    images: the 1022 images.
    errors: texts of ERROR (8) messages.
    others: ``(id, item)`` of other messages.
    closed: True when CLOSE arrived.
    log: the gadget's stderr (subprocess runs).
    image_times: ``time.perf_counter()`` when each image arrived.
    started: ``time.perf_counter()`` when the step started (:meth:`FakeGadgetron.run`: just before the spawn).
    """

    ids: list[int] = field(default_factory=list)
    images: list[ismrmrd.Image] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    others: list[tuple[int, Any]] = field(default_factory=list)
    closed: bool = False
    log: str = ""
    returncode: int | None = None
    image_times: list[float] = field(default_factory=list)
    started: float | None = None


class _Stream:
    """read/write over a socket; EOF raises (never loops)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"peer closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def write(self, data) -> None:
        self.sock.sendall(data)


def configuration_node(xml_name: str = "dainr_raw.xml", **properties: str) -> bytes:
    """The ``<configuration>`` of the first ``<external>`` step of one of our chains, with properties set."""
    root = ET.parse(XML_DIR / xml_name).getroot()
    conf = root.find(".//external/configuration")
    assert conf is not None
    for name, value in properties.items():
        name = name.replace("__", ".")
        node = next((p for p in conf.findall("property") if p.get("name") == name), None)
        if node is None:
            node = ET.SubElement(conf, "property", name=name, value=str(value))
        node.set("value", str(value))
    return ET.tostring(conf, encoding="utf-8")


def read_acquisitions(path: Path) -> tuple[bytes, list[ismrmrd.Acquisition]]:
    """Header XML and all acquisitions of a raw file (read-only)."""
    import h5py

    with h5py.File(path, "r") as f:
        xml = f["dataset/xml"][0]
    xml = xml if isinstance(xml, bytes) else xml.encode()
    dset = ismrmrd.Dataset(str(path), "dataset", False)
    try:
        return xml, [dset.read_acquisition(i) for i in range(dset.number_of_acquisitions())]
    finally:
        dset.close()


def send_message(stream: Any, item: Any) -> None:
    """Write one item the way Gadgetron's writers do (raw bytes pass as they are)."""
    if isinstance(item, ismrmrd.Acquisition):
        writers.write_acquisition(stream, item)
    elif isinstance(item, ismrmrd.Waveform):
        writers.write_waveform(stream, item)
    elif isinstance(item, ismrmrd.Image):
        writers.write_image(stream, item)
    elif isinstance(item, ReconData):
        write_recon_data(stream, item)
    elif isinstance(item, (bytes, bytearray)):
        stream.write(bytes(item))
    else:
        raise TypeError(type(item))


def _write_all(stream: _Stream, config: bytes, header: bytes, items: Sequence[Any], close: bool) -> None:
    try:
        stream.write(_ID.pack(constants.GADGET_MESSAGE_CONFIG))
        writers.write_byte_string(stream, config)
        stream.write(_ID.pack(constants.GADGET_MESSAGE_HEADER))
        writers.write_byte_string(stream, header)
        for item in items:
            send_message(stream, item)
        if close:
            stream.write(_ID.pack(constants.GADGET_MESSAGE_CLOSE))
    except OSError:
        pass  # the gadget may close early after an error; the reply says why


def _read_all(stream: _Stream, reply: Reply) -> Reply:
    while True:
        try:
            mid = readers.read(stream, constants.GadgetMessageIdentifier)
        except EOFError:
            return reply
        reply.ids.append(mid)
        if mid == constants.GADGET_MESSAGE_CLOSE:
            reply.closed = True
            return reply
        if mid == 8:
            n = _U64.unpack(stream.read(8))[0]
            reply.errors.append(stream.read(n).decode("utf-8"))
        elif mid == constants.GADGET_MESSAGE_ISMRMRD_IMAGE:
            reply.images.append(readers.read_image(stream))
            reply.image_times.append(time.perf_counter())
        elif mid == constants.GADGET_MESSAGE_ISMRMRD_WAVEFORM:
            reply.others.append((mid, readers.read_waveform(stream)))
        elif mid == constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION:
            reply.others.append((mid, readers.read_acquisition(stream)))
        else:
            raise AssertionError(f"unexpected message id {mid} from the gadget")


def exchange(sock: socket.socket, config: bytes, header: bytes, items: Sequence[Any], close: bool = True) -> Reply:
    """Send CONFIG, HEADER, items and CLOSE from a thread while reading the reply until CLOSE."""
    sock.settimeout(TIMEOUT)
    stream = _Stream(sock)
    writer = threading.Thread(target=_write_all, args=(stream, config, header, items, close), daemon=True)
    writer.start()
    reply = _read_all(stream, Reply())
    writer.join(TIMEOUT)
    return reply


class FakeGadgetron:
    """Listens like Gadgetron's External node and spawns the gadget like ``Python.cpp``."""

    def __init__(self, log_path: Path) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.server.settimeout(TIMEOUT)
        self.port = self.server.getsockname()[1]
        self.log_path = log_path

    def run(self, config: bytes, header: bytes, items: Sequence[Any], module: str = "gadget.dainr_gadget",
            target: str = "recon", close: bool = True) -> Reply:
        """One whole external step: spawn, exchange, wait for the child."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["GADGETRON_EXTERNAL_LOG_LEVEL"] = "INFO"
        with open(self.log_path, "wb") as log:
            started = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-m", "gadgetron", str(self.port), module, target],
                                     stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
            try:
                sock, _ = self.server.accept()
                with sock:
                    reply = exchange(sock, config, header, items, close)
                reply.started = started
                reply.returncode = child.wait(TIMEOUT)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        reply.log = self.log_path.read_text(errors="replace")
        return reply

    def close(self) -> None:
        self.server.close()


def socketpair_run(target: Callable[[socket.socket], Any], config: bytes, header: bytes, items: Sequence[Any],
                   close: bool = True) -> Reply:
    """Run ``target(gadget_side_socket)`` in a thread and play Gadgetron on the other end of a socketpair."""
    ours, theirs = socket.socketpair()
    worker = threading.Thread(target=target, args=(theirs,), daemon=True)
    worker.start()
    try:
        with ours:
            reply = exchange(ours, config, header, items, close)
    finally:
        worker.join(TIMEOUT)
    assert not worker.is_alive(), "the gadget did not finish"
    return reply


def passive_over_tcp(*options: str) -> tuple[threading.Thread, list, socket.socket]:
    """``python -m gadget.dainr_gadget --port P --once OPTIONS`` in a thread: (thread, [its exit status], a socket
    connected to it)."""
    from gadget import dainr_gadget

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    result: list = []
    server = threading.Thread(target=lambda: result.append(dainr_gadget.main(
        ["--port", str(port), "--once", "--log-level", "ERROR", *options])), daemon=True)
    server.start()
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return server, result, socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            assert time.monotonic() < deadline, "passive gadget did not start listening"
            time.sleep(0.05)


def bucket_to_buffer(header_xml: bytes, acquisitions: Sequence[ismrmrd.Acquisition]) -> list[ReconData]:
    """What AcquisitionAccumulateTrigger(slice) + BucketToBuffer(N=phase, split_slices) send for radial data.

    Noise scans are dropped (AcquisitionAccumulateTrigger skips them); one ReconData per slice, each with one bit
    whose buffer is ``[E0, E1, E2, CHA, N, S, LOC]`` with ``E1`` = the step-1 limit range and a readout placed at
    ``E1 = idx.kspace_encode_step_1`` and ``N = idx.phase`` (BucketToBufferGadget.cpp, non-Cartesian branch).
    """
    header = ismrmrd.xsd.CreateFromDocument(header_xml)
    lim = header.encoding[0].encodingLimits.kspace_encoding_step_1
    ne1 = int(lim.maximum) - int(lim.minimum or 0) + 1
    noise_bit = 1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1)
    imaging = [a for a in acquisitions if not a.getHead().flags & noise_bit]
    out = []
    for s in sorted({a.idx.slice for a in imaging}):
        acqs = [a for a in imaging if a.idx.slice == s]
        phases = [a.idx.phase for a in acqs]
        nn = max(phases) - min(phases) + 1
        ne0, ncha, td = acqs[0].number_of_samples, acqs[0].active_channels, acqs[0].trajectory_dimensions
        data = np.zeros((ne0, ne1, 1, ncha, nn, 1, 1), np.complex64, order="F")
        traj = np.zeros((td, ne0, ne1, 1, nn, 1, 1), np.float32, order="F") if td else None
        headers = np.empty((ne1, 1, nn, 1, 1), dtype=object)
        for idx in np.ndindex(headers.shape):
            headers[idx] = ismrmrd.AcquisitionHeader()
        for a in acqs:
            e1, n = a.idx.kspace_encode_step_1, min(a.idx.phase, nn - 1)
            data[:, e1, 0, :, n, 0, 0] = a.data.T
            headers[e1, 0, n, 0, 0] = a.getHead()
            if traj is not None:
                traj[:, :, e1, 0, n, 0, 0] = a.traj.T
        out.append(ReconData([ReconBit(ReconBuffer(data, traj, None, headers, SamplingDescription()))]))
    return out
