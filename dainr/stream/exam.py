"""A whole exam in one process: several slices in flight on each device, spread over one or several devices.

One 128² slice leaves a GPU mostly idle (thousands of tiny kernels a step), and its CPU-side preparation leaves it
idle altogether. :func:`run_exam` therefore fits slices of the same shape and settings together, up to
``plan.batch`` in one batched optimisation step (:mod:`dainr.recon.batched_fit`: one kernel for all of them), and
runs ``per_device`` such fits (batches, or slices alone) at once on every device, each in a thread of its own that
drives a CUDA stream of its own (:func:`~dainr.stream.pipeline.reconstruct_slices`,
:func:`~dainr.stream.pipeline.reconstruct_slice`): the kernels of several fits share the GPU, and one fit's reading
of its data, preparation and image building overlap the others' fitting. The batches wait in one queue in exam order
and each free thread takes the next, so they spread over several devices as the devices free up. A slice fitted alone
gets the images it gets alone on any device of the same kind (:mod:`dainr.recon.concurrent`); a batched slice gets
them bit for bit on the CPU and to float tolerance on a GPU (``--batch-slices 1`` fits every slice alone). The
images come back in exam order.

:func:`plan_exam` decides the devices, each slice's config (fitted to the device memory, as one slice alone would
be), the batch size and how many fits run at once per device: as many as the memory plan
(:mod:`dainr.recon.budget`) fits, at most :data:`MAX_DEFAULT_BATCH` slices a batch and :data:`MAX_DEFAULT_PER_GPU`
fits at once, or the numbers asked for when they fit; one slice at a time on the CPU unless asked.
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
from dainr.stream.pipeline import SliceOutput, reconstruct_slice, reconstruct_slices
from dainr.stream.settings import ReconSettings

log = logging.getLogger(__name__)

#: Slices in flight per GPU when none is asked for (fewer when the memory plan fits fewer). Each thread also runs its
#: slice's Python loop under the GIL (validation renders are eager), which bounds the useful number.
MAX_DEFAULT_PER_GPU = 6

#: Slices fitted together in one batched step (:mod:`dainr.recon.batched_fit`) when none is asked for. 1: batching is
#: opt-in (``--batch-slices N``): on an H200 the vmapped step of 4, 6 and 12 slices took 11.8, 9.8 and 7.9 ms per
#: slice and step against 5.5 ms for one slice's captured step (benchmarks/RESULTS.md, issue 16), so slices alone on
#: their own streams are the faster default.
MAX_DEFAULT_BATCH = 1

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
        Fits in flight on each device at once (each a slice alone, or a batch of up to ``batch`` slices).
    configs:
        Each slice's config, in exam order: the requested one, with fewer ``dainr.frames_per_step`` where a slice
        alone does not fit the smallest device's memory.
    free_bytes:
        Free memory of the device with the least, when the plan was made; None on the CPU.
    slice_bytes:
        Predicted peak memory of the largest slice (:func:`dainr.recon.budget.estimate_memory`); None on the CPU.
    batch:
        Slices fitted together in one batched step at most (:func:`batches`); 1: every slice alone.
    """

    devices: tuple[str, ...]
    per_device: int
    configs: tuple[Config, ...]
    free_bytes: int | None = None
    slice_bytes: int | None = None
    batch: int = 1

    @property
    def slots(self) -> int:
        """Fits in flight at once over all devices."""
        return len(self.devices) * self.per_device


def batches(cines: Sequence[CineData], configs: Sequence[Config], size: int) -> list[list[int]]:
    """The exam's slices (positions) grouped into batches of at most ``size`` that can share a batched DA-INR step:
    the same method ``dainr``, the same config and the same data shape (frames, coils, spokes, samples, matrix). A
    batch is filled in exam order and ordered by its first slice; a slice that matches no other is a batch of one
    (it runs alone). Whether the prepared slices really agree is checked again before fitting
    (:func:`dainr.recon.batched_fit.batch_key`)."""
    out: list[list[int]] = []
    open_: dict[tuple, list[int]] = {}
    for i, (cine, cfg) in enumerate(zip(cines, configs)):
        if size <= 1 or cfg.method != "dainr":
            out.append([i])
            continue
        key = (repr(cfg), cine.kspace.shape, tuple(cine.matrix))
        group = open_.get(key)
        if group is None or len(group) >= size:
            group = open_[key] = []
            out.append(group)
        group.append(i)
    return out


def _slice_bytes(cine: CineData, config: Config) -> int:
    from dainr.recon.budget import SeriesShape, estimate_memory

    coils = min(config.prep.virtual_coils, cine.n_coils) if config.prep.virtual_coils else None
    return estimate_memory(SeriesShape.of(cine, coils), config).total


def check_slice_options(per_device: int | None, batch_slices: int | None) -> None:
    """``--concurrent-slices`` and ``--batch-slices`` as :func:`plan_exam` takes them (None = the default).

    Raises
    ------
    ConfigError
        Either below 1.
    """
    for flag, value in (("--concurrent-slices", per_device), ("--batch-slices", batch_slices)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")


def plan_exam(cines: Sequence[CineData], config: Config, devices: str | None = None,
              per_device: int | None = None, batch_slices: int | None = None) -> ExamPlan:
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
        Fits (slices alone or batches) in flight per device; default: as many as fit the memory, at most
        :data:`MAX_DEFAULT_PER_GPU`, on a GPU, and 1 on the CPU. A number larger than fits is lowered to what fits
        (a warning).
    batch_slices:
        Slices fitted together in one batched step at most; default :data:`MAX_DEFAULT_BATCH` (1) on a GPU (at most
        as many as fit the memory and an even share of the slices per device), and 1 on the CPU. A number
        larger than fits is lowered to what fits (a warning). The memory of a batch is its slices' memory.

    Raises
    ------
    ConfigError
        A bad device spec, or ``per_device`` or ``batch_slices`` below 1.
    ResourceError
        A slice that does not fit even alone at one frame per step.
    """
    import torch

    from dainr.recon.budget import USABLE_FRACTION, device_free_bytes, fit_to_device
    from dainr.recon.device import resolve_devices

    check_slice_options(per_device, batch_slices)
    names = resolve_devices(devices or config.device)
    free = [device_free_bytes(torch.device(d)) for d in names]
    least = None if None in free else min(free)
    configs = tuple(fit_to_device(cine, config, torch.device(names[0]), free_bytes=least) for cine in cines)
    share = math.ceil(len(cines) / len(names)) if cines else 1  # slices per device
    slice_bytes = None
    if least is None:
        batch = min(batch_slices or 1, share)
        n = per_device or 1
    else:
        slice_bytes = max((_slice_bytes(c, cfg) for c, cfg in zip(cines, configs)), default=0)
        fits = max(1, int(least * USABLE_FRACTION) // max(slice_bytes, 1))  # slices at once in the memory
        batch = min(batch_slices or MAX_DEFAULT_BATCH, fits, share)
        if batch_slices is not None and batch_slices > fits:
            log.warning("--batch-slices %d: only %d slice(s) of this exam fit the GPU memory at once; batching %d",
                        batch_slices, fits, fits)
        fits //= max(batch, 1)  # batches at once
        n = min(per_device or MAX_DEFAULT_PER_GPU, fits)
        if per_device is not None and per_device > fits:
            log.warning("--concurrent-slices %d: only %d %s of this exam fit the GPU memory at once; running %d",
                        per_device, fits, "slice(s)" if batch == 1 else f"batch(es) of {batch} slices", fits)
    batch = max(1, batch)
    units = len(batches(cines, configs, batch)) if cines else 1
    n = max(1, min(n, math.ceil(units / len(names))))
    return ExamPlan(devices=tuple(names), per_device=n, configs=configs, free_bytes=least, slice_bytes=slice_bytes,
                    batch=batch)


def run_exam(jobs: Sequence[SliceJob], plan: ExamPlan, settings: ReconSettings,
             progress: ExamProgress | None = None) -> Iterator[SliceOutput]:
    """Reconstruct ``jobs`` as ``plan`` says; yields each slice's :class:`SliceOutput` in exam order, each as soon as
    it and every slice before it are done.

    The slices are fitted in the batches of :func:`batches` (``plan.batch`` slices at most; a batch of one runs
    :func:`~dainr.stream.pipeline.reconstruct_slice`, a larger one
    :func:`~dainr.stream.pipeline.reconstruct_slices`); each free thread takes the next batch.

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
    todo: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
    for unit in batches([j.cine for j in jobs], plan.configs, plan.batch):
        todo.put(unit)
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
                unit = todo.get_nowait()
            except queue.Empty:
                return
            unit = [i for i in unit if futures[i].set_running_or_notify_cancel()]
            if not unit:
                continue
            try:
                unit_settings = dataclasses.replace(settings, config=plan.configs[unit[0]])
                if len(unit) == 1:
                    outs = [reconstruct_slice(jobs[unit[0]], unit_settings, progress=report(unit[0]), device=device)]
                else:
                    outs = reconstruct_slices([jobs[i] for i in unit], unit_settings,
                                              progress=[report(i) for i in unit], device=device)
            except BaseException as exc:  # noqa: BLE001 - the consumer raises it in exam order
                for i in unit:
                    futures[i].set_exception(exc)
                stop.set()  # after recording the failure: a slice stopped by it finds it recorded
            else:
                for i, out in zip(unit, outs):
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
