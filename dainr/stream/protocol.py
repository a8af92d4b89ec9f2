"""The MRD / Gadgetron streaming protocol between a client and ``dainr serve``.

Every message is a little-endian ``uint16`` id and a body (ids and order as ``gadgetron_ismrmrd_client`` and
python-ismrmrd-server's ``client.py`` use them)::

    client -> server: CONFIG_FILE (1, 1024-byte NUL-padded name) | CONFIG_TEXT (2, uint32 length + text)
                      HEADER (3, uint32 length + ISMRMRD XML)
                      [TEXT (5, uint32 length + text)] ACQUISITION (1008)* [WAVEFORM (1026)] CLOSE (4)
                  or: QUERY (6, uint64 reserved = 0, uint64 correlation id, uint64 length + text)* CLOSE (4)
    server -> client: IMAGE (1022)* [TEXT (5) "ERROR: ..."] CLOSE (4); RESPONSE (7, correlation id + text) per QUERY

Errors go back as TEXT messages whose text contains ``ERROR:``, as Gadgetron's own server sends them (its clients
print TEXT; id 8 is only understood between Gadgetron and its external steps). Acquisition, image and waveform bodies
are the ismrmrd-python ``serialize_into`` layouts; QUERY and RESPONSE are laid out as Gadgetron's. A server refuses an
id it does not take (an IMAGE from a client, say) as soon as it has read the id, before the body.
:class:`MessageReader` checks every length against :class:`Limits` before allocating, and every read against an idle
time-out and a deadline for the whole stream, so a garbage id or size, or a client that sends a byte now and then,
is an error, never a hang or a huge allocation.
"""

from __future__ import annotations

import ctypes
import io
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import ismrmrd
import numpy as np
from ismrmrd.image import get_dtype_from_data_type

from dainr.errors import DainrError, InputError, one_line

CONFIG_FILE = 1
CONFIG_TEXT = 2
HEADER = 3
CLOSE = 4
TEXT = 5
QUERY = 6
RESPONSE = 7
ERROR = 8
ACQUISITION = 1008
DICOM_WITHNAME = 1018
DEPENDENCY_QUERY = 1019
IMAGE = 1022
WAVEFORM = 1026

#: The QUERY a health probe sends to ``dainr serve``; the RESPONSE is ``ok`` or ``unhealthy: <why>``.
HEALTH_QUERY = "dainr::health"

NAMES = {CONFIG_FILE: "CONFIG_FILE", CONFIG_TEXT: "CONFIG_TEXT", HEADER: "HEADER", CLOSE: "CLOSE", TEXT: "TEXT",
         QUERY: "QUERY", RESPONSE: "RESPONSE", ERROR: "ERROR", ACQUISITION: "ACQUISITION", IMAGE: "IMAGE",
         WAVEFORM: "WAVEFORM", DICOM_WITHNAME: "DICOM_WITHNAME", DEPENDENCY_QUERY: "DEPENDENCY_QUERY"}

CONFIG_FILE_SIZE = 1024
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ACQ_HEAD = ctypes.sizeof(ismrmrd.AcquisitionHeader)
_IMG_HEAD = ctypes.sizeof(ismrmrd.ImageHeader)
_WAV_HEAD = ctypes.sizeof(ismrmrd.WaveformHeader)
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


class ProtocolError(InputError):
    """The peer sent something that is not a valid message here (unknown id, bad size, wrong order)."""


class PeerClosed(DainrError, ConnectionError):
    """The peer closed the connection; ``truncated`` is True when it did so in the middle of a message."""

    def __init__(self, message: str, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


class TimedOut(ProtocolError):
    """The peer stayed silent too long (``idle``) or did not finish its stream by the deadline (not ``idle``)."""

    def __init__(self, message: str, idle: bool) -> None:
        super().__init__(message)
        self.idle = idle


@dataclass(frozen=True)
class Limits:
    """Sizes and times a peer may take, checked before anything is allocated (or waited for).

    Attributes
    ----------
    max_text_bytes:
        Config text, XML header, TEXT, QUERY and ERROR messages.
    max_samples:
        ``channels × samples`` of one acquisition (complex64: 8 bytes each), or ``channels × x × y × z`` of one image.
    max_waveform_samples:
        ``channels × samples`` of one waveform (uint32).
    max_stream_bytes:
        Everything one connection may send.
    idle_timeout_s:
        Longest silence in the middle of a stream before the connection is dropped.
    stream_timeout_s:
        Longest time from the first byte to the end of the stream (CLOSE): a peer that sends a byte now and then
        cannot keep a connection open beyond it. None: no such limit.
    """

    max_text_bytes: int = 16 << 20
    max_samples: int = 1 << 24
    max_waveform_samples: int = 1 << 20
    max_stream_bytes: int = 16 << 30
    idle_timeout_s: float = 120.0
    stream_timeout_s: float | None = 1800.0


@dataclass
class Message:
    """One received message: its id and its decoded value (str, bytes, Acquisition, Image, Waveform, a
    ``(correlation id, text)`` pair for QUERY and RESPONSE, or None)."""

    id: int
    value: Any = None

    @property
    def name(self) -> str:
        return NAMES.get(self.id, str(self.id))


class MessageReader:
    """Reads whole messages from a socket, within :class:`Limits`.

    Parameters
    ----------
    sock:
        A connected socket.
    limits:
        Sizes and time-outs; the stream deadline (``limits.stream_timeout_s``) starts now.
    peer:
        Who the peer is, for messages ("the client", "the server").
    """

    def __init__(self, sock: socket.socket, limits: Limits = Limits(), peer: str = "the client") -> None:
        self.sock = sock
        self.limits = limits
        self.peer = peer
        self.bytes_read = 0
        self.deadline: float | None = None if limits.stream_timeout_s is None else \
            time.monotonic() + limits.stream_timeout_s
        self._deadline_why = f"did not finish its stream within {limits.stream_timeout_s or 0:g} s"
        self._poll = select.poll() if hasattr(select, "poll") else None
        if self._poll is not None:
            self._poll.register(sock.fileno(), select.POLLIN | select.POLLPRI)

    def set_deadline(self, deadline: float | None, why: str) -> None:
        """Read nothing after ``deadline`` (``time.monotonic()``), if it is earlier than the current one; ``why``
        completes "``peer`` ..." in the error."""
        if deadline is not None and (self.deadline is None or deadline < self.deadline):
            self.deadline, self._deadline_why = deadline, why

    def _timeout(self, what: str) -> float:
        timeout = self.limits.idle_timeout_s
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimedOut(f"{self.peer} {self._deadline_why} (while the server waited for {what})", idle=False)
            timeout = min(timeout, left)
        return timeout

    def wait_readable(self, timeout: float) -> bool:
        """True when the socket has data (or EOF) within ``timeout`` seconds."""
        # Waiting here, not through the socket's own time-out, leaves that one to the sending side: another thread
        # may be sending on the same socket meanwhile (images while acquisitions still arrive).
        if self._poll is None:
            return bool(select.select([self.sock], [], [], timeout)[0])
        return bool(self._poll.poll(max(0, int(timeout * 1000) + 1)))

    def read_into(self, view: memoryview, what: str) -> None:
        """Fill ``view`` (bytes) from the socket: :class:`PeerClosed` on EOF, :class:`TimedOut` on silence or past
        the deadline."""
        n = len(view)
        if self.bytes_read + n > self.limits.max_stream_bytes:
            raise ProtocolError(f"{self.peer} sent more than {self.limits.max_stream_bytes} bytes on one connection")
        got = 0
        while got < n:
            if not self.wait_readable(self._timeout(what)):
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    raise TimedOut(f"{self.peer} {self._deadline_why} (while the server waited for {what})",
                                   idle=False)
                raise TimedOut(f"{self.peer} sent nothing for {self.limits.idle_timeout_s:g} s in the middle of "
                               f"the stream (while the server waited for {what})", idle=True)
            try:
                k = self.sock.recv_into(view[got:], min(n - got, 1 << 20), _DONTWAIT)
            except (BlockingIOError, InterruptedError, socket.timeout):
                continue
            except OSError as exc:
                raise PeerClosed(f"the connection broke while reading {what} ({exc})", truncated=True) from None
            if not k:
                if got or what != "a message id":
                    raise PeerClosed(f"{self.peer} closed the connection in the middle of {what} "
                                     f"({got} of {n} bytes)", truncated=True)
                raise PeerClosed(f"{self.peer} closed the connection without CLOSE")
            got += k
            self.bytes_read += k

    def read_exact(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes of ``what`` (see :meth:`read_into`)."""
        buf = bytearray(n)
        self.read_into(memoryview(buf), what)
        return bytes(buf)

    def _length(self, fmt: struct.Struct, what: str) -> int:
        n = fmt.unpack(self.read_exact(fmt.size, f"the length of {what}"))[0]
        if n > self.limits.max_text_bytes:
            raise ProtocolError(f"{what} of {n} bytes is larger than the limit of {self.limits.max_text_bytes}")
        return n

    def read_text(self, what: str, fmt: struct.Struct = _U32) -> bytes:
        """A length-prefixed byte string (trailing NULs stripped, as python-ismrmrd-server sends them)."""
        return self.read_exact(self._length(fmt, what), what).rstrip(b"\0")

    def _samples(self, count: int, what: str, limit: int | None = None) -> None:
        limit = self.limits.max_samples if limit is None else limit
        if count > limit:
            raise ProtocolError(f"{what} declares {count} samples, more than the limit of {limit}")

    def read_acquisition(self) -> ismrmrd.Acquisition:
        """An acquisition, its samples read straight into the arrays it keeps (no intermediate copies)."""
        head = ismrmrd.AcquisitionHeader.from_buffer_copy(self.read_exact(_ACQ_HEAD, "an acquisition header"))
        n, c, d = int(head.number_of_samples), int(head.active_channels), int(head.trajectory_dimensions)
        self._samples(n * c, "an acquisition")
        if d > 16:
            raise ProtocolError(f"an acquisition declares {d} trajectory dimensions")
        traj = np.empty((n, d), np.float32)
        data = np.empty((c, n), np.complex64)
        for array in (traj, data):
            self.read_into(memoryview(array.reshape(-1).view(np.uint8)), "an acquisition's samples")
        return ismrmrd.Acquisition(head, data, traj)

    def read_image(self) -> ismrmrd.Image:
        head_bytes = self.read_exact(_IMG_HEAD, "an image header")
        head = ismrmrd.ImageHeader.from_buffer_copy(head_bytes)
        try:
            item = get_dtype_from_data_type(head.data_type).itemsize
        except (KeyError, TypeError, ValueError):
            raise ProtocolError(f"an image declares the unknown data type {head.data_type}") from None
        count = int(head.channels) * int(head.matrix_size[0]) * int(head.matrix_size[1]) * int(head.matrix_size[2])
        self._samples(count, "an image")
        attr = self.read_exact(self._length(_U64, "an image's attributes"), "an image's attributes")
        data = self.read_exact(count * item, "an image's pixels")
        return ismrmrd.Image.deserialize_from(io.BytesIO(head_bytes + _U64.pack(len(attr)) + attr + data).read)

    def read_waveform(self) -> ismrmrd.Waveform:
        head_bytes = self.read_exact(_WAV_HEAD, "a waveform header")
        head = ismrmrd.WaveformHeader.from_buffer_copy(head_bytes)
        count = int(head.channels) * int(head.number_of_samples)
        self._samples(count, "a waveform", self.limits.max_waveform_samples)
        data = self.read_exact(count * 4, "a waveform's samples")
        return ismrmrd.Waveform.deserialize_from(io.BytesIO(head_bytes + data).read)

    def read_message(self, allowed: frozenset[int] | None = None) -> Message:
        """The next message; ids outside ``allowed`` (or unknown) are a :class:`ProtocolError`."""
        mid = _U16.unpack(self.read_exact(2, "a message id"))[0]
        if mid not in NAMES:
            raise ProtocolError(f"unknown message id {mid}: this server speaks the MRD streaming protocol (config "
                                "1/2, header 3, acquisitions 1008, waveforms 1026, images 1022, text 5, close 4)")
        if allowed is not None and mid not in allowed:
            expected = ", ".join(f"{NAMES.get(i, i)} ({i})" for i in sorted(allowed))
            raise ProtocolError(f"unexpected message id {mid} ({NAMES.get(mid, 'unknown')}); expected {expected}")
        if mid == CLOSE:
            return Message(mid)
        if mid == CONFIG_FILE:
            name = self.read_exact(CONFIG_FILE_SIZE, "the config file name").split(b"\0", 1)[0]
            return Message(mid, name.decode("utf-8", "replace").strip())
        if mid in (CONFIG_TEXT, TEXT):
            return Message(mid, self.read_text(NAMES[mid]).decode("utf-8", "replace"))
        if mid == HEADER:
            return Message(mid, self.read_text("the XML header"))
        if mid == ACQUISITION:
            return Message(mid, self.read_acquisition())
        if mid == IMAGE:
            return Message(mid, self.read_image())
        if mid == WAVEFORM:
            return Message(mid, self.read_waveform())
        if mid == ERROR:
            return Message(mid, self.read_text("an ERROR message", _U64).decode("utf-8", "replace"))
        if mid == QUERY:
            reserved, correlation = struct.unpack("<QQ", self.read_exact(16, "a QUERY's reserved and correlation id"))
            if reserved:
                raise ProtocolError(f"a QUERY has {reserved} in its reserved field, which must be 0")
            return Message(mid, (correlation, self.read_text("a QUERY", _U64).decode("utf-8", "replace")))
        if mid == RESPONSE:
            correlation = _U64.unpack(self.read_exact(8, "a RESPONSE correlation id"))[0]
            return Message(mid, (correlation, self.read_text("a RESPONSE", _U64).decode("utf-8", "replace")))
        raise ProtocolError(f"message id {mid} ({NAMES[mid]}) is not supported here")


def frame_id(mid: int) -> bytes:
    return _U16.pack(mid)


def frame_close() -> bytes:
    return _U16.pack(CLOSE)


def frame_text(text: str, mid: int = TEXT) -> bytes:
    """TEXT (5), CONFIG_TEXT (2) or HEADER (3): id, uint32 length, utf-8 bytes."""
    body = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return _U16.pack(mid) + _U32.pack(len(body)) + body


def frame_error(text: str) -> bytes:
    """ERROR (8): id, uint64 length, utf-8 bytes (Gadgetron's external-step form)."""
    body = text.encode("utf-8")
    return _U16.pack(ERROR) + _U64.pack(len(body)) + body


def frame_query(text: str, correlation: int = 0) -> bytes:
    """QUERY (6) as Gadgetron reads it: id, uint64 reserved (0), uint64 correlation id, uint64 length, utf-8 text."""
    body = text.encode("utf-8")
    return _U16.pack(QUERY) + struct.pack("<QQQ", 0, correlation, len(body)) + body


def frame_response(correlation: int, text: str) -> bytes:
    """RESPONSE (7) as Gadgetron writes it: id, uint64 correlation id, uint64 length, utf-8 text."""
    body = text.encode("utf-8")
    return _U16.pack(RESPONSE) + struct.pack("<QQ", correlation, len(body)) + body


def frame_config_file(name: str) -> bytes:
    body = name.encode("utf-8")
    if len(body) >= CONFIG_FILE_SIZE:
        raise ValueError(f"config name longer than {CONFIG_FILE_SIZE - 1} bytes")
    return _U16.pack(CONFIG_FILE) + body.ljust(CONFIG_FILE_SIZE, b"\0")


def frame_item(item: Any) -> bytes:
    """An Acquisition, Image or Waveform with its id (ismrmrd-python's own serialisation of the body)."""
    for cls, mid in ((ismrmrd.Acquisition, ACQUISITION), (ismrmrd.Image, IMAGE), (ismrmrd.Waveform, WAVEFORM)):
        if isinstance(item, cls):
            out = io.BytesIO()
            out.write(_U16.pack(mid))
            item.serialize_into(out.write)
            return out.getvalue()
    raise TypeError(f"cannot send {type(item).__name__}")


def error_line(text: str) -> str:
    """The TEXT body of an error reply: one line starting with ``ERROR:`` (Gadgetron's own servers' wording)."""
    return "ERROR: " + one_line(text)
