"""``dainr serve``: an MRD/Gadgetron streaming server that reconstructs radial cines slice by slice.

Per connection (a thread): read the config message and the header, then the acquisitions; every slice completed
(``ACQ_LAST_IN_SLICE`` or CLOSE) is validated and queued for the devices (:mod:`dainr.server.workers`: a connection's
waiting slices run together as ``dainr recon`` runs a file's, several in flight on a GPU); a sender
thread streams each slice's images back as soon as it is done, in slice order; after the last slice the server sends
CLOSE. An error (unknown config, refused data, malformed message, failed reconstruction) is answered with one TEXT
line ``ERROR: ...`` and CLOSE, in the client's terms (the server log has the details).

What a client can hold, and for how long (:class:`ServerOptions`):

* a connection: at most ``max_connections`` at once (more are refused at once, without a thread); it lasts at most
  ``connection_timeout_s`` from connect to the server's CLOSE, reconstruction included;
* a job slot, from its config (or header) to the server's CLOSE: at most ``max_jobs`` (more get "busy"); the slot is
  free again before the client sees CLOSE, so a client that reconnects at once finds it;
* the stream: silent at most ``limits.idle_timeout_s`` at a time, all of it within ``limits.stream_timeout_s``;
* its reconstruction: after CLOSE the session watches the socket, and a client that closes it (or half-closes it:
  there is no telling the two apart before the images are sent) has its slices dropped or stopped.

A health probe sends QUERY ``dainr::health`` (:mod:`dainr.server.health`) and gets ``ok`` when every worker can take
a job, without taking a slot. ``request_shutdown`` (SIGTERM) stops accepting, lets running connections finish for
``grace_s`` seconds, then cancels the rest; the server is gone within ``grace_s + cancel_grace_s + 2`` seconds.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import queue
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from dainr.config import DEFAULT_PRESET
from dainr.errors import ConfigError, DainrError, error_line
from dainr.server.config_names import DEFAULT_MAX_STEPS, ConfigSources, OperatorConfigError
from dainr.server.workers import (CANCEL_GRACE_S, CancelFlag, ExamOptions, JobCancelled, QueuedSlice, WorkerPool,
                                  detached)
from dainr.stream import protocol
from dainr.stream.pipeline import new_collector
from dainr.stream.settings import ReconSettings

log = logging.getLogger("dainr.serve")

class ShuttingDown(DainrError):
    """The server stopped before this connection's reconstruction finished."""


class ServerBusy(DainrError):
    """Every job slot (or connection) is taken."""


class ConnectionTimedOut(DainrError):
    """The connection outlived the server's time limit per connection."""


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
        Run workers in child processes (the default; always so with several devices); False runs one in a thread,
        which cannot be stopped between two progress reports of the optimisation.
    max_jobs:
        Job slots: connections that have sent a config or header and not yet got their CLOSE. More get "busy".
    max_connections:
        Open connections (health probes and clients not yet started included); more are refused at once. None:
        ``4 × max_jobs``.
    default_config:
        Preset or YAML used when the client sends no config, or ``default``/``default.xml``.
    config_dirs:
        The operator's folders of YAML configs and chain XMLs that clients may name.
    max_steps:
        Most ``dainr.steps`` a client's config text may ask for (:data:`~dainr.server.config_names.CLIENT_KEYS`).
    limits:
        Message sizes, the idle time-out and the stream deadline (:class:`~dainr.stream.protocol.Limits`).
    connection_timeout_s:
        Longest a connection may last, reconstruction included (None: no limit).
    cancel_grace_s:
        Seconds a cancelled reconstruction may take to stop before its worker process is killed.
    grace_s:
        On shutdown, how long running connections may take to finish before they are cancelled.
    exam:
        How a connection's waiting slices run together (``--concurrent-slices``, ``--batch-slices``; default
        ``dainr recon``'s: :mod:`dainr.server.workers`).
    """

    host: str = "127.0.0.1"
    port: int = 9002
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    isolate: bool = True
    max_jobs: int = 8
    max_connections: int | None = None
    default_config: str = DEFAULT_PRESET
    config_dirs: list[Path] = field(default_factory=list)
    max_steps: int = DEFAULT_MAX_STEPS
    limits: protocol.Limits = field(default_factory=protocol.Limits)
    connection_timeout_s: float | None = 3600.0
    cancel_grace_s: float = CANCEL_GRACE_S
    grace_s: float = 60.0
    exam: ExamOptions = field(default_factory=ExamOptions)

    @property
    def connections(self) -> int:
        return self.max_connections or 4 * self.max_jobs


def client_text(exc: BaseException) -> str:
    """What a client is told about ``exc``: a refusal in its own terms, never the server's files, paths or
    internals (those go to the server log)."""
    if isinstance(exc, OperatorConfigError):
        return exc.client_text
    if isinstance(exc, DainrError):
        return error_line(exc)
    if isinstance(exc, MemoryError):
        return "the server ran out of memory for this request (the server log has the details)"
    return f"internal error in the server ({type(exc).__name__}); the server log has the details"


class _Closer:
    """Closes sockets gracefully, all from one thread: half-close, read (and drop) what the peer still sends for up
    to ``linger_s`` so that it gets our last message rather than a reset, then close. At most ``capacity`` at once;
    beyond that a socket is closed at once."""

    def __init__(self, linger_s: float = 2.0, capacity: int = 256) -> None:
        self.linger_s = linger_s
        self.capacity = capacity
        self._lock = threading.Lock()
        self._pending: list[socket.socket] = []
        self._count = 0
        self._stopped = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._loop, name="dainr-closer", daemon=True)
        self._thread.start()

    def close(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        with self._lock:
            if self._stopped or self._count >= self.capacity:
                sock.close()
                return
            self._count += 1
            self._pending.append(sock)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        lingering: dict[socket.socket, float] = {}

        def done(s: socket.socket) -> None:
            sel.unregister(s)
            s.close()
            del lingering[s]
            with self._lock:
                self._count -= 1

        while True:
            for key, _ in sel.select(0.25):
                s = key.fileobj
                if s is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                try:
                    data = s.recv(1 << 16, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    done(s)
            with self._lock:
                pending, self._pending = self._pending, []
                stopped = self._stopped
            for s in pending:
                lingering[s] = time.monotonic() + self.linger_s
                sel.register(s, selectors.EVENT_READ)
            now = time.monotonic()
            for s in [s for s, t in lingering.items() if stopped or t < now]:
                done(s)
            if stopped:
                sel.close()
                return

    def stop(self) -> None:
        """Close every socket still lingering."""
        with self._lock:
            self._stopped = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(5)
        self._wake_r.close()
        self._wake_w.close()


class _Session:
    """One client connection."""

    def __init__(self, server: ReconServer, sock: socket.socket, peer: str, number: int) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.number = number
        self.name = f"conn {number} ({peer})"
        opts = server.options
        sock.settimeout(opts.limits.idle_timeout_s)  # for sending: a client that stops reading
        self.reader = protocol.MessageReader(sock, opts.limits)
        self.t0 = time.perf_counter()
        self.deadline: float | None = None
        if opts.connection_timeout_s is not None:
            self.deadline = time.monotonic() + opts.connection_timeout_s
            self.reader.set_deadline(self.deadline, f"did not finish within the server's limit of "
                                                    f"{opts.connection_timeout_s:g} s per connection")
        self.cancel = CancelFlag()
        self.failure: BaseException | None = None
        self.slot = False
        self.outbox: queue.Queue[QueuedSlice | None] = queue.Queue()
        self.send_lock = threading.Lock()
        self.sender = threading.Thread(target=self._send_results, name=f"dainr-send-{number}", daemon=True)
        self.queued = 0
        self.images = 0
        self.first_image: float | None = None

    # -- sending ---------------------------------------------------------------------------------------------------
    def _send(self, data: bytes, unless_cancelled: bool = False) -> bool:
        """Send ``data`` whole; with ``unless_cancelled``, not at all once the session is cancelled (its error reply
        is then the last thing the client gets)."""
        with self.send_lock:
            if unless_cancelled and self.cancel.is_set():
                return False
            self.sock.sendall(data)
            return True

    def _send_results(self) -> None:
        while True:
            item = self.outbox.get()
            if item is None:
                return
            try:
                out = self._result(item)
            except BaseException as exc:  # noqa: BLE001 - the session reports it
                self._fail(exc)
                return
            finally:
                item = None
            if out is None:
                return
            try:
                if not self._send(b"".join(protocol.frame_item(im) for im in out.images), unless_cancelled=True):
                    return
            except OSError as exc:
                self._fail(protocol.PeerClosed(f"the client went away while receiving images ({exc})"))
                return
            self.images += len(out.images)
            if self.first_image is None:
                self.first_image = time.perf_counter() - self.t0
            log.info("%s: slice %d sent, %d images, %.3f s after its reconstruction ended", self.name,
                     out.job.cine.slice_index, len(out.images), time.time() - out.reconstructed_at)
            out = None

    def _result(self, item: QueuedSlice):
        """The slice's output; None when this session was cancelled meanwhile (its failure says why)."""
        while True:
            try:
                return item.future.result(timeout=0.25)
            except concurrent.futures.TimeoutError:
                continue
            except JobCancelled:
                if self.cancel.is_set():
                    return None
                raise

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = detached(exc)
        self.cancel.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)  # wake the reader

    # -- receiving -------------------------------------------------------------------------------------------------
    def _settings(self, first: protocol.Message) -> ReconSettings:
        configs = self.server.configs
        if first.id == protocol.CONFIG_FILE:
            log.info("%s: config %r", self.name, first.value)
            return configs.for_name(first.value)
        if first.id == protocol.CONFIG_TEXT:
            log.info("%s: config text (%d characters)", self.name, len(first.value))
            return configs.for_text(first.value)
        log.info("%s: no config message; using the default", self.name)
        return configs.default

    def _submit(self, jobs: list, settings: ReconSettings) -> None:
        if not jobs:
            return
        labels = [f"{self.name} slice {job.cine.slice_index}" for job in jobs]
        for item in self.server.pool.submit(jobs, settings, labels, self.cancel):
            self.queued += 1
            log.info("%s: queued (%d waiting for a device)", item.label, self.server.pool.waiting)
            self.outbox.put(item)

    def _first_message(self) -> protocol.Message:
        """The first message that is not a QUERY (queries are answered as they come)."""
        allowed = frozenset({protocol.CONFIG_FILE, protocol.CONFIG_TEXT, protocol.HEADER, protocol.QUERY,
                             protocol.CLOSE})
        while True:
            msg = self.reader.read_message(allowed)
            if msg.id != protocol.QUERY:
                return msg
            correlation, text = msg.value
            self._send(protocol.frame_response(correlation, self.server.answer(text)))

    def _serve(self) -> int:
        first = self._first_message()
        if first.id == protocol.CLOSE:
            self._send(protocol.frame_close())
            return 0
        if self.server.stopping:
            raise ShuttingDown("the server is shutting down; retry later (or on another server)")
        self.slot = self.server._take_slot()
        if not self.slot:
            raise ServerBusy(f"server busy: {self.server.options.max_jobs} jobs in progress (--max-jobs); retry later")
        log.info("%s: connected", self.name)
        settings = self._settings(first)
        header = first if first.id == protocol.HEADER else self.reader.read_message(frozenset({protocol.HEADER}))
        collector = new_collector(header.value, settings)
        log.info("%s: %s, method %s", self.name, settings.source, settings.config.method)
        self.sender.start()
        allowed = frozenset({protocol.ACQUISITION, protocol.WAVEFORM, protocol.TEXT, protocol.CLOSE})
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
        acquisitions = collector.acquisitions
        collector = None
        self.outbox.put(None)
        self._watch_until_sent()
        if self.failure is not None:
            raise self.failure
        self._release()  # before the client sees CLOSE: a client that reconnects at once finds the slot free
        self._send(protocol.frame_close())
        return acquisitions

    def _watch_until_sent(self) -> None:
        """Wait for the images while watching the socket: a client that closes it (or sends anything after CLOSE),
        or the connection's deadline, cancels what is left. A cancelled session does not wait for its slices to
        stop: the workers drop them, or stop them at their next progress report (or kill them), by themselves."""
        while self.sender.is_alive():
            self.sender.join(0.1)
            if self.cancel.is_set():
                return
            if self.deadline is not None and time.monotonic() > self.deadline:
                self._fail(ConnectionTimedOut(
                    f"the connection reached the server's limit of {self.server.options.connection_timeout_s:g} s "
                    "(dainr serve --max-time); its reconstruction was cancelled"))
                continue
            try:
                data = self.sock.recv(4096, socket.MSG_DONTWAIT) if self.reader.wait_readable(0) else None
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self._fail(protocol.PeerClosed("the client closed the connection before its images were sent"))
            elif data:
                self._fail(protocol.ProtocolError("the client sent data after CLOSE"))

    def run(self) -> None:
        acquisitions = 0
        try:
            acquisitions = self._serve()
            if self.slot or acquisitions:
                log.info("%s: done: %d acquisitions, %d slice(s), %d images in %.2f s (first images after %s)",
                         self.name, acquisitions, self.queued, self.images, time.perf_counter() - self.t0,
                         f"{self.first_image:.2f} s" if self.first_image is not None else "-")
        except BaseException as exc:  # noqa: BLE001 - every failure is reported and cleaned up
            self._abort(self.failure or exc)
            detached(exc)
        finally:
            self._release()
            self.failure = None
            self.server._closer.close(self.sock)
            self.server._forget(self.number)

    def _release(self) -> None:
        if self.slot:
            self.slot = False
            self.server._free_slot()

    def _abort(self, exc: BaseException) -> None:
        # The sender ends by itself once its slice stops (it sends nothing after the cancel); no need to wait.
        self.cancel.set()
        self.outbox.put(None)
        if isinstance(exc, protocol.PeerClosed) and not exc.truncated and not self.server.stopping:
            if self.reader.bytes_read == 0:
                log.debug("%s: closed without sending anything (a health check?)", self.name)
            else:
                log.warning("%s: %s; cancelled its %d slice(s)", self.name, exc, self.queued)
            return
        if isinstance(exc, protocol.TimedOut):
            log.warning("%s: dropped: %s", self.name, exc)
        elif isinstance(exc, (DainrError, MemoryError)):
            log.warning("%s: error: %s", self.name, error_line(exc))
        else:
            log.error("%s: internal error: %s", self.name, error_line(exc), exc_info=exc)
        self._release()
        with contextlib.suppress(OSError):
            self._send(protocol.frame_text(protocol.error_line(client_text(exc))) + protocol.frame_close())


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
            default = ReconSettings.from_properties({"preset": options.default_config})
        except ConfigError as exc:
            raise ConfigError(f"--default-config: {exc}") from None
        for d in options.config_dirs:
            if not Path(d).is_dir():
                raise ConfigError(f"--config-dir {d} is not a folder")
        self.configs = ConfigSources(default, options.default_config, tuple(Path(d) for d in options.config_dirs),
                                     options.max_steps)
        self.pool = WorkerPool(options.devices, options.isolate, options.cancel_grace_s, options.exam)
        self.stopping = False
        self._in_progress: list[_Session] = []
        self._listener: socket.socket | None = None
        self._sessions: dict[int, tuple[threading.Thread, _Session]] = {}
        self._jobs = 0
        self._lock = threading.Lock()
        self._count = itertools.count(1)
        self._closer = _Closer()
        self._stopped = threading.Event()

    @property
    def default_settings(self) -> ReconSettings:
        return self.configs.default

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound."""
        assert self._listener is not None
        return self._listener.getsockname()[:2]

    @property
    def sessions(self) -> int:
        """Connections open now."""
        with self._lock:
            return len(self._sessions)

    @property
    def jobs(self) -> int:
        """Job slots taken now."""
        with self._lock:
            return self._jobs

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
        log.info("listening on %s:%d, devices %s, at most %d jobs and %d connections", *self.address,
                 ", ".join(self.options.devices), self.options.max_jobs, self.options.connections)

    def answer(self, query: str) -> str:
        """The RESPONSE to a QUERY."""
        if query.strip() != protocol.HEALTH_QUERY:
            raise protocol.ProtocolError(f"unknown query {query.strip()[:100]!r}: this server answers "
                                         f"{protocol.HEALTH_QUERY!r}")
        problems = self.pool.problems() + (["the server is shutting down"] if self.stopping else [])
        return "ok" if not problems else "unhealthy: " + "; ".join(dict.fromkeys(problems))

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
                except OSError as exc:
                    if self.stopping:
                        break
                    log.warning("accept failed (%s); still listening", exc)  # e.g. out of file descriptors
                    time.sleep(0.1)
                    continue
                try:
                    self._admit(sock, f"{addr[0]}:{addr[1]}")
                except Exception as exc:  # noqa: BLE001 - one client's trouble must not stop the listener
                    log.error("refusing a connection from %s:%s: %s", addr[0], addr[1], error_line(exc))
                    self._refuse(sock, "the server cannot take this connection now; retry later")
        finally:
            self._shutdown()

    def _admit(self, sock: socket.socket, peer: str) -> None:
        number = next(self._count)
        with self._lock:
            full = len(self._sessions) >= self.options.connections
        if full:
            log.warning("conn %d (%s): refused, %d connections open (--max-connections)", number, peer,
                        self.options.connections)
            self._refuse(sock, f"server busy: {self.options.connections} connections open; retry later")
            return
        session = _Session(self, sock, peer, number)
        thread = threading.Thread(target=session.run, name=f"dainr-conn-{number}", daemon=True)
        with self._lock:
            self._sessions[number] = (thread, session)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": refuse this one, keep listening
            self._forget(number)
            log.error("%s: refused, cannot start its thread (%s)", session.name, exc)
            self._refuse(sock, "the server cannot take this connection now; retry later")

    def _refuse(self, sock: socket.socket, text: str) -> None:
        """Answer ``ERROR: text`` and CLOSE without waiting (the reply fits the socket's buffer), then close."""
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            sock.send(protocol.frame_text(protocol.error_line(text)) + protocol.frame_close())
        self._closer.close(sock)

    def _take_slot(self) -> bool:
        with self._lock:
            if self._jobs >= self.options.max_jobs or self.stopping:
                return False
            self._jobs += 1
            return True

    def _free_slot(self) -> None:
        with self._lock:
            self._jobs -= 1

    def _forget(self, number: int) -> None:
        with self._lock:
            self._sessions.pop(number, None)

    def request_shutdown(self) -> None:
        """Stop accepting; running connections get ``grace_s`` seconds (safe from a signal handler: no locks)."""
        if not self.stopping:
            self._in_progress = [s for _, s in list(self._sessions.values())]
            log.info("shutdown requested; %d connection(s) in progress", len(self._in_progress))
        self.stopping = True

    def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            running = list(self._sessions.values())
        if running:
            log.info("waiting up to %.0f s for %d connection(s) to finish", self.options.grace_s, len(running))
        start = time.monotonic()
        while any(t.is_alive() for t, _ in running) and time.monotonic() - start < self.options.grace_s:
            time.sleep(0.1)  # grace_s may drop to 0 on a second signal
        late = [s for t, s in running if t.is_alive()]
        for s in late:
            s._fail(ShuttingDown("the server is shutting down; the reconstruction was cancelled"))
        # Cancelled slices stop at their next progress report, or their worker process is killed after the cancel
        # grace: a hard limit, whatever the reconstruction does.
        hard = time.monotonic() + self.options.cancel_grace_s + 2.0
        for thread, _ in running:
            thread.join(max(0.0, hard - time.monotonic()))
        self.pool.shutdown(max(0.0, hard - time.monotonic()))
        self._closer.stop()
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
            thread.join(self.options.grace_s + self.options.cancel_grace_s + 10)
