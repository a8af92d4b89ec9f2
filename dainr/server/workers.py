"""The server's reconstruction queue: one worker per device, each running a connection's waiting slices as an exam.

Slices from every connection wait in one FIFO queue. Each device has one worker that takes the next slice together
with the slices of the same connection waiting right behind it, and reconstructs them as ``dainr recon`` reconstructs
a file's slices: :func:`dainr.stream.exam.plan_exam` (the same default: as many slices in flight as fit the GPU
memory, at most :data:`~dainr.stream.exam.MAX_DEFAULT_PER_GPU`; one at a time on the CPU; ``concurrent_slices`` and
``batch_slices`` as ``--concurrent-slices`` and ``--batch-slices``) and :func:`dainr.stream.exam.run_exam` (each
slice through :func:`dainr.stream.reconstruct_slice` on a CUDA stream of its own thread, its pixels those it gets
alone). Each slice's future resolves as soon as it and the slices before it are done, so its images leave at once.
Slices of a connection that complete while its group runs wait for the next group.

By default a worker is a child process (``isolate``): a cancelled slice that does not stop within ``cancel_grace_s``
(its optimisation reports progress only every ``dainr.log_every`` steps) has its process killed and restarted, so no
client can keep a device busy after it left; a crash or an out-of-memory kill costs one slice, not the server; and
memory a slice used returns to the system with the process. A worker process is started with the server (and again
at once after a kill), pays the engine's start-up there (:func:`dainr.stream.startup.warm_up`: PyTorch, the engine,
TorchDynamo, the device's CUDA context) and then serves job after job: no connection waits for an interpreter to
start, only the first job of a process for what of that start-up is still under way. :func:`dainr.recon.reconstruct` also seeds PyTorch's
process-global random generators, so two optimisations in one process would disturb each other's initialisation.
In-process workers (threads, ``isolate=False``: one device only) start faster but cannot be stopped between two
progress reports.

A cancelled slice is dropped before it starts, stopped at its next progress report, or (in a child process) killed
after ``cancel_grace_s``. Failures reach the session as :class:`dainr.errors.DainrError` s whose message a client may
read: an unexpected exception becomes :class:`InternalError` (its type only), the details go to the server log.
"""

from __future__ import annotations

import collections
import concurrent.futures
import gc
import logging
import multiprocessing as mp
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from dainr.errors import DainrError, error_line
from dainr.stream.collector import SliceJob
from dainr.stream.pipeline import SliceOutput
from dainr.stream.settings import ReconSettings

log = logging.getLogger(__name__)

#: Seconds a cancelled slice may take to stop before its worker process is killed (and restarted).
CANCEL_GRACE_S = 5.0


class JobCancelled(DainrError):
    """The slice's connection went away (or the server is shutting down) before it finished."""

    def __init__(self, message: str = "the reconstruction was cancelled") -> None:
        super().__init__(message)


class InternalError(DainrError):
    """A reconstruction failed unexpectedly (not a refusal of the data or config). The message names only the kind of
    failure, for the client; the server log has the details."""

    @classmethod
    def of(cls, kind: str) -> InternalError:
        if kind == "MemoryError":
            return cls("the server ran out of memory reconstructing this slice (the server log has the details)")
        return cls(f"internal error in the reconstruction ({kind}); the server log has the details")


class CancelFlag(threading.Event):
    """The cancel of a connection's slices: an event that remembers when it was first set (``set_at``,
    ``time.monotonic()``), so that a worker slow to stop can be told from a stuck one."""

    set_at: float | None = None

    def set(self) -> None:
        if self.set_at is None:
            self.set_at = time.monotonic()
        super().set()


def detached(exc: BaseException) -> BaseException:
    """``exc`` without its traceback and chained exceptions, whose frames would keep a failed slice's data alive
    (until a full garbage collection) wherever the exception is kept."""
    exc.__traceback__ = exc.__context__ = exc.__cause__ = None
    return exc


@dataclass
class QueuedSlice:
    """A slice waiting for (or running on) a device.

    Attributes
    ----------
    job, settings:
        What to reconstruct and how.
    label:
        For logs, e.g. ``conn 3 slice 1``.
    cancel:
        Set to drop or stop the slice.
    future:
        Resolves to a :class:`~dainr.stream.pipeline.SliceOutput` (or raises a :class:`~dainr.errors.DainrError`).
    """

    job: SliceJob
    settings: ReconSettings
    label: str
    cancel: threading.Event
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    submitted: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class ExamOptions:
    """How a worker runs a group of slices: ``dainr recon``'s ``--concurrent-slices`` and ``--batch-slices``
    (:func:`dainr.stream.exam.plan_exam`; None: the CLI's default)."""

    concurrent_slices: int | None = None
    batch_slices: int | None = None


def _run(jobs: Sequence[SliceJob], settings: ReconSettings, device: str, cancel: Any,
         options: ExamOptions) -> Iterator[SliceOutput]:
    """One connection's slices on ``device`` as ``dainr recon`` runs a file's (plan, then the exam); yields each
    slice's output in order. The slices check ``cancel`` at every progress report (``dainr.log_every`` steps)."""
    from dainr.stream.exam import plan_exam, run_exam

    if cancel.is_set():
        raise JobCancelled()

    def progress(i: int, step: int, total: int, message: str) -> None:
        if cancel.is_set():
            raise JobCancelled()

    plan = plan_exam([j.cine for j in jobs], settings.config, device, options.concurrent_slices,
                     options.batch_slices)
    yield from run_exam(jobs, plan, settings, progress=progress)


def _free_cache(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def _outcome(exc: BaseException) -> tuple[str, Any]:
    """How a failure travels (pickled, from a child process): a refusal as itself, anything else as its type name
    and the details for the log."""
    if isinstance(exc, JobCancelled):
        return "cancelled", ""
    if isinstance(exc, DainrError):
        return "refused", detached(exc)
    details = error_line(exc) + "\n" + "".join(traceback.format_exception(exc)).rstrip()
    return "internal", (type(exc).__name__, details)


def _warm_up(device: str) -> float:
    """The engine's start-up for ``device``, before the first job; its seconds. A failure here is met (and reported)
    by that job."""
    from dainr.stream.startup import warm_up

    t0 = time.perf_counter()
    try:
        warm_up(device)
    except Exception:  # noqa: BLE001 - see the docstring
        log.debug("warm-up for %s failed", device, exc_info=True)
    return time.perf_counter() - t0


def _process_main(conn: Any, device: str, cancel: Any, options: ExamOptions) -> None:
    """Body of a worker process: warm up (a job sent meanwhile waits in the pipe) and say so (``("ready",
    seconds)``), then reconstruct the groups of slices the parent sends, one reply per slice (``("ok", output)``, or
    the failure that ends the group), until it sends None."""
    conn.send(("ready", _warm_up(device)))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        jobs, settings = msg
        msg = None
        reply: tuple[str, Any] | None = None
        try:
            for out in _run(jobs, settings, device, cancel, options):
                reply, out = ("ok", out), None
                conn.send(reply)
                reply = None
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
            conn.send(_outcome(exc))
        finally:
            jobs = settings = reply = None
            _free_cache(device)
            gc.collect()  # the failed optimisation's frames and tensors, now rather than at some later collection


def _label(group: Sequence[QueuedSlice]) -> str:
    """``conn 3 (peer) slice 1``, or ``conn 3 (peer) slice 1 (and 2 more)`` for a group."""
    return group[0].label + (f" (and {len(group) - 1} more)" if len(group) > 1 else "")


class SliceQueue:
    """The server's FIFO of slices. A worker takes the first slice waiting together with the slices of the same
    connection (same cancel flag and settings) right behind it: a group it reconstructs as one exam. None in the
    queue stops the worker that takes it."""

    def __init__(self) -> None:
        self._items: collections.deque[QueuedSlice | None] = collections.deque()
        self._ready = threading.Condition()

    def put(self, items: Sequence[QueuedSlice | None]) -> None:
        """Queue ``items`` at once (no worker can take the first without the others)."""
        with self._ready:
            self._items.extend(items)
            self._ready.notify_all()

    def take(self, timeout: float) -> list[QueuedSlice] | None:
        """The next group (None: stop), waiting up to ``timeout`` s for one.

        Raises
        ------
        queue.Empty
            Nothing came within ``timeout``.
        """
        with self._ready:
            if not self._ready.wait_for(lambda: self._items, timeout):
                raise queue.Empty
            first = self._items.popleft()
            if first is None:
                return None
            group = [first]
            while self._items and self._items[0] is not None and self._items[0].cancel is first.cancel \
                    and self._items[0].settings is first.settings:
                group.append(self._items.popleft())
            return group

    def __len__(self) -> int:
        return sum(item is not None for item in self._items)


class _Worker:
    """Serves one device from the shared queue."""

    def __init__(self, pool: WorkerPool, device: str, isolate: bool) -> None:
        self.pool = pool
        self.device = device
        self.isolate = isolate
        #: The group of slices (one connection's) running now; empty when idle.
        self.current: list[QueuedSlice] = []
        self.started: float | None = None
        self.cancelled_at: float | None = None
        self.process = None
        self.conn = None
        #: Worker processes started so far (the first included): each job after the first reuses the process.
        self.spawns = 0
        #: The worker (its current process) has paid the engine's start-up.
        self.ready = False
        self.cancel = mp.get_context("spawn").Event() if isolate else None
        self.thread = threading.Thread(target=self._loop, name=f"dainr-worker-{device}", daemon=True)

    def start(self) -> None:
        if self.isolate:
            self._spawn()
        self.thread.start()

    def _spawn(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=_process_main, args=(child, self.device, self.cancel, self.pool.exam),
                                   name=f"dainr-worker-{self.device}", daemon=True)
        self.process.start()
        self.spawns += 1
        self.ready = False
        child.close()
        self.conn = parent

    def problem(self) -> str | None:
        """Why this worker cannot take a job now (None when it can, or will as soon as its current job ends)."""
        if not self.thread.is_alive():
            return f"the worker for {self.device} has stopped"
        if self.isolate and self.process is not None and not self.process.is_alive() and not self.current:
            return f"the worker process for {self.device} is not running (it is being restarted)"
        item = self.current[0] if self.current else None
        cancelled = getattr(item.cancel, "set_at", None) if item is not None else None
        if cancelled is not None and time.monotonic() - cancelled > self.pool.cancel_grace_s + 2:
            return f"the worker for {self.device} is stuck in a cancelled reconstruction"
        return None

    def _ready(self, seconds: float) -> None:
        self.ready = True
        log.info("the worker for %s is ready (start-up %.2f s)", self.device, seconds)

    def _loop(self) -> None:
        if not self.isolate:
            self._ready(_warm_up(self.device))
        while True:
            try:
                group = self.pool._queue.take(timeout=1.0)
            except queue.Empty:
                self._note_ready()
                self._respawn_if_dead()
                continue
            if group is None:
                break
            self._serve(group)
            group = None  # nothing of a finished slice stays referenced by the worker
        if self.isolate and self.conn is not None:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(2)
            self._kill()

    def _serve(self, group: list[QueuedSlice]) -> None:
        live = []
        for item in group:
            if item.cancel.is_set() or not item.future.set_running_or_notify_cancel():
                if not item.future.done():
                    item.future.set_exception(JobCancelled())
            else:
                live.append(item)
        if not live:
            return
        self.current, self.started, self.cancelled_at = live, time.monotonic(), None
        for item in live:
            log.info("%s: starting on %s (queued %.2f s)", item.label, self.device,
                     time.perf_counter() - item.submitted)
        t0 = time.perf_counter()
        done = 0
        outs = self._run_isolated(live) if self.isolate else self._run_here(live)
        try:
            for item, out in zip(live, outs):
                item.future.set_result(out)
                done += 1
                log.info("%s: done on %s in %.2f s (%s)", item.label, self.device, time.perf_counter() - t0,
                         out.result.method)
                out = None
        except JobCancelled as exc:
            log.info("%s: cancelled on %s after %.2f s", _label(live[done:]), self.device, time.perf_counter() - t0)
            live[done].future.set_exception(detached(exc))
        except DainrError as exc:  # the group's failure (of this slice, or of a later one that stopped it)
            log.warning("%s: failed on %s after %.2f s: %s", _label(live[done:]), self.device,
                        time.perf_counter() - t0, error_line(exc))
            live[done].future.set_exception(detached(exc))
        finally:
            outs.close()
            for item in live[done + 1:]:  # after a failure: the group stopped (its session reports the failure)
                if not item.future.done():
                    item.future.set_exception(JobCancelled())
            self.current, self.started, self.cancelled_at = [], None, None

    def _note_ready(self) -> None:
        """An idle worker process's ``ready`` message, if it came."""
        if self.isolate and self.conn is not None and not self.ready:
            try:
                if self.conn.poll():
                    status, value = self.conn.recv()
                    if status == "ready":
                        self._ready(value)
            except (EOFError, OSError):  # it died: _respawn_if_dead replaces it
                pass

    def _respawn_if_dead(self) -> None:
        """An idle worker process that died (killed from outside, say) is replaced at once, not at the next job."""
        if self.isolate and self.process is not None and not self.process.is_alive() and not self.pool.closed:
            log.warning("the worker process for %s exited while idle (exit code %s); restarting it", self.device,
                        self.process.exitcode)
            self._spawn()

    def _run_here(self, group: list[QueuedSlice]) -> Iterator[SliceOutput]:
        first = group[0]
        try:
            yield from _run([item.job for item in group], first.settings, self.device, first.cancel, self.pool.exam)
        except (JobCancelled, DainrError, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - an internal failure, logged here, typed for the client
            kind, details = _outcome(exc)[1]
            detached(exc)  # its frames (the slices' data) would outlive the group, held by the exam's futures
            log.warning("%s: %s", first.label, details)
            raise InternalError.of(kind) from None
        finally:
            _free_cache(self.device)

    def _kill(self) -> int | None:
        """Stop the worker process now (SIGTERM, then SIGKILL); its exit code."""
        if self.process is None:
            return None
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        return self.process.exitcode

    def _run_isolated(self, group: list[QueuedSlice]) -> Iterator[SliceOutput]:
        """Send the group to the worker process; yield its slices' outputs as their replies come."""
        item = group[0]  # the group's slices share their connection's cancel flag
        self.cancel.clear()
        if self.process is None or not self.process.is_alive():
            self._spawn()
        try:
            self.conn.send(([i.job for i in group], item.settings))
        except (EOFError, OSError):
            raise self._died(item) from None
        for _ in group:
            try:
                status = "ready"
                while status == "ready":  # the process's warm-up may end while this job waits in its pipe
                    while not self.conn.poll(0.1):
                        if item.cancel.is_set():
                            if self.cancelled_at is None:
                                self.cancelled_at = time.monotonic()
                                self.cancel.set()
                            elif time.monotonic() - self.cancelled_at > self.pool.cancel_grace_s:
                                code = self._kill()
                                log.warning("%s: did not stop within %.1f s of being cancelled; its worker process "
                                            "for %s was killed (exit code %s) and is restarted", item.label,
                                            self.pool.cancel_grace_s, self.device, code)
                                self._spawn()
                                raise JobCancelled()
                        if not self.process.is_alive():
                            raise EOFError
                    status, value = self.conn.recv()
                    if status == "ready":
                        self._ready(value)
            except (EOFError, OSError):
                raise self._died(item) from None
            if status == "ok":
                yield value
                value = None
                continue
            if status == "cancelled":
                raise JobCancelled()
            if status == "refused":
                raise value
            kind, details = value
            log.warning("%s: %s", item.label, details)
            raise InternalError.of(kind)

    def _died(self, item: QueuedSlice) -> InternalError:
        """The worker process died under ``item``'s group: restart it; the error its slice gets."""
        code = self._kill()
        self._spawn()
        log.warning("%s: the worker process for %s died (exit code %s); it was restarted", item.label, self.device,
                    code)
        return InternalError(f"the reconstruction process died (exit code {code}; out of memory?); the server log "
                             "has the details")


class WorkerPool:
    """One FIFO queue, one worker per device.

    Parameters
    ----------
    devices:
        Device names, one worker each (``["cuda:0", "cuda:1"]``, ``["cpu"]``; a device may repeat).
    isolate:
        Run workers in child processes (the default; always so with several devices).
    cancel_grace_s:
        Seconds a cancelled slice may take to stop before its worker process is killed.
    exam:
        How a worker runs a group of slices (slices in flight at once, batching); default ``dainr recon``'s.
    """

    def __init__(self, devices: list[str], isolate: bool = True, cancel_grace_s: float = CANCEL_GRACE_S,
                 exam: ExamOptions = ExamOptions()) -> None:
        if not devices:
            raise ValueError("at least one device")
        self.devices = list(devices)
        self.cancel_grace_s = cancel_grace_s
        self.exam = exam
        self._queue = SliceQueue()
        isolate = isolate or len(devices) > 1
        self._workers = [_Worker(self, d, isolate) for d in devices]
        for w in self._workers:
            w.start()
        self.closed = False

    def submit(self, jobs: Sequence[SliceJob], settings: ReconSettings, labels: Sequence[str],
               cancel: threading.Event) -> list[QueuedSlice]:
        """Queue a connection's slices (all at once: one worker takes them together); each ``future`` resolves to
        its slice's images."""
        if self.closed:
            raise DainrError("the server is shutting down; not accepting new reconstructions")
        items = [QueuedSlice(job=job, settings=settings, label=label, cancel=cancel)
                 for job, label in zip(jobs, labels, strict=True)]
        self._queue.put(items)
        return items

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> list[str]:
        return [item.label for w in self._workers for item in w.current]

    def problems(self) -> list[str]:
        """Why a job would not be taken (empty when every worker can take one, or will when its job ends)."""
        found = [p for w in self._workers if (p := w.problem()) is not None]
        return (["the server is shutting down"] if self.closed else []) + found

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the workers once the queue is drained (cancel the slices first to drop them); after ``timeout``
        seconds, kill the worker processes still busy."""
        self.closed = True
        self._queue.put([None] * len(self._workers))
        deadline = time.monotonic() + timeout
        for w in self._workers:
            w.thread.join(max(0.0, deadline - time.monotonic()))
        for w in self._workers:
            if w.thread.is_alive() and w.isolate:
                log.warning("the worker for %s is still busy at the end of the shutdown; killing its process",
                            w.device)
                w._kill()

    @property
    def busy_threads(self) -> list[str]:
        """In-process workers still inside a reconstruction (they cannot be stopped from outside)."""
        return [w.device for w in self._workers if not w.isolate and w.thread.is_alive() and w.current]
