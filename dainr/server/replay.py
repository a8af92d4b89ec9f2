"""``dainr replay``: stream an ISMRMRD raw file to an MRD server and keep the images it sends back.

It sends what ``gadgetron_ismrmrd_client`` and python-ismrmrd-server's ``client.py`` send — CONFIG_FILE (a name) or
CONFIG_TEXT, HEADER (the file's ``/dataset/xml`` bytes exactly as stored), every acquisition, CLOSE — from a sender
thread, while this thread reads images, TEXT and CLOSE. It stores the images like ``gadgetron_ismrmrd_client``: one
HDF5 group per run (default: the date and time), ``image_<series>`` variables, the header in ``<group>/xml``.

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
from pathlib import Path
from typing import Callable

import h5py
import ismrmrd

from dainr.errors import DainrError, InputError
from dainr.mrd import write_images
from dainr.mrd.acquisitions import AcquisitionTable, header_of
from dainr.stream import protocol

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


def read_raw_stream(path: str | os.PathLike, group: str = "dataset") -> tuple[bytes, list[ismrmrd.Acquisition]]:
    """The header bytes and the acquisitions of a raw file, opened read-only.

    Raises
    ------
    InputError
        One line naming what is wrong with the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found: give the ISMRMRD raw data file (.h5)")
    if not h5py.is_hdf5(str(path)):
        raise InputError(f"{path} is not an HDF5 file: give an ISMRMRD raw data file")
    group = group.strip("/") or "dataset"
    try:
        with h5py.File(str(path), "r") as f:
            grp = f.get(group)
            if not isinstance(grp, h5py.Group) or "xml" not in grp or "data" not in grp:
                raise InputError(f"{path} has no /{group}/xml and /{group}/data: give an ISMRMRD raw data file "
                                 "(or the group that holds it)")
            node = grp["xml"]
            xml = node[()] if node.shape in ((), None) else node[0]
            records = grp["data"][...]
    except OSError as exc:
        raise InputError(f"{path} cannot be read ({exc}): the HDF5 file is corrupt or truncated") from None
    xml = xml.encode("utf-8") if isinstance(xml, str) else bytes(xml)
    try:
        table = AcquisitionTable.from_records(records)
        acqs = [ismrmrd.Acquisition(header_of(table, i), table.samples(i), table.trajectory(i))
                for i in range(len(table))]
    except (ValueError, KeyError) as exc:
        raise InputError(f"{path}: /{group}/data is not a consistent ISMRMRD acquisition table ({exc})") from None
    return xml.rstrip(b"\0"), acqs


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
    header, acqs = read_raw_stream(path, group)
    t0 = time.perf_counter()
    try:
        sock = socket.create_connection((host, port), timeout=min(timeout, 30.0))
    except OSError as exc:
        raise ServerError(f"cannot connect to {host}:{port} ({exc.strerror or exc}): is dainr serve (or "
                          "Gadgetron) running there?") from None
    result = ReplayResult(header_xml=header)
    sender = _Sender(sock, config, config_text, header, acqs, use_serializer)
    reader = protocol.MessageReader(sock, protocol.Limits(idle_timeout_s=timeout), peer="the server")
    allowed = frozenset({protocol.IMAGE, protocol.TEXT, protocol.ERROR, protocol.RESPONSE, protocol.CLOSE})
    errors: list[str] = []
    sender.start()
    last = 0.0
    try:
        while True:
            try:
                msg = reader.read_message(allowed)
            except protocol.PeerClosed as exc:
                raise ServerError(f"the server closed the connection without CLOSE ({exc})") from None
            except protocol.ProtocolError as exc:
                raise ServerError(f"bad reply from the server: {exc}") from None
            if msg.id == protocol.CLOSE:
                break
            if msg.id == protocol.IMAGE:
                result.images.append(msg.value)
                if result.first_image_s is None:
                    result.first_image_s = time.perf_counter() - t0
            elif msg.id == protocol.ERROR or (msg.id == protocol.TEXT and "ERROR" in msg.value.upper()):
                errors.append(" ".join(msg.value.split()))
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


def store_images(path: str | os.PathLike, images: list[ismrmrd.Image], group: str,
                 header_xml: bytes | None = None) -> Path:
    """Write the images as ``<group>/image_<series>``; a new file atomically, an existing one gets a new group.

    Raises
    ------
    InputError
        When the group already exists in the file, or the file is not HDF5.
    """
    path = Path(path)
    if not path.exists():
        return write_images(path, images, group=group, header_xml=header_xml)
    if not h5py.is_hdf5(str(path)):
        raise InputError(f"{path} exists and is not an HDF5 file: choose another output file")
    with h5py.File(str(path), "r") as f:
        if group in f:
            raise InputError(f"{path} already has a group {group!r}: choose another --group")
    shapes: dict[int, tuple] = {}
    for img in images:
        if shapes.setdefault(int(img.image_series_index), img.data.shape) != img.data.shape:
            raise InputError(f"images of series {img.image_series_index} differ in shape")
    dset = ismrmrd.Dataset(str(path), group, True)
    try:
        if header_xml is not None:
            dset.write_xml_header(header_xml)
        for img in images:
            dset.append_image(f"image_{int(img.image_series_index)}", img)
    finally:
        dset.close()
    return path
