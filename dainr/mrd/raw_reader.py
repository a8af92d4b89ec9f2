"""Reading an ISMRMRD raw HDF5 file into a :class:`~dainr.mrd.series.RawSeries` (or, for streaming it to a server,
into its header bytes and acquisitions).

The file is opened read-only and checked step by step (INPUT_POLICY.md §1): path, HDF5, groups, header, then the
acquisition table, which is read in one call (not one HDF5 row per acquisition) and assembled by
:func:`dainr.mrd.series.assemble_table`, the same code the streaming front ends use.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, TypeVar

import h5py
import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np

from dainr.errors import InputError, one_line
from dainr.mrd.acquisitions import AcquisitionTable
from dainr.mrd.hdf5_lock import hdf5_locked
from dainr.mrd.header import EncodingInfo, encoding_info, parse_header
from dainr.mrd.series import Binning, RawSeries, TrajectoryOverride, assemble_table, first_slice

log = logging.getLogger(__name__)

_ACQ_FIELDS = {"head", "traj", "data"}

T = TypeVar("T")


def _open(path: Path) -> h5py.File:
    if not os.path.lexists(path):
        raise InputError(f"{path}: file not found: check the path to the ISMRMRD raw data file")
    if path.is_dir():
        raise InputError(f"{path} is a directory: give the ISMRMRD raw data file (.h5) inside it")
    try:
        is_hdf5 = h5py.is_hdf5(str(path))
    except OSError as exc:
        raise InputError(f"{path} cannot be read ({one_line(exc)}): check the file's permissions") from None
    if not is_hdf5:
        raise InputError(f"{path} is not an HDF5 file: DA-INR reads ISMRMRD raw data (HDF5 with /dataset/xml and "
                         "/dataset/data); convert the raw data (e.g. siemens_to_ismrmrd)")
    try:
        return h5py.File(str(path), "r")
    except OSError as exc:
        raise InputError(f"{path} is a truncated or corrupt HDF5 file ({one_line(exc)}): copy or export it again") \
            from None


def _read_xml(path: Path, node) -> bytes:
    if not isinstance(node, h5py.Dataset):
        raise InputError(f"{path}: {node.name} is not a dataset: store the ISMRMRD XML header as a string dataset")
    value = node[()] if node.shape in ((), None) else (node[0] if node.size else b"")
    if isinstance(value, np.ndarray):
        value = value.tobytes()
    if isinstance(value, str):
        value = value.encode("utf-8")
    return bytes(value)


@hdf5_locked
def _read_file(path: Path, group: str, check_header: Callable[[bytes], T] | None) -> tuple[bytes, T | None,
                                                                                          AcquisitionTable]:
    """Header XML (as stored), ``check_header``'s result on it (run before the table is read, so a bad header is
    refused before anything is allocated) and the acquisition table of a raw file, checked step by step."""
    group = group.strip("/") or "dataset"
    with _open(path) as f:
        try:
            grp = f.get(group)
            if not isinstance(grp, h5py.Group):
                names = ", ".join(sorted(f.keys())[:5]) or "none"
                raise InputError(f"{path} has no /{group} group (top-level groups: {names}): pass the group that "
                                 "holds the ISMRMRD data")
            if "xml" not in grp:
                raise InputError(f"{path} has no /{group}/xml header: it is not ISMRMRD raw data; write the ISMRMRD "
                                 "XML header into /dataset/xml")
            header_xml = _read_xml(path, grp["xml"]).rstrip(b"\0")
            data = grp.get("data")
            if not isinstance(data, h5py.Dataset) or data.shape is None or data.size == 0:
                hint = " (it holds images: give the raw data file, not the reconstructed one)" \
                    if any(k.startswith("image") for k in grp.keys()) else ""
                raise InputError(f"{path} has no acquisitions in /{group}/data{hint}: give an ISMRMRD raw data file "
                                 "with the acquisitions")
            if data.dtype.names is None or not _ACQ_FIELDS <= set(data.dtype.names):
                raise InputError(f"{path}: /{group}/data is not an ISMRMRD acquisition table (fields head, traj, "
                                 "data): give an ISMRMRD raw data file")
            checked = check_header(header_xml) if check_header is not None else None
            records = data[...]
        except InputError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InputError(f"{path} cannot be read ({one_line(exc)}): the HDF5 file is corrupt or truncated; "
                             "copy or export it again") from None
    try:
        table = AcquisitionTable.from_records(records)
    except (ValueError, KeyError) as exc:
        raise InputError(f"{path}: /{group}/data has an unexpected acquisition header layout ({one_line(exc)}): "
                         "write the file with an ISMRMRD 1.x library") from None
    return header_xml, checked, table


def _checked_header(header_xml: bytes) -> tuple[xsd.ismrmrdHeader, EncodingInfo]:
    header = parse_header(header_xml)
    return header, encoding_info(header)


def read_raw(path: str | os.PathLike, group: str = "dataset", *,
             trajectory_override: TrajectoryOverride | None = None, binning: Binning | None = None) -> RawSeries:
    """Read an ISMRMRD raw file.

    Parameters
    ----------
    path:
        The HDF5 file (opened read-only; nothing is created).
    group:
        The ISMRMRD dataset group, ``dataset`` by default.
    trajectory_override:
        How to compute angles for spokes without ``traj``.
    binning:
        Bin a real-time stream (no phase index) into frames of ``binning.spokes_per_frame`` spokes; None keeps the
        frames of ``idx.phase`` (see :mod:`dainr.mrd.series`).

    Returns
    -------
    :class:`RawSeries` with the parsed header, its XML, one :class:`~dainr.data.CineData` per slice (sorted by
    ``idx.slice``) and the noise samples.

    Raises
    ------
    InputError
        With a one-line message naming the cause and the fix, when the file breaks INPUT_POLICY.md.
    """
    path = Path(path)
    header_xml, (header, info), table = _read_file(path, group, _checked_header)
    slices, noise = assemble_table(info, table, trajectory_override, binning)
    log.info("read %s: %d slice(s), %d frame(s), %d coil(s)", path, len(slices), slices[0].n_frames,
             slices[0].n_coils)
    return RawSeries(header=header, header_xml=header_xml, slices=slices, noise=noise, first_slice=first_slice(info))


def read_acquisitions(path: str | os.PathLike, group: str = "dataset") -> tuple[bytes, list[ismrmrd.Acquisition]]:
    """The header XML exactly as stored and every acquisition in file order, to send a file over a stream.

    The file checks are :func:`read_raw`'s; the header is not interpreted (the receiver, which may run any
    Gadgetron chain, judges it), but each acquisition must match its own header's sizes.

    Raises
    ------
    InputError
        One line naming what is wrong with the file.
    """
    path = Path(path)
    header_xml, _, table = _read_file(path, group, None)
    acquisitions = []
    for i in range(len(table)):
        try:
            acquisitions.append(table.acquisition(i))
        except ValueError as exc:
            raise InputError(f"{path}: acquisition {i} is inconsistent with its header ({one_line(exc)}): the data "
                             "must hold active_channels x number_of_samples complex samples and traj "
                             "number_of_samples x trajectory_dimensions values") from None
    return header_xml, acquisitions
