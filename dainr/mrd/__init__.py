"""The ISMRMRD adapter: files, headers, acquisitions and images.

Raw data in (files, Gadgetron, MRD socket) become :class:`~dainr.data.CineData` per slice; reconstructed cines go
out as ``ismrmrd.Image`` objects with headers copied from the acquisitions. All conversion between ISMRMRD and the
engine's types happens here. Besides this package, only code that carries ismrmrd objects over a socket imports
``ismrmrd``: the MRD wire format (:mod:`dainr.stream.protocol`), the replay client (:mod:`dainr.server.replay`, for
ismrmrd's own ``ProtocolSerializer``) and the Gadgetron gadget (``gadget/``); the engine, the settings and the
per-slice path do not (``tests/mrd/test_adapter_boundary.py``).

* :func:`build_header` — an ISMRMRD header for a radial cine;
* :func:`write_raw` / :func:`read_raw` — ISMRMRD raw HDF5 files; :func:`read_acquisitions` — a raw file's header
  bytes and acquisitions as stored, to stream them;
* :func:`assemble_series` — acquisitions received one by one (Gadgetron, MRD server) into a :class:`RawSeries`;
* :class:`Binning` — real-time streams (no phase index) binned into frames at reconstruction time;
* :func:`to_images`, :func:`write_images`, :func:`read_images` — output images, numbered by
  :func:`image_index_start`.

Input checks follow ``shared/design/INPUT_POLICY.md``; every refusal is a one-line :class:`dainr.errors.InputError`.
"""

from dainr.mrd.acquisitions import AcquisitionTable
from dainr.mrd.header import EncodingInfo, build_header, encoding_info, header_to_xml, parse_header, without_version
from dainr.mrd.images import image_index_start, read_images, to_images, write_images
from dainr.mrd.raw_reader import read_acquisitions, read_raw
from dainr.mrd.raw_writer import write_raw
from dainr.mrd.series import Binning, RawSeries, TrajectoryOverride, assemble_series

__all__ = [
    "AcquisitionTable",
    "Binning",
    "EncodingInfo",
    "RawSeries",
    "TrajectoryOverride",
    "assemble_series",
    "build_header",
    "encoding_info",
    "header_to_xml",
    "image_index_start",
    "parse_header",
    "read_acquisitions",
    "read_images",
    "read_raw",
    "to_images",
    "write_images",
    "without_version",
    "write_raw",
]
