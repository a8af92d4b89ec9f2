"""A whole exam in one process: several slices in flight on each device, spread over one or several devices.

One 128² slice leaves a GPU mostly idle (thousands of tiny kernels a step), and its CPU-side preparation leaves it
idle altogether. :func:`run_exam` therefore runs ``per_device`` slices at once on every device, each slice in a
thread of its own that drives a CUDA stream of its own (:func:`~dainr.stream.pipeline.reconstruct_slice`): the
kernels of several slices share the GPU, and one slice's reading of its data, preparation and image building overlap
the others' fitting. The slices wait in one queue in exam order and each free thread takes the next, so slices spread
over several devices as the devices free up. Each slice's images are those it gets alone on any device of the same
kind (:mod:`dainr.recon.concurrent`), and they come back in exam order.

:func:`plan_exam` decides the devices, each slice's config (fitted to the device memory, as one slice alone would
be) and how many slices run at once per device: as many as the memory plan (:mod:`dainr.recon.budget`) fits, at
most :data:`MAX_DEFAULT_PER_GPU`, or the number asked for when it fits; one on the CPU unless asked.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from dainr.config import Config
from dainr.data import CineData
from dainr.errors import ConfigError, DainrError
from dainr.stream.collector import SliceJob
from dainr.stream.pipeline import SliceOutput, reconstruct_slice
from dainr.stream.settings import ReconSettings

log = logging.getLogger(__name__)

#: Slices in flight per GPU when none is asked for (fewer when the memory plan fits fewer). Each thread also runs its
#: slice's Python loop under the GIL (validation renders are eager), which bounds the useful number.
MAX_DEFAULT_PER_GPU = 6

#: progress(slice position in the exam, step, total, message)
ExamProgress = Callable[[int, int, int, str], None]


class ExamStopped(DainrError):
    """A slice was stopped because the exam ended early (another slice failed, or the caller stopped reading)."""


@dataclass(frozen=True)
class ExamPlan:
    """How an exam runs.

    Attributes
    ----------
    devices:
        One entry per device (``("cuda:0", "cuda:1")``; ``("cpu",)``; ``cpu`` may repeat: several CPU workers).
    per_device:
        Slices in flight on each device at once.
    configs:
        Each slice's config, in exam order: the requested one, with fewer ``dainr.frames_per_step`` where a slice
        alone does not fit the smallest device's memory.
    free_bytes:
        Free memory of the device with the least, when the plan was made; None on the CPU.
    slice_bytes:
        Predicted peak memory of the largest slice (:func:`dainr.recon.budget.estimate_memory`); None on the CPU.
    """

    devices: tuple[str, ...]
    per_device: int
    configs: tuple[Config, ...]
    free_bytes: int | None = None
    slice_bytes: int | None = None

    @property
    def slots(self) -> int:
        """Slices in flight at once over all devices."""
        return len(self.devices) * self.per_device


def _slice_bytes(cine: CineData, config: Config) -> int:
    from dainr.recon.budget import SeriesShape, estimate_memory

    coils = min(config.prep.virtual_coils, cine.n_coils) if config.prep.virtual_coils else None
    return estimate_memory(SeriesShape.of(cine, coils), config).total


def plan_exam(cines: Sequence[CineData], config: Config, devices: str | None = None,
              per_device: int | None = None) -> ExamPlan:
    """Plan the reconstruction of ``cines`` (in exam order) before any optimisation starts (INPUT_POLICY.md §9).

    Parameters
    ----------
    cines:
        The slices, raw (not yet prepared).
    config:
        The validated config.
    devices:
        A device spec (:func:`dainr.recon.device.resolve_devices`: ``auto``, ``cpu``, ``cuda`` = every GPU,
        ``cuda:0,1``, ``cpu,cpu``); default ``config.device``.
    per_device:
        Slices in flight per device; default: as many as fit the memory, at most :data:`MAX_DEFAULT_PER_GPU`, on a
        GPU, and 1 on the CPU. A number larger than fits is lowered to what fits (a warning).

    Raises
    ------
    ConfigError
        A bad device spec or ``per_device`` below 1.
    ResourceError
        A slice that does not fit even alone at one frame per step.
    """
    import torch

    from dainr.recon.budget import USABLE_FRACTION, device_free_bytes, fit_to_device
    from dainr.recon.device import resolve_devices

    if per_device is not None and per_device < 1:
        raise ConfigError(f"--concurrent-slices must be >= 1, got {per_device}")
    names = resolve_devices(devices or config.device)
    free = [device_free_bytes(torch.device(d)) for d in names]
    least = None if None in free else min(free)
    configs = tuple(fit_to_device(cine, config, torch.device(names[0]), free_bytes=least) for cine in cines)
    slice_bytes = None
    if least is None:
        n = per_device or 1
    else:
        slice_bytes = max((_slice_bytes(c, cfg) for c, cfg in zip(cines, configs)), default=0)
        fits = max(1, int(least * USABLE_FRACTION) // max(slice_bytes, 1))
        n = min(per_device or MAX_DEFAULT_PER_GPU, fits)
        if per_device is not None and per_device > fits:
            log.warning("--concurrent-slices %d: only %d slice(s) of this exam fit the GPU memory at once; running %d",
                        per_device, fits, fits)
    n = max(1, min(n, math.ceil(len(cines) / len(names)) if cines else 1))
    return ExamPlan(devices=tuple(names), per_device=n, configs=configs, free_bytes=least, slice_bytes=slice_bytes)


def run_exam(jobs: Sequence[SliceJob], plan: ExamPlan, settings: ReconSettings,
             progress: ExamProgress | None = None) -> Iterator[SliceOutput]:
    """Reconstruct ``jobs`` as ``plan`` says; yields each slice's :class:`SliceOutput` in exam order, each as soon as
    it and every slice before it are done.

    A failed slice stops the exam: the slices still queued never start, the running ones stop at their next
    progress report, and the failure is raised when its turn comes (the earlier slices are yielded first). Closing
    the iterator early (or an exception in the caller, e.g. Ctrl-C) stops the exam the same way.

    Parameters
    ----------
    jobs:
        The slices, in exam order (``len(plan.configs)`` of them).
    plan:
        From :func:`plan_exam` for these slices.
    settings:
        Output options; each slice runs with ``plan.configs[i]`` on the device its thread serves.
    progress:
        ``progress(i, step, total, message)`` from the slice threads (the caller synchronises its drawing).
    """
    if len(jobs) != len(plan.configs):
        raise ValueError(f"{len(jobs)} jobs but a plan for {len(plan.configs)} slices")
    futures = [concurrent.futures.Future() for _ in jobs]
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(jobs)):
        todo.put(i)
    stop = threading.Event()

    def report(i: int) -> Callable[[int, int, str], None]:
        def slice_progress(step: int, total: int, message: str) -> None:
            if stop.is_set():
                raise ExamStopped("stopped: the exam ended before this slice finished")
            if progress is not None:
                progress(i, step, total, message)

        return slice_progress

    def serve(device: str) -> None:
        while not stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            if not futures[i].set_running_or_notify_cancel():
                continue
            try:
                out = reconstruct_slice(jobs[i], dataclasses.replace(settings, config=plan.configs[i]),
                                        progress=report(i), device=device)
            except BaseException as exc:  # noqa: BLE001 - the consumer raises it in exam order
                futures[i].set_exception(exc)
                stop.set()  # after recording the failure: a slice stopped by it finds it recorded
            else:
                futures[i].set_result(out)

    # Interleaved over devices, so the first slices spread over all of them.
    slots = [d for _ in range(plan.per_device) for d in plan.devices]
    threads = [threading.Thread(target=serve, args=(d,), name=f"dainr-exam-{k}-{d}", daemon=True)
               for k, d in enumerate(slots)]
    for t in threads:
        t.start()
    try:
        for fut in futures:
            try:
                yield fut.result()
            except ExamStopped:  # stopped because a later slice failed: that failure is the exam's
                raise next(f.exception() for f in futures
                           if f.done() and not f.cancelled() and f.exception() is not None
                           and not isinstance(f.exception(), ExamStopped)) from None
    finally:
        stop.set()
        for f in futures:
            f.cancel()
        for t in threads:
            t.join()
