"""``dainr replay``: stream an ISMRMRD raw file to an MRD server and keep the images it sends back.

It sends what ``gadgetron_ismrmrd_client`` and python-ismrmrd-server's ``client.py`` send — CONFIG_FILE (a name) or
CONFIG_TEXT, HEADER (the file's ``/dataset/xml`` bytes exactly as stored), every acquisition, CLOSE — from a sender
thread, while this thread reads images, TEXT and CLOSE. The file is read by :func:`dainr.mrd.read_acquisitions`; the
images are stored (by ``dainr replay``, through :func:`dainr.mrd.write_images` with ``new_group``) like
``gadgetron_ismrmrd_client`` stores them: one HDF5 group per run (default: the date and time), ``image_<series>``
variables, the header in ``<group>/xml``.

Config, acquisitions and CLOSE go through ismrmrd-python's ``ProtocolSerializer`` (ismrmrd ≥ 1.14.2). The HEADER is
framed here, because the serializer re-serialises a parsed header instead of sending the stored bytes; the reply is
read with :class:`~dainr.stream.protocol.MessageReader`, because ``ProtocolDeserializer`` raises on the ids a
Gadgetron server may also send (7, 8, 1018, 1019) and has no size limits. With ismrmrd 1.14.0/1.14.1 (no
``ismrmrd.serialization``) every message is framed by :mod:`dainr.stream.protocol`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from dainr.errors import DainrError, one_line
from dainr.mrd import read_acquisitions
from dainr.stream import protocol

if TYPE_CHECKING:
    import ismrmrd

try:  # ismrmrd >= 1.14.2
    from ismrmrd.serialization import ConfigFile, ConfigText, ProtocolSerializer
except ImportError:  # pragma: no cover - exercised by forcing use_serializer=False
    ProtocolSerializer = None

#: progress(acquisitions sent, total acquisitions, images received)
ReplayProgress = Callable[[int, int, int], None]


class ServerError(DainrError):
    """The server answered with an error (TEXT containing ``ERROR``, or an ERROR message), or broke off."""


@dataclass
class ReplayResult:
    """What a replay received.

    Attributes
    ----------
    images: the images, in arrival order.
    texts: TEXT messages that were not errors.
    header_xml: the header that was sent.
    acquisitions: number of acquisitions sent.
    seconds: wall time from connecting to CLOSE.
    first_image_s: seconds from connecting to the first image (None without images).
    """

    images: list[ismrmrd.Image] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    header_xml: bytes = b""
    acquisitions: int = 0
    seconds: float = 0.0
    first_image_s: float | None = None


class _Sender(threading.Thread):
    """Writes the request; stops quietly when the server closes early (its reply says why)."""

    def __init__(self, sock: socket.socket, config: str | None, config_text: str | None, header: bytes,
                 acquisitions: list[ismrmrd.Acquisition], use_serializer: bool) -> None:
        super().__init__(name="dainr-replay-send", daemon=True)
        self.sock, self.config, self.config_text, self.header = sock, config, config_text, header
        self.acquisitions = acquisitions
        self.use_serializer = use_serializer and ProtocolSerializer is not None
        self.sent = 0
        self.stop = threading.Event()
        self.error: OSError | None = None

    def run(self) -> None:
        stream = self.sock.makefile("wb")
        try:
            if self.use_serializer:
                ser = ProtocolSerializer(stream)
                ser.serialize(ConfigText(self.config_text) if self.config_text is not None
                              else ConfigFile(self.config or "default"))
                stream.write(protocol.frame_text(self.header, protocol.HEADER))
                for acq in self.acquisitions:
                    if self.stop.is_set():
                        return
                    ser.serialize(acq)
                    self.sent += 1
                ser.close()  # CLOSE and flush
            else:
                stream.write(protocol.frame_text(self.config_text, protocol.CONFIG_TEXT) if self.config_text is not None
                             else protocol.frame_config_file(self.config or "default"))
                stream.write(protocol.frame_text(self.header, protocol.HEADER))
                for acq in self.acquisitions:
                    if self.stop.is_set():
                        return
                    stream.write(protocol.frame_item(acq))
                    self.sent += 1
                stream.write(protocol.frame_close())
            stream.flush()
        except OSError as exc:
            self.error = exc
        finally:
            with contextlib.suppress(OSError):
                stream.close()


def replay(path: str | os.PathLike, host: str, port: int, config: str | None = "default",
           config_text: str | None = None, group: str = "dataset", timeout: float = 600.0,
           progress: ReplayProgress | None = None, use_serializer: bool = True) -> ReplayResult:
    """Send a raw file to an MRD server and collect the images.

    Parameters
    ----------
    path, group:
        The raw file and its dataset group.
    host, port:
        The server.
    config, config_text:
        A config name (CONFIG_FILE) or a config text (CONFIG_TEXT, wins when given).
    timeout:
        Longest silence from the server (a reconstruction may take a while before the first image).
    progress:
        ``(acquisitions sent, total, images received)``, called as images arrive and about every second.
    use_serializer:
        Frame the request with ismrmrd-python's ``ProtocolSerializer`` when it is available.

    Raises
    ------
    ServerError
        The server refused the data or the config, or closed the connection without CLOSE.
    InputError
        The raw file cannot be read.
    """
    header, acqs = read_acquisitions(path, group)
    t0 = time.perf_counter()
    try:
        sock = socket.create_connection((host, port), timeout=min(timeout, 30.0))
    except OSError as exc:
        raise ServerError(f"cannot connect to {host}:{port} ({exc.strerror or exc}): is dainr serve (or "
                          "Gadgetron) running there?") from None
    result = ReplayResult(header_xml=header)
    sender = _Sender(sock, config, config_text, header, acqs, use_serializer)
    # The reply may take as long as the reconstructions do: no deadline, only the longest silence.
    reader = protocol.MessageReader(sock, protocol.Limits(idle_timeout_s=timeout, stream_timeout_s=None),
                                    peer="the server")
    allowed = frozenset({protocol.IMAGE, protocol.TEXT, protocol.ERROR, protocol.RESPONSE, protocol.CLOSE})
    errors: list[str] = []
    sender.start()
    last = 0.0
    try:
        while True:
            try:
                msg = reader.read_message(allowed)
            except protocol.PeerClosed as exc:
                raise ServerError(str(exc)) from None  # names the server and what was cut short
            except protocol.ProtocolError as exc:
                raise ServerError(f"bad reply from the server: {exc}") from None
            if msg.id == protocol.CLOSE:
                break
            if msg.id == protocol.IMAGE:
                result.images.append(msg.value)
                if result.first_image_s is None:
                    result.first_image_s = time.perf_counter() - t0
            elif msg.id == protocol.ERROR or (msg.id == protocol.TEXT and "ERROR" in msg.value.upper()):
                errors.append(one_line(msg.value))
            elif msg.id == protocol.TEXT:
                result.texts.append(msg.value)
            now = time.perf_counter()
            if progress is not None and (msg.id == protocol.IMAGE or now - last > 1.0):
                last = now
                progress(sender.sent, len(acqs), len(result.images))
    finally:
        sender.stop.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sender.join(5)
        sock.close()
    if errors:
        raise ServerError("server: " + " | ".join(errors))
    if sender.error is not None or sender.sent < len(acqs):
        raise ServerError(f"the server closed after {sender.sent} of {len(acqs)} acquisitions without an error")
    result.acquisitions = sender.sent
    result.seconds = time.perf_counter() - t0
    if progress is not None:
        progress(sender.sent, len(acqs), len(result.images))
    return result


def default_group() -> str:
    """``gadgetron_ismrmrd_client``'s default output group: the local date and time."""
    return time.strftime("%Y-%m-%d %H:%M:%S")
