"""``dainr serve``: an MRD/Gadgetron streaming server that reconstructs radial cines slice by slice.

Per connection (a thread): read the config message and the header, then the acquisitions; every slice completed
(``ACQ_LAST_IN_SLICE`` or CLOSE) is validated and queued for the devices (:mod:`dainr.server.workers`); a sender
thread streams each slice's images back as soon as it is done, in slice order; after the last slice the server sends
CLOSE. An error (unknown config, refused data, malformed message, failed reconstruction) is answered with one TEXT
line ``ERROR: ...`` and CLOSE; a client that disappears has its queued slices dropped and its running slice
stopped. At most ``max_jobs`` connections are served at once; more get a "busy" error. ``request_shutdown`` (SIGTERM)
stops accepting, lets running connections finish for ``grace_s`` seconds, then cancels and reports the rest.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from dainr.config import DEFAULT_PRESET
from dainr.errors import ConfigError, DainrError, error_line
from dainr.server.config_names import settings_for_name, settings_for_text
from dainr.server.workers import QueuedSlice, WorkerPool
from dainr.stream import protocol
from dainr.stream.pipeline import new_collector
from dainr.stream.settings import ReconSettings

log = logging.getLogger("dainr.serve")


class ShuttingDown(DainrError):
    """The server stopped before this connection's reconstruction finished."""


@dataclass
class ServerOptions:
    """How ``dainr serve`` runs.

    Attributes
    ----------
    host, port:
        Address to listen on (127.0.0.1 by default; port 0 picks a free one).
    devices:
        One worker per entry (``["cuda:0", "cuda:1"]`` or ``["cpu"]``).
    isolate:
        Run workers in child processes even with one device.
    max_jobs:
        Connections served at once; more are refused with a "busy" error.
    default_config:
        Preset or YAML used when the client sends no config, or ``default``/``default.xml``.
    config_dirs:
        Folders with YAML configs and chain XMLs that clients may name.
    limits:
        Message sizes and the idle time-out (:class:`~dainr.stream.protocol.Limits`).
    grace_s:
        On shutdown, how long running connections may take to finish before they are cancelled.
    """

    host: str = "127.0.0.1"
    port: int = 9002
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    isolate: bool = False
    max_jobs: int = 8
    default_config: str = DEFAULT_PRESET
    config_dirs: list[Path] = field(default_factory=list)
    limits: protocol.Limits = field(default_factory=protocol.Limits)
    grace_s: float = 60.0


class _Session:
    """One client connection."""

    def __init__(self, server: ReconServer, sock: socket.socket, peer: str, number: int) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.name = f"conn {number} ({peer})"
        self.reader = protocol.MessageReader(sock, server.options.limits)
        self.cancel = threading.Event()
        self.failure: BaseException | None = None
        self.outbox: queue.Queue[QueuedSlice | None] = queue.Queue()
        self.send_lock = threading.Lock()
        self.sender = threading.Thread(target=self._send_results, name=f"dainr-send-{number}", daemon=True)
        self.queued = 0
        self.images = 0
        self.t0 = time.perf_counter()
        self.first_image: float | None = None

    # -- sending ---------------------------------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(data)

    def _send_results(self) -> None:
        while True:
            item = self.outbox.get()
            if item is None:
                return
            try:
                while True:
                    try:
                        out = item.future.result(timeout=0.5)
                        break
                    except concurrent.futures.TimeoutError:
                        if self.cancel.is_set():
                            item.cancel.set()
            except BaseException as exc:  # noqa: BLE001 - the session reports it
                self._fail(exc)
                return
            if self.cancel.is_set():
                return
            try:
                self._send(b"".join(protocol.frame_item(im) for im in out.images))
            except OSError as exc:
                self._fail(protocol.PeerClosed(f"the client went away while receiving images ({exc})"))
                return
            self.images += len(out.images)
            if self.first_image is None:
                self.first_image = time.perf_counter() - self.t0
            log.info("%s: slice %d sent, %d images, %.2f s after it was complete", self.name,
                     out.job.cine.slice_index, len(out.images), time.perf_counter() - item.submitted)

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self.cancel.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)  # wake the reader

    # -- receiving -------------------------------------------------------------------------------------------------
    def _settings(self, first: protocol.Message) -> ReconSettings:
        opts = self.server.options
        if first.id == protocol.CONFIG_FILE:
            log.info("%s: config %r", self.name, first.value)
            return settings_for_name(first.value, self.server.default_settings, opts.config_dirs)
        if first.id == protocol.CONFIG_TEXT:
            log.info("%s: config text (%d characters)", self.name, len(first.value))
            return settings_for_text(first.value, opts.default_config, opts.config_dirs)
        log.info("%s: no config message; using the default", self.name)
        return self.server.default_settings

    def _submit(self, collector_jobs: list, settings: ReconSettings) -> None:
        for job in collector_jobs:
            label = f"{self.name} slice {job.cine.slice_index}"
            item = self.server.pool.submit(job, settings, label, self.cancel)
            self.queued += 1
            log.info("%s: queued (%d waiting for a device)", label, self.server.pool.waiting)
            self.outbox.put(item)

    def _read_stream(self) -> int:
        first = self.reader.read_message(frozenset({protocol.CONFIG_FILE, protocol.CONFIG_TEXT, protocol.HEADER}))
        log.info("%s: connected", self.name)
        settings = self._settings(first)
        header = first if first.id == protocol.HEADER else self.reader.read_message(frozenset({protocol.HEADER}))
        collector = new_collector(header.value, settings)
        log.info("%s: %s, method %s", self.name, settings.source, settings.config.method)
        self.sender.start()
        allowed = frozenset({protocol.ACQUISITION, protocol.WAVEFORM, protocol.IMAGE, protocol.TEXT, protocol.CLOSE})
        while True:
            msg = self.reader.read_message(allowed)
            if self.failure is not None:
                raise self.failure
            if msg.id == protocol.CLOSE:
                break
            if msg.id == protocol.ACQUISITION:
                self._submit(collector.add(msg.value), settings)
            elif msg.id == protocol.TEXT:
                log.info("%s: text message ignored: %.200s", self.name, msg.value)
        self._submit(collector.finish(), settings)
        return collector.acquisitions

    def run(self) -> None:
        acquisitions = 0
        try:
            acquisitions = self._read_stream()
            self.outbox.put(None)
            self.sender.join()
            if self.failure is not None:
                raise self.failure
            self._send(protocol.frame_close())
            log.info("%s: done: %d acquisitions, %d slice(s), %d images in %.2f s (first images after %s)", self.name,
                     acquisitions, self.queued, self.images, time.perf_counter() - self.t0,
                     f"{self.first_image:.2f} s" if self.first_image is not None else "-")
        except BaseException as exc:  # noqa: BLE001 - every failure is reported and cleaned up
            self._abort(self.failure or exc)
        finally:
            self._close()

    def _abort(self, exc: BaseException) -> None:
        self.cancel.set()
        self.outbox.put(None)
        if self.sender.is_alive():
            self.sender.join()
        if isinstance(exc, protocol.PeerClosed) and not exc.truncated and not self.server.stopping:
            if self.reader.bytes_read == 0:
                log.debug("%s: closed without sending anything (a health check?)", self.name)
            else:
                log.warning("%s: %s; cancelled its %d queued slice(s)", self.name, exc, self.queued)
            return
        text = error_line(exc)
        if not isinstance(exc, DainrError):
            log.debug("%s: traceback", self.name, exc_info=exc)
        log.warning("%s: error: %s", self.name, text)
        with contextlib.suppress(OSError):
            self._send(protocol.frame_text(protocol.error_line(text)) + protocol.frame_close())

    def _close(self) -> None:
        """Half-close, let the client read the reply (draining what it still sends, briefly), then close."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 5.0
        with contextlib.suppress(OSError):
            self.sock.settimeout(0.5)
            while time.monotonic() < deadline:
                try:
                    if not self.sock.recv(1 << 16):
                        break
                except socket.timeout:
                    continue
        self.sock.close()


class ReconServer:
    """The server: a listening socket, a worker pool and one :class:`_Session` thread per client.

    Parameters
    ----------
    options:
        How to run; the default config is loaded (and checked) at once.
    """

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        try:
            self.default_settings = ReconSettings.from_properties({"preset": options.default_config})
        except ConfigError as exc:
            raise ConfigError(f"--default-config: {exc}") from None
        for d in options.config_dirs:
            if not Path(d).is_dir():
                raise ConfigError(f"--config-dir {d} is not a folder")
        self.pool = WorkerPool(options.devices, options.isolate)
        self.stopping = False
        self._in_progress: list[_Session] = []
        self._listener: socket.socket | None = None
        self._sessions: dict[int, tuple[threading.Thread, _Session]] = {}
        self._lock = threading.Lock()
        self._count = itertools.count(1)
        self._stopped = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound."""
        assert self._listener is not None
        return self._listener.getsockname()[:2]

    def bind(self) -> None:
        """Open the listening socket (port 0: a free one)."""
        family = socket.AF_INET6 if ":" in self.options.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.options.host, self.options.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {self.options.host}:{self.options.port} ({exc.strerror})") \
                from None
        sock.listen(64)
        sock.settimeout(0.5)
        self._listener = sock
        log.info("listening on %s:%d, devices %s, at most %d jobs", *self.address, ", ".join(self.options.devices),
                 self.options.max_jobs)

    def serve_forever(self) -> None:
        """Accept clients until :meth:`request_shutdown`, then shut down gracefully."""
        if self._listener is None:
            self.bind()
        try:
            while not self.stopping:
                try:
                    sock, addr = self._listener.accept()
                except socket.timeout:
                    continue
                except OSError:
                    if self.stopping:
                        break
                    raise
                self._admit(sock, f"{addr[0]}:{addr[1]}")
        finally:
            self._shutdown()

    def _admit(self, sock: socket.socket, peer: str) -> None:
        number = next(self._count)
        with self._lock:
            self._reap()
            busy = len(self._sessions) >= self.options.max_jobs
        session = _Session(self, sock, peer, number)
        if busy:
            log.warning("%s: refused, %d jobs in progress", session.name, self.options.max_jobs)
            thread = threading.Thread(target=self._refuse, args=(session,), daemon=True)
            thread.start()
            return
        thread = threading.Thread(target=session.run, name=f"dainr-conn-{number}", daemon=True)
        with self._lock:
            self._sessions[number] = (thread, session)
        thread.start()

    @staticmethod
    def _refuse(session: _Session) -> None:
        with contextlib.suppress(OSError):
            session._send(protocol.frame_text(protocol.error_line(
                f"server busy: {session.server.options.max_jobs} jobs in progress (--max-jobs); retry later"))
                + protocol.frame_close())
        session._close()

    def _reap(self) -> None:
        for k in [k for k, (t, _) in self._sessions.items() if not t.is_alive()]:
            del self._sessions[k]

    def request_shutdown(self) -> None:
        """Stop accepting; running connections get ``grace_s`` seconds (safe from a signal handler: no locks)."""
        if not self.stopping:
            self._in_progress = [s for t, s in list(self._sessions.values()) if t.is_alive()]
            log.info("shutdown requested; %d connection(s) in progress", len(self._in_progress))
        self.stopping = True

    def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            self._reap()
            running = list(self._sessions.values())
        if running:
            log.info("waiting up to %.0f s for %d connection(s) to finish", self.options.grace_s, len(running))
        start = time.monotonic()
        while any(t.is_alive() for t, _ in running) and time.monotonic() - start < self.options.grace_s:
            time.sleep(0.1)  # grace_s may drop to 0 on a second signal
        late = [s for t, s in running if t.is_alive()]
        for s in late:
            s._fail(ShuttingDown("the server is shutting down; the reconstruction was cancelled"))
        for thread, _ in running:
            thread.join(10)
        self.pool.shutdown()
        in_progress = {id(s): s for s in self._in_progress + [s for _, s in running]}
        log.info("stopped: %d connection(s) finished during shutdown, %d cancelled", len(in_progress) - len(late),
                 len(late))
        self._stopped.set()

    @contextlib.contextmanager
    def running(self) -> Iterator[ReconServer]:
        """Serve in a background thread (tests, embedding); shut down on exit."""
        self.bind()
        thread = threading.Thread(target=self.serve_forever, name="dainr-serve", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.request_shutdown()
            thread.join(self.options.grace_s + 30)
