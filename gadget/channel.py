"""A safer face on gadgetron-python's ``Connection`` (see shared/design/GADGETRON_ISMRMRD.md, "pitfalls").

* gadgetron-python's socket read loops forever once the peer has closed (``recv`` returns b""): :class:`SafeSocket`
  raises :class:`PeerGone` instead, so a gadget whose Gadgetron died exits instead of spinning on the CPU.
* An unknown message id silently ends gadgetron-python's iteration: :meth:`GadgetChannel.messages` refuses it.
* Items the gadget does not consume are forwarded byte for byte (what was read is written back), so every type
  gadgetron-python can read passes through untouched, even those it cannot write (``AcquisitionBucket``).
* Forwarding raw bytes also avoids gadgetron-python's writers for ``ImageArray``/``ReconData``, whose
  ``np.array(..., copy=False)`` fails under numpy 2 whenever a dtype conversion is needed; the gadget itself only
  sends ``ismrmrd.Image`` (float32 or complex64), which those writers do not touch.
* Failures go to Gadgetron as an ERROR message (id 8, uint64 length, utf-8 text) before the CLOSE, so the chain
  fails loudly; a Python gadget never sends TEXT (id 5), which Gadgetron refuses from an external step.
* In passive mode (``<connect>``) :func:`open_connection` reads CONFIG and HEADER itself, so a header that
  ismrmrd-python cannot parse gets an ERROR reply instead of a crash without CLOSE; there a peer silent for the idle
  time-out, or a stream that outlives the connection's deadline, ends the connection (:class:`StreamTimeout`), so an
  idle client cannot block the next one for long.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
import xml.etree.ElementTree as ET
from typing import Any, Iterator

import ismrmrd
from gadgetron.external import constants
from gadgetron.external.connection import Connection
from gadgetron.external.readers import read_byte_string

from dainr.errors import ConfigError, InputError, one_line

log = logging.getLogger(__name__)

ERROR = 8
_ID = struct.Struct("<H")
_U64 = struct.Struct("<Q")


class PeerGone(ConnectionError):
    """Gadgetron closed the socket (or it broke): nothing can be sent any more."""


class StreamTimeout(PeerGone):
    """The peer stayed silent too long, or its stream outlived the connection's deadline (it may still be there)."""


class SafeSocket:
    """Replacement of ``Connection.SocketWrapper`` that notices a closed peer and a silent one.

    Parameters
    ----------
    sock:
        The connected socket.
    setup_timeout_s:
        Deadline, in seconds from now, for the reads before :meth:`end_setup` (CONFIG and HEADER, which Gadgetron
        sends at once); None for none.
    idle_timeout_s:
        After :meth:`end_setup`: longest wait for the next bytes; None (active mode, where Gadgetron may take as
        long as the scan does) for none.
    deadline_s:
        Seconds from now after which nothing more is read: the whole connection's limit; None for none.
    """

    def __init__(self, sock: socket.socket, setup_timeout_s: float | None = None,
                 idle_timeout_s: float | None = None, deadline_s: float | None = None) -> None:
        self.socket = sock
        self.socket.settimeout(None)
        self.closed = False
        self.setup_timeout_s = setup_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.deadline_s = deadline_s
        now = time.monotonic()
        self._setup_deadline = None if setup_timeout_s is None else now + setup_timeout_s
        self._deadline = None if deadline_s is None else now + deadline_s
        self._in_setup = True

    def end_setup(self) -> None:
        """CONFIG and HEADER are read: from now on the idle time-out and the connection's deadline apply."""
        self._in_setup = False
        self._setup_deadline = None

    def _timeout(self) -> tuple[float | None, str]:
        """Seconds the next ``recv`` may wait, and what waiting that long means."""
        now = time.monotonic()
        limits = []
        if self._setup_deadline is not None:
            limits.append((self._setup_deadline - now,
                           f"Gadgetron sent no CONFIG and HEADER within {self.setup_timeout_s:g} s"))
        if not self._in_setup and self.idle_timeout_s is not None:
            limits.append((self.idle_timeout_s, f"the peer sent nothing for {self.idle_timeout_s:g} s"))
        if self._deadline is not None:
            limits.append((self._deadline - now, f"the stream did not end within {self.deadline_s:g} s"))
        if not limits:
            return None, ""
        left, why = min(limits, key=lambda x: x[0])
        return max(left, 1e-3), why

    def read(self, nbytes: int) -> bytes:
        chunks = []
        left = nbytes
        while left > 0:
            timeout, why = self._timeout()
            try:
                self.socket.settimeout(timeout)
                chunk = self.socket.recv(min(left, 1 << 20))
            except socket.timeout:
                error = PeerGone if self._in_setup else StreamTimeout
                raise error(why) from None
            except OSError as exc:
                raise PeerGone(f"the connection to Gadgetron broke ({exc})") from None
            if not chunk:
                raise PeerGone("Gadgetron closed the connection")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def write(self, data: Any) -> None:
        try:
            self.socket.settimeout(self.idle_timeout_s)  # a peer that stops reading is as gone as a silent one
            self.socket.sendall(data)
        except OSError as exc:
            raise PeerGone(f"the connection to Gadgetron broke ({exc})") from None

    def close(self) -> None:
        """Send CLOSE (if the peer is still there) and close the socket; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        try:
            self.socket.sendall(_ID.pack(constants.GADGET_MESSAGE_CLOSE))
        except OSError:
            pass
        finally:
            self.socket.close()


class _Tee:
    """A reader that keeps what it read, to forward a message unchanged."""

    def __init__(self, source: SafeSocket) -> None:
        self.source = source
        self.parts: list[bytes] = []

    def read(self, nbytes: int) -> bytes:
        data = self.source.read(nbytes)
        self.parts.append(data)
        return data


class GadgetChannel:
    """The gadget's side of one Gadgetron connection.

    Parameters
    ----------
    connection:
        A gadgetron-python ``Connection`` whose CONFIG and HEADER have been read (its socket is replaced by a
        :class:`SafeSocket`).
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        if not isinstance(connection.socket, SafeSocket):
            connection.socket = SafeSocket(connection.socket.socket)
        self.socket: SafeSocket = connection.socket

    @property
    def header_xml(self) -> bytes:
        """The ISMRMRD header exactly as Gadgetron sent it."""
        return bytes(self.connection.raw_bytes.header or b"")

    @property
    def config_element(self) -> ET.Element:
        """The ``<configuration>`` element of the external step.

        Raises
        ------
        ConfigError
            When Gadgetron sent a configuration that is not XML.
        """
        if self.connection.config is None:
            raise ConfigError("the gadget's <configuration> is not well-formed XML: fix the <external> step of the "
                              "Gadgetron chain")
        return self.connection.config

    def messages(self) -> Iterator[tuple[int, Any, bytes]]:
        """``(message id, item, raw body)`` until CLOSE.

        Raises
        ------
        InputError
            For a message id gadgetron-python has no reader for.
        PeerGone
            When Gadgetron disappears mid-stream.
        """
        readers = self.connection.readers
        while True:
            mid = _ID.unpack(self.socket.read(_ID.size))[0]
            if mid == constants.GADGET_MESSAGE_CLOSE:
                return
            reader = readers.get(mid)
            if reader is None or mid in (constants.GADGET_MESSAGE_CONFIG, constants.GADGET_MESSAGE_HEADER):
                raise InputError(f"message id {mid} is not one the DA-INR gadget can read or pass on (acquisitions "
                                 "1008, ReconData 1023, images 1022, image arrays 1024, waveforms 1026, buckets "
                                 "1050): check the gadgets before it in the chain")
            tee = _Tee(self.socket)
            item = reader(tee)
            yield mid, item, b"".join(tee.parts)

    def forward(self, mid: int, raw: bytes) -> None:
        """Send a message back to Gadgetron unchanged."""
        self.socket.write(_ID.pack(mid) + raw)

    def send_image(self, image: ismrmrd.Image) -> None:
        """Send one image (message 1022)."""
        self.connection.send(image)

    def send_error(self, text: str) -> bool:
        """Send an ERROR message (one line of utf-8); False when Gadgetron is already gone."""
        return send_error(self.socket, text)


def send_error(sock: SafeSocket, text: str) -> bool:
    """Write an ERROR message (id 8, uint64 length, one line of utf-8); False when the peer is already gone."""
    body = one_line(text).encode("utf-8")
    try:
        sock.write(_ID.pack(ERROR) + _U64.pack(len(body)) + body)
        return True
    except PeerGone:
        return False


class _PassiveConnection(Connection):
    """A ``Connection`` whose CONFIG/HEADER reading reports problems instead of asserting or crashing."""

    def __init__(self, sock: SafeSocket) -> None:  # noqa: D107 - mirrors Connection.__init__ of gadgetron 1.4.1
        self.socket = sock
        self.readers = Connection._default_readers()
        self.writers = Connection._default_writers()
        self.raw_bytes = Connection.Struct(config=None, header=None)
        self.filters = []
        self.config = None
        self.header = None
        self.header_error: str | None = None
        mid = _ID.unpack(self.socket.read(2))[0]
        if mid != constants.GADGET_MESSAGE_CONFIG:
            raise InputError(f"expected the CONFIG message (id 2) first, got id {mid}")
        self.raw_bytes.config = read_byte_string(self.socket)
        try:
            self.config = ET.fromstring(self.raw_bytes.config)
        except ET.ParseError:
            self.config = None
        mid = _ID.unpack(self.socket.read(2))[0]
        if mid != constants.GADGET_MESSAGE_HEADER:
            raise InputError(f"expected the HEADER message (id 3) after CONFIG, got id {mid}")
        self.raw_bytes.header = read_byte_string(self.socket)
        try:
            self.header = ismrmrd.xsd.CreateFromDocument(self.raw_bytes.header)
        except Exception as exc:  # noqa: BLE001 - any parser failure is the same refusal
            self.header_error = one_line(exc)[:200] or type(exc).__name__


def open_connection(sock: SafeSocket) -> Connection:
    """Read CONFIG and HEADER from a socket accepted in passive (``<connect>``) mode.

    Raises
    ------
    InputError
        When the first messages are not CONFIG then HEADER.
    PeerGone
        When the peer closes before sending them.
    """
    return _PassiveConnection(sock)
