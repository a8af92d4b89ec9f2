"""The MRD / Gadgetron streaming protocol between a client and ``dainr serve``.

Every message is a little-endian ``uint16`` id and a body (ids and order as ``gadgetron_ismrmrd_client`` and
python-ismrmrd-server's ``client.py`` use them)::

    client -> server: CONFIG_FILE (1, 1024-byte NUL-padded name) | CONFIG_TEXT (2, uint32 length + text)
                      HEADER (3, uint32 length + ISMRMRD XML)
                      [TEXT (5, uint32 length + text)] ACQUISITION (1008)* [WAVEFORM (1026), IMAGE (1022)] CLOSE (4)
    server -> client: IMAGE (1022)* [TEXT (5) "ERROR: ..."] CLOSE (4)

Errors go back as TEXT messages whose text contains ``ERROR:``, as Gadgetron's own server sends them (its clients
print TEXT; id 8 is only understood between Gadgetron and its external steps). Acquisition, image and waveform bodies
are the ismrmrd-python ``serialize_into`` layouts. :class:`MessageReader` checks every length against
:class:`Limits` before allocating, so a garbage id or size is an error, never a hang or a huge allocation.
"""

from __future__ import annotations

import ctypes
import io
import socket
import struct
from dataclasses import dataclass
from typing import Any

import ismrmrd
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


class ProtocolError(InputError):
    """The peer sent something that is not a valid message here (unknown id, bad size, wrong order)."""


class PeerClosed(DainrError, ConnectionError):
    """The peer closed the connection; ``truncated`` is True when it did so in the middle of a message."""

    def __init__(self, message: str, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


@dataclass(frozen=True)
class Limits:
    """Sizes a peer may send, checked before anything is allocated.

    Attributes
    ----------
    max_text_bytes:
        Config text, XML header and TEXT messages.
    max_samples:
        ``channels × samples`` of one acquisition, or ``channels × x × y × z`` of one image.
    max_stream_bytes:
        Everything one connection may send.
    idle_timeout_s:
        Longest silence in the middle of a stream before the connection is dropped.
    """

    max_text_bytes: int = 16 << 20
    max_samples: int = 1 << 26
    max_stream_bytes: int = 64 << 30
    idle_timeout_s: float = 600.0


@dataclass
class Message:
    """One received message: its id and its decoded value (str, bytes, Acquisition, Image, Waveform or None)."""

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
        Sizes and time-out.
    peer:
        Who the peer is, for messages ("the client", "the server").
    """

    def __init__(self, sock: socket.socket, limits: Limits = Limits(), peer: str = "the client") -> None:
        self.sock = sock
        self.limits = limits
        self.peer = peer
        self.bytes_read = 0
        sock.settimeout(limits.idle_timeout_s)

    def read_exact(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes of ``what``; :class:`PeerClosed` on EOF, :class:`ProtocolError` on time-out."""
        if self.bytes_read + n > self.limits.max_stream_bytes:
            raise ProtocolError(f"{self.peer} sent more than {self.limits.max_stream_bytes} bytes on one connection")
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except socket.timeout:
                raise ProtocolError(f"{self.peer} sent nothing for {self.limits.idle_timeout_s:g} s in the middle "
                                    f"of the stream (while waiting for {what})") from None
            except OSError as exc:
                raise PeerClosed(f"the connection broke while reading {what} ({exc})", truncated=True) from None
            if not chunk:
                if buf or what != "a message id":
                    raise PeerClosed(f"{self.peer} closed the connection in the middle of {what} "
                                     f"({len(buf)} of {n} bytes)", truncated=True)
                raise PeerClosed(f"{self.peer} closed the connection without CLOSE")
            buf += chunk
        self.bytes_read += n
        return bytes(buf)

    def _length(self, fmt: struct.Struct, what: str) -> int:
        n = fmt.unpack(self.read_exact(fmt.size, f"the length of {what}"))[0]
        if n > self.limits.max_text_bytes:
            raise ProtocolError(f"{what} of {n} bytes is larger than the limit of {self.limits.max_text_bytes}")
        return n

    def read_text(self, what: str, fmt: struct.Struct = _U32) -> bytes:
        """A length-prefixed byte string (trailing NULs stripped, as python-ismrmrd-server sends them)."""
        return self.read_exact(self._length(fmt, what), what).rstrip(b"\0")

    def _samples(self, count: int, what: str) -> None:
        if count > self.limits.max_samples:
            raise ProtocolError(f"{what} declares {count} samples, more than the limit of {self.limits.max_samples}")

    def read_acquisition(self) -> ismrmrd.Acquisition:
        head_bytes = self.read_exact(_ACQ_HEAD, "an acquisition header")
        head = ismrmrd.AcquisitionHeader.from_buffer_copy(head_bytes)
        n, c, d = int(head.number_of_samples), int(head.active_channels), int(head.trajectory_dimensions)
        self._samples(n * c, "an acquisition")
        if d > 16:
            raise ProtocolError(f"an acquisition declares {d} trajectory dimensions")
        body = self.read_exact(n * d * 4 + n * c * 8, "an acquisition's samples")
        return ismrmrd.Acquisition.deserialize_from(io.BytesIO(head_bytes + body).read)

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
        self._samples(count, "a waveform")
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
        if mid == RESPONSE:
            self.read_exact(8, "a RESPONSE correlation id")
            return Message(mid, self.read_text("a RESPONSE", _U64).decode("utf-8", "replace"))
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
