"""The streaming core shared by the Gadgetron gadget (``gadget/``) and the MRD server (``dainr serve``).

ISMRMRD header + acquisitions arriving one by one -> per-slice buffers (complete at ``ACQ_LAST_IN_SLICE`` or the end
of the stream; noise scans kept for prewhitening) -> :func:`dainr.mrd.assemble_series` ->
:func:`dainr.recon.reconstruct` -> :func:`dainr.mrd.to_images` -> images, slice after slice. The CLI, the gadget and the server therefore give the
same pixels for the same data and config.

* :class:`ReconSettings` — config tree + output options, from a preset/YAML/overrides or ``<property>`` items;
* :class:`SliceCollector` — acquisitions -> complete :class:`SliceJob` s;
* :func:`reconstruct_job`, :func:`stream_images` — slices -> ``ismrmrd.Image`` lists;
* :mod:`dainr.stream.protocol` — the MRD/Gadgetron wire format.

The server and its replay client are :mod:`dainr.server`; Gadgetron-only code is ``gadget/``.
"""

from dainr.stream.collector import SliceCollector, SliceJob
from dainr.stream.pipeline import SliceOutput, new_collector, reconstruct_job, stream_images
from dainr.stream.settings import ReconSettings, properties_from_element, properties_from_xml

__all__ = [
    "ReconSettings",
    "SliceCollector",
    "SliceJob",
    "SliceOutput",
    "new_collector",
    "properties_from_element",
    "properties_from_xml",
    "reconstruct_job",
    "stream_images",
]
