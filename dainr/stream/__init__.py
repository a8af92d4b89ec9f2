"""The core shared by the front ends (``dainr recon``, the Gadgetron gadget in ``gadget/``, the MRD server in
:mod:`dainr.server`): settings, the one per-slice path, slice collection from a stream, the MRD wire format.

A whole file (:func:`dainr.mrd.read_raw`, then :func:`slice_jobs`) or ISMRMRD acquisitions arriving one by one
(:class:`SliceCollector`: per-slice buffers, complete at ``ACQ_LAST_IN_SLICE`` or the end of the stream; noise scans
kept for prewhitening) give numbered slices; :func:`reconstruct_slice` turns each into images
(:func:`dainr.recon.reconstruct`, then :func:`dainr.mrd.to_images`). Every front end goes this way, so they give the
same pixels and headers for the same data and config.

* :class:`ReconSettings` — config tree + output options, from a preset/YAML/overrides or ``<property>`` items;
* :func:`slice_jobs`, :class:`SliceCollector` — a series or a stream -> numbered :class:`SliceJob` s;
* :func:`reconstruct_slice` — one slice -> :class:`SliceOutput` (its ``ismrmrd.Image`` s); :func:`stream_images`
  over a whole stream; :func:`reconstruct_slices` — several slices with their DA-INR fits batched;
* :mod:`dainr.stream.device_lock` — one reconstruction per GPU at a time, across processes;
* :mod:`dainr.stream.protocol` — the MRD/Gadgetron wire format.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dainr.stream.collector import SliceCollector, SliceJob, slice_jobs
    from dainr.stream.pipeline import (SliceOutput, new_collector, reconstruct_slice, reconstruct_slices,
                                       stream_images)
    from dainr.stream.settings import ReconSettings, properties_from_element, properties_from_xml

#: Where each name lives. They are imported on first use, so that the light modules (the wire format, the
#: settings) can be imported without the engine and PyTorch (``python -m dainr.server.health`` does).
_EXPORTS = {
    "ReconSettings": "settings", "properties_from_element": "settings", "properties_from_xml": "settings",
    "SliceCollector": "collector", "SliceJob": "collector", "slice_jobs": "collector",
    "SliceOutput": "pipeline", "new_collector": "pipeline", "reconstruct_slice": "pipeline",
    "reconstruct_slices": "pipeline", "stream_images": "pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dainr.stream' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dainr.stream.{_EXPORTS[name]}"), name)
