"""The server's reconstruction queue: ``per_device`` workers per device, each running one slice at a time.

Slices from every connection wait in one FIFO queue. Each worker takes the next slice, runs
:func:`dainr.stream.reconstruct_slice` on its device (which holds the cross-process GPU lock of
:mod:`dainr.stream.device_lock`, shared by the server's own slices) and resolves the slice's future. Workers are
threads of the server: several slices, of one multi-slice stream or of concurrent streams, fit at once on each GPU
(each on its own CUDA stream) and spread over the GPUs, each with the pixels it gets alone
(:mod:`dainr.recon.concurrent`), as ``dainr recon --concurrent-slices`` does (:mod:`dainr.stream.exam`). With
``isolate=True`` each device's worker is a child process instead (one slice per device at a time). A cancelled slice
is dropped before it starts, or stopped at its next progress report.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dainr.errors import DainrError, error_line
from dainr.stream.collector import SliceJob
from dainr.stream.exam import MAX_DEFAULT_PER_GPU
from dainr.stream.pipeline import SliceOutput, reconstruct_slice
from dainr.stream.settings import ReconSettings

log = logging.getLogger(__name__)


class JobCancelled(DainrError):
    """The slice's connection went away (or the server is shutting down) before it finished."""

    def __init__(self, message: str = "the reconstruction was cancelled") -> None:
        super().__init__(message)


class WorkerError(DainrError):
    """A worker process died, or its reconstruction failed unexpectedly (the message is that failure's
    :func:`~dainr.errors.error_line`)."""


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
        Resolves to a :class:`~dainr.stream.pipeline.SliceOutput` (or raises).
    """

    job: SliceJob
    settings: ReconSettings
    label: str
    cancel: threading.Event
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    submitted: float = field(default_factory=time.perf_counter)


def _check(cancel: Any):
    def progress(step: int, total: int, message: str) -> None:
        if cancel.is_set():
            raise JobCancelled()

    return progress


def _run(job: SliceJob, settings: ReconSettings, device: str, cancel: Any) -> SliceOutput:
    if cancel.is_set():
        raise JobCancelled()
    return reconstruct_slice(job, settings, progress=_check(cancel), device=device)


def _free_cache(device: str) -> None:
    if device.startswith("cuda"):
        from dainr.recon.concurrent import empty_cache

        empty_cache()


def _process_main(conn: Any, device: str, cancel: Any) -> None:
    """Body of a worker process: reconstruct what the parent sends until it sends None."""
    while True:
        msg = conn.recv()
        if msg is None:
            return
        job, settings = msg
        try:
            conn.send(("ok", _run(job, settings, device, cancel)))
        except JobCancelled:
            conn.send(("cancelled", ""))
        except DainrError as exc:
            conn.send(("dainr", exc))
        except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
            conn.send(("error", error_line(exc)))
        finally:
            _free_cache(device)


class _Worker:
    """Serves one device from the shared queue."""

    def __init__(self, pool: WorkerPool, device: str, isolate: bool) -> None:
        self.pool = pool
        self.device = device
        self.isolate = isolate
        self.current: QueuedSlice | None = None
        self.process = None
        self.conn = None
        self.cancel = mp.get_context("spawn").Event() if isolate else None
        self.thread = threading.Thread(target=self._loop, name=f"dainr-worker-{device}", daemon=True)

    def start(self) -> None:
        if self.isolate:
            self._spawn()
        self.thread.start()

    def _spawn(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=_process_main, args=(child, self.device, self.cancel),
                                   name=f"dainr-worker-{self.device}", daemon=True)
        self.process.start()
        child.close()
        self.conn = parent

    def _loop(self) -> None:
        while True:
            item = self.pool._queue.get()
            if item is None:
                break
            if item.cancel.is_set() or not item.future.set_running_or_notify_cancel():
                if not item.future.done():
                    item.future.set_exception(JobCancelled())
                continue
            self.current = item
            waited = time.perf_counter() - item.submitted
            log.info("%s: starting on %s (queued %.2f s)", item.label, self.device, waited)
            t0 = time.perf_counter()
            try:
                out = self._run_isolated(item) if self.isolate else self._run_here(item)
                item.future.set_result(out)
                log.info("%s: done on %s in %.2f s (%s)", item.label, self.device, time.perf_counter() - t0,
                         out.result.method)
            except BaseException as exc:  # noqa: BLE001 - every failure resolves the future
                item.future.set_exception(exc)
                level = logging.INFO if isinstance(exc, JobCancelled) else logging.WARNING
                log.log(level, "%s: %s on %s after %.2f s", item.label,
                        "cancelled" if isinstance(exc, JobCancelled) else f"failed ({exc})", self.device,
                        time.perf_counter() - t0)
            finally:
                self.current = None
        if self.isolate and self.conn is not None:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(10)
            if self.process.is_alive():
                self.process.terminate()

    def _run_here(self, item: QueuedSlice) -> SliceOutput:
        try:
            return _run(item.job, item.settings, self.device, item.cancel)
        finally:
            _free_cache(self.device)

    def _run_isolated(self, item: QueuedSlice) -> SliceOutput:
        self.cancel.clear()
        if self.process is None or not self.process.is_alive():
            self._spawn()
        try:
            self.conn.send((item.job, item.settings))
            while not self.conn.poll(0.2):
                if item.cancel.is_set():
                    self.cancel.set()
                if not self.process.is_alive():
                    raise EOFError
            status, value = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(1)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(5)
            code = self.process.exitcode
            self._spawn()
            raise WorkerError(f"the worker process for {self.device} died (exit code {code}); it was restarted") \
                from None
        if status == "cancelled":
            raise JobCancelled()
        if status == "dainr":
            raise value
        if status == "error":
            raise WorkerError(value)
        return value


class WorkerPool:
    """One FIFO queue, ``per_device`` workers per device.

    Parameters
    ----------
    devices:
        Device names (``["cuda:0", "cuda:1"]``, ``["cpu"]``; a device may repeat).
    isolate:
        Run each device's worker in a child process (then one slice per device at a time).
    per_device:
        Slices in flight per device (threads); default :data:`dainr.stream.exam.MAX_DEFAULT_PER_GPU` on a GPU, 1 on
        the CPU. A slice that does not fit beside the others in flight runs with fewer frames per step (a warning).
    """

    def __init__(self, devices: list[str], isolate: bool = False, per_device: int | None = None) -> None:
        if not devices:
            raise ValueError("at least one device")
        if per_device is not None and per_device < 1:
            raise ValueError(f"per_device must be >= 1, got {per_device}")
        self.devices = list(devices)
        self._queue: queue.Queue[QueuedSlice | None] = queue.Queue()
        counts = {d: 1 if isolate else per_device or (MAX_DEFAULT_PER_GPU if d.startswith("cuda") else 1)
                  for d in devices}
        # Interleaved over the devices, so the first slices spread over all of them.
        self._workers = [_Worker(self, d, isolate) for k in range(max(counts.values())) for d in devices
                         if k < counts[d]]
        for w in self._workers:
            w.start()
        self.closed = False

    def submit(self, job: SliceJob, settings: ReconSettings, label: str, cancel: threading.Event) -> QueuedSlice:
        """Queue one slice; its ``future`` resolves to the slice's images."""
        if self.closed:
            raise DainrError("the server is shutting down; not accepting new reconstructions")
        item = QueuedSlice(job=job, settings=settings, label=label, cancel=cancel)
        self._queue.put(item)
        return item

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    @property
    def running(self) -> list[str]:
        return [w.current.label for w in self._workers if w.current is not None]

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the workers once the queue is drained (cancel the slices first to drop them)."""
        self.closed = True
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for w in self._workers:
            w.thread.join(max(0.0, deadline - time.monotonic()))
