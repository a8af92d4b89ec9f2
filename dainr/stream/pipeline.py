"""Header + acquisitions in, ``ismrmrd.Image`` lists out, one list per slice as each slice finishes.

This is the shared core of the streaming front ends (Gadgetron gadget, MRD server). Each complete slice goes through
the same :func:`dainr.recon.reconstruct` and :func:`dainr.mrd.to_images` as ``dainr recon``, with the same config, so
the pixels and headers are the CLI's.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import ismrmrd

from dainr.data import ReconResult
from dainr.mrd import Binning, TrajectoryOverride, to_images
from dainr.mrd.acquisitions import AcquisitionLike
from dainr.stream.collector import SliceCollector, SliceJob
from dainr.stream.settings import ReconSettings

log = logging.getLogger(__name__)

#: progress(step, total, message), as :func:`dainr.recon.reconstruct` calls it.
Progress = Callable[[int, int, str], None]


@dataclass
class SliceOutput:
    """The images of one reconstructed slice.

    Attributes
    ----------
    job:
        The slice that was reconstructed.
    images:
        One ``ismrmrd.Image`` per frame, in frame order.
    result:
        The engine's result (method, seconds, iterations, info).
    """

    job: SliceJob
    images: list[ismrmrd.Image]
    result: ReconResult


def new_collector(header_xml: bytes, settings: ReconSettings) -> SliceCollector:
    """A :class:`SliceCollector` for one stream (checks the header at once); trajectory rules and binning come from
    the config exactly as ``dainr recon`` takes them."""
    cfg = settings.config
    return SliceCollector(header_xml, TrajectoryOverride.from_config(cfg.trajectory), Binning.from_config(cfg.binning))


def reconstruct_job(job: SliceJob, settings: ReconSettings, progress: Progress | None = None,
                    device: str | None = None) -> SliceOutput:
    """Reconstruct one slice and turn it into images.

    Parameters
    ----------
    job:
        A complete slice from :class:`SliceCollector`.
    settings:
        The validated settings.
    progress:
        Optional ``(step, total, message)`` callback; raising from it aborts the reconstruction.
    device:
        Run on this device instead of ``settings.config.device`` (server workers own their device).
    """
    from dainr.recon import reconstruct

    config = settings.config if device is None else dataclasses.replace(settings.config, device=device)
    result = reconstruct(job.cine, config, progress=progress)
    images = to_images(job.cine, result.images, series_index=settings.series_index,
                       complex_output=settings.complex_output, image_index_start=job.image_index_start)
    return SliceOutput(job=job, images=images, result=result)


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
            yield _timed(job, settings, progress)
    for job in collector.finish():
        yield _timed(job, settings, progress)


def _timed(job: SliceJob, settings: ReconSettings, progress: Progress | None) -> SliceOutput:
    t0 = time.perf_counter()
    out = reconstruct_job(job, settings, progress)
    log.info("slice %d: %d images (%s, %.2f s)", job.cine.slice_index, len(out.images), out.result.method,
             time.perf_counter() - t0)
    return out
