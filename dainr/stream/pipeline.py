"""The one per-slice path of every front end: a collected slice -> :func:`dainr.recon.reconstruct` -> numbered images.

``dainr recon`` (:func:`dainr.stream.slice_jobs` over the file), the Gadgetron gadget and the MRD server
(:class:`~dainr.stream.SliceCollector` over the stream) all turn each slice into images with
:func:`reconstruct_slice`, with the same config, so their pixels and headers are the same.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from dainr.config import Config
from dainr.data import ReconResult
from dainr.errors import ResourceError
from dainr.mrd import Binning, TrajectoryOverride, to_images
from dainr.mrd.images import JACOBIAN_SERIES_OFFSET, MOTION_SERIES_OFFSET, to_map_images
from dainr.mrd.acquisitions import AcquisitionLike
from dainr.stream.collector import SliceCollector, SliceJob
from dainr.stream.device_lock import gpu_lock
from dainr.stream.settings import ReconSettings

if TYPE_CHECKING:
    import ismrmrd

log = logging.getLogger(__name__)

#: progress(step, total, message), as :func:`dainr.recon.reconstruct` calls it.
Progress = Callable[[int, int, str], None]


@dataclass
class SliceOutput:
    """One reconstructed slice; its images are built on first use.

    Attributes
    ----------
    job:
        The slice that was reconstructed.
    result:
        The engine's result (``images`` ``(frames, H, W)`` complex64, method, seconds, iterations, info).
    settings:
        The output options its images follow (series index, magnitude or complex, rendering).
    reconstructed_at:
        When the engine returned the slice (``time.time()`` s): the images' latency is counted from there.
    images:
        One ``ismrmrd.Image`` per frame, in frame order (then the motion series', :func:`slice_images`), built when
        first read. A server worker process sends the output pickled without them (``ismrmrd.Image`` does not pickle
        on every ismrmrd-python release) and the receiving process builds them, away from the worker's threads that
        are still fitting other slices.
    """

    job: SliceJob
    result: ReconResult
    settings: ReconSettings
    reconstructed_at: float = 0.0

    @functools.cached_property
    def images(self) -> list[ismrmrd.Image]:
        return slice_images(self.job, self.result, self.settings)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "images"}


def host_memory_available() -> int | None:
    """Bytes this process may still allocate: ``MemAvailable`` of ``/proc/meminfo``, lowered to what is left under the
    cgroup's ``memory.max`` (a container's limit) where there is one; None where neither can be read."""
    free: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            room = int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
            free = room if free is None else min(free, room)
    except (OSError, ValueError):
        pass
    return free


def check_host_memory(job: SliceJob, config: Config) -> None:
    """On the CPU, refuse a slice whose estimated memory exceeds what the machine has available, before anything is
    allocated (INPUT_POLICY.md rule 9; on a GPU the engine plans its own memory, :mod:`dainr.recon.budget`).

    Raises
    ------
    ResourceError
        One line: the estimate, what is available, and what to lower.
    """
    from dainr.recon.budget import SeriesShape, estimate_memory
    from dainr.recon.device import resolve_device

    if resolve_device(config.device).type != "cpu":
        return
    free = host_memory_available()
    if free is None:
        return
    cine = job.cine
    coils = min(config.prep.virtual_coils, cine.n_coils) if config.prep.virtual_coils else None
    need = estimate_memory(SeriesShape.of(cine, coils), config).total
    if need > free:
        raise ResourceError(f"slice {cine.slice_index} needs about {need / 2**30:.1f} GiB of memory for "
                            f"{config.method} on the CPU, more than the {free / 2**30:.1f} GiB available: use fewer "
                            "coils (prep.virtual_coils=8), a smaller grid (dainr.grid.log2_table_size), fewer frames "
                            "per step (dainr.frames_per_step), or a machine with more memory")


def new_collector(header_xml: bytes, settings: ReconSettings) -> SliceCollector:
    """A :class:`SliceCollector` for one stream (checks the header at once); trajectory rules and binning come from
    the config exactly as ``dainr recon`` takes them."""
    cfg = settings.config
    return SliceCollector(header_xml, TrajectoryOverride.from_config(cfg.trajectory), Binning.from_config(cfg.binning))


def reconstruct_slice(job: SliceJob, settings: ReconSettings, progress: Progress | None = None,
                      device: str | None = None, keep_model: bool = False,
                      init_state: dict | None = None) -> SliceOutput:
    """Reconstruct one slice and turn it into its numbered images: the per-slice path of every front end.

    The engine runs holding the device's GPU lock (:func:`dainr.stream.device_lock.gpu_lock`; none on a CPU), so
    reconstructions of several processes on one GPU queue instead of competing for its memory. On a CPU the slice's
    estimated memory is checked first (:func:`check_host_memory`).
    Slices of one process share the lock. Several threads may call this at once (:mod:`dainr.stream.exam`, the server's workers): on a GPU each
    thread's slices run on a CUDA stream of that thread (:func:`dainr.recon.concurrent.own_stream`), so they share
    the GPU, and each slice's pixels are those it gets alone.

    Parameters
    ----------
    job:
        A complete slice and its numbering (:func:`dainr.stream.slice_jobs`, :class:`SliceCollector`).
    settings:
        The validated config and output options (series index, magnitude or complex).
    progress:
        Optional ``(step, total, message)`` callback; raising from it aborts the reconstruction.
    device:
        Run on this device instead of ``settings.config.device`` (server workers own their device).
    keep_model, init_state:
        DA-INR: keep the fitted model in ``result.fitted`` (``dainr recon --save-model``), start from these weights
        (``--warm-start``); see :func:`dainr.recon.reconstruct`.

    Returns
    -------
    :class:`SliceOutput` with one image per frame, ``image_index`` from ``job.image_index_start``, followed by the
    motion series' images when ``settings.render`` asks for them (:func:`slice_images`); the seconds spent waiting for the GPU lock
    are ``result.info["wait_seconds"]``.
    """
    from dainr.recon import reconstruct
    from dainr.recon.concurrent import own_stream

    config = settings.config if device is None else dataclasses.replace(settings.config, device=device)
    check_host_memory(job, config)
    with gpu_lock(config.device) as waited, own_stream(config.device):
        if waited > 1.0:
            log.info("slice %d: waited %.1f s for the GPU", job.cine.slice_index, waited)
        result = reconstruct(job.cine, config, progress=progress, keep_model=keep_model,
                             render=settings.render if settings.render.needs_model else None, init_state=init_state)
    done = time.time()
    result.info["wait_seconds"] = round(waited, 3)
    return SliceOutput(job=job, result=result, settings=settings, reconstructed_at=done)


def reconstruct_slices(jobs: Sequence[SliceJob], settings: ReconSettings,
                       progress: Sequence[Progress | None] | None = None,
                       device: str | None = None) -> list[SliceOutput]:
    """:func:`reconstruct_slice` of several slices with one config, their DA-INR fits batched
    (:func:`dainr.recon.reconstruct_batch`: the slices of one shape share each optimisation step); one GPU lock and
    one CUDA stream for all of them. Each slice's images are those it gets alone (bit for bit on the CPU, to float
    tolerance on a GPU); ``result.seconds`` is the wall time of the whole batch.

    Parameters
    ----------
    jobs:
        Complete slices and their numbering.
    settings, device:
        As :func:`reconstruct_slice`, for every slice.
    progress:
        One optional ``(step, total, message)`` callback per slice; raising from one aborts the batch.
    """
    from dainr.recon import reconstruct_batch
    from dainr.recon.concurrent import own_stream

    config = settings.config if device is None else dataclasses.replace(settings.config, device=device)
    for job in jobs:
        check_host_memory(job, config)
    with gpu_lock(config.device) as waited, own_stream(config.device):
        if waited > 1.0:
            log.info("slices %s: waited %.1f s for the GPU", [j.cine.slice_index for j in jobs], waited)
        results = reconstruct_batch([j.cine for j in jobs], config, progress=progress,
                                    render=settings.render if settings.render.needs_model else None)
    outs = []
    for job, result in zip(jobs, results):
        result.info["wait_seconds"] = round(waited, 3)
        outs.append(SliceOutput(job=job, result=result, settings=settings))
    return outs


def slice_images(job: SliceJob, result: ReconResult, settings: ReconSettings) -> list[ismrmrd.Image]:
    """The images of a reconstructed slice: the cine (series ``settings.series_index``), then the displacement and
    the Jacobian determinant when present (series + :data:`~dainr.mrd.images.MOTION_SERIES_OFFSET` and
    + :data:`~dainr.mrd.images.JACOBIAN_SERIES_OFFSET`), all numbered alike.

    A cine rendered at ``N`` frames instead of the acquired ``F`` is numbered as a slice of ``N`` frames
    (:func:`dainr.mrd.image_index_start`), so the slices of a stack still get disjoint ``image_index`` ranges.
    """
    cine, n = job.cine, result.images.shape[0]
    start = job.image_index_start
    if n != cine.n_frames:  # the slice's place in the stack, (start − 1) / F, times N frames
        start = 1 + (start - 1) // max(cine.n_frames, 1) * n
    where = dict(image_index_start=start, frame_positions=result.frame_positions)
    images = to_images(cine, result.images, series_index=settings.series_index,
                       complex_output=settings.complex_output, method=result.method, **where)
    if result.motion is not None:
        images += to_map_images(cine, result.motion, settings.series_index + MOTION_SERIES_OFFSET, **where)
    if result.jacobian is not None:
        images += to_map_images(cine, result.jacobian, settings.series_index + JACOBIAN_SERIES_OFFSET, **where)
    return images


def stream_images(header_xml: bytes, acquisitions: Iterable[AcquisitionLike], settings: ReconSettings,
                  progress: Progress | None = None) -> Iterator[SliceOutput]:
    """Reconstruct a stream slice by slice, yielding each slice's images as soon as it is done.

    Raises
    ------
    dainr.errors.DainrError
        Refused input or config (one-line message).
    """
    collector = new_collector(header_xml, settings)
    for acq in acquisitions:
        for job in collector.add(acq):
            yield reconstruct_slice(job, settings, progress)
    for job in collector.finish():
        yield reconstruct_slice(job, settings, progress)
