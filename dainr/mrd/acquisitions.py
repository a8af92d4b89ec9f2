"""A light column store of acquisitions, filled from an HDF5 table at once or from acquisitions one by one.

The HDF5 reader and the streaming front ends (Gadgetron gadget, MRD server) both turn their input into an
:class:`AcquisitionTable`, and :func:`dainr.mrd.series.assemble_series` works on that table only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

import ismrmrd
import numpy as np
from ismrmrd.hdf5 import acquisition_header_dtype

#: The 340-byte ISMRMRD acquisition header as a numpy structured dtype (same layout as the C struct).
ACQ_HEADER_DTYPE = acquisition_header_dtype

#: Flags of scans that never reach the image (besides noise), see INPUT_POLICY.md §3.
#: Calibration scans are skipped unless also flagged ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``. The numbers are
#: the ISMRMRD flag numbers, with fallbacks for ismrmrd-python versions that lack a constant.
SKIPPED_FLAGS = tuple(getattr(ismrmrd, name, number) for name, number in (
    ("ACQ_IS_NAVIGATION_DATA", 23),
    ("ACQ_IS_PHASECORR_DATA", 24),
    ("ACQ_IS_HPFEEDBACK_DATA", 26),
    ("ACQ_IS_DUMMYSCAN_DATA", 27),
    ("ACQ_IS_RTFEEDBACK_DATA", 28),
    ("ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA", 29),
    ("ACQ_IS_PHASE_STABILIZATION_REFERENCE", 30),
    ("ACQ_IS_PHASE_STABILIZATION", 31),
))


def flag_bit(flag: int) -> np.uint64:
    """The bit mask of an ISMRMRD ``ACQ_*`` flag number (flags are 1-based)."""
    return np.uint64(1) << np.uint64(flag - 1)


#: ``head.flags`` masks of the flags the stream collector reads (plain ints, like ``AcquisitionHeader.flags``).
NOISE_MEASUREMENT = 1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1)
LAST_IN_SLICE = 1 << (ismrmrd.ACQ_LAST_IN_SLICE - 1)


class AcquisitionLike(Protocol):
    """What the assembler needs of an acquisition: ``ismrmrd.Acquisition`` satisfies it."""

    def getHead(self) -> ismrmrd.AcquisitionHeader: ...

    @property
    def data(self) -> np.ndarray: ...

    @property
    def traj(self) -> np.ndarray: ...


@dataclass
class AcquisitionTable:
    """N acquisitions as columns.

    Attributes
    ----------
    head:
        ``(N,)`` structured array of :data:`ACQ_HEADER_DTYPE`.
    data:
        N arrays: samples of acquisition i, either complex ``(channels, samples)`` or the HDF5 layout, float32
        interleaved real/imag of length ``2·channels·samples``.
    traj:
        N float32 arrays with ``samples·trajectory_dimensions`` values (any shape, sample-major).
    """

    head: np.ndarray
    data: list[np.ndarray]
    traj: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.head)

    def flag_set(self, flag: int) -> np.ndarray:
        """``(N,)`` bool: where ISMRMRD flag ``flag`` is set."""
        return (self.head["flags"] & flag_bit(flag)) != 0

    def samples(self, i: int) -> np.ndarray:
        """Acquisition i as complex64 ``(channels, samples)`` per its header; ValueError if the sizes disagree."""
        c = int(self.head["active_channels"][i])
        n = int(self.head["number_of_samples"][i])
        a = np.asarray(self.data[i])
        if a.dtype == np.float32:
            a = np.ascontiguousarray(a).reshape(-1)
            if a.size % 2:
                raise ValueError("odd number of float values")
            a = a.view(np.complex64)
        elif np.iscomplexobj(a):
            a = a.astype(np.complex64, copy=False)
        else:
            raise ValueError(f"sample data of dtype {a.dtype}")
        if a.size != c * n:
            raise ValueError(f"{a.size} samples where the header says {c} channels x {n} samples")
        return a.reshape(c, n)

    def trajectory(self, i: int) -> np.ndarray:
        """Acquisition i's ``traj`` as float32 ``(samples, trajectory_dimensions)``; ValueError if sizes disagree."""
        n = int(self.head["number_of_samples"][i])
        d = int(self.head["trajectory_dimensions"][i])
        t = np.asarray(self.traj[i], dtype=np.float32).reshape(-1)
        if t.size != n * d:
            raise ValueError(f"{t.size} trajectory values where the header says {n} samples x {d} dimensions")
        return t.reshape(n, d)

    def acquisition(self, i: int) -> ismrmrd.Acquisition:
        """Acquisition i as an ``ismrmrd.Acquisition`` (header, samples and traj copied); ValueError as
        :meth:`samples` and :meth:`trajectory`."""
        return ismrmrd.Acquisition(header_of(self, i), self.samples(i), self.trajectory(i))

    @classmethod
    def from_acquisitions(cls, acquisitions: Iterable[AcquisitionLike]) -> AcquisitionTable:
        """Collect acquisitions received one by one (Gadgetron, MRD socket) into a table."""
        heads: list[bytes] = []
        data: list[np.ndarray] = []
        traj: list[np.ndarray] = []
        for acq in acquisitions:
            heads.append(bytes(acq.getHead()))
            data.append(acq.data)
            traj.append(acq.traj)
        head = np.frombuffer(b"".join(heads), dtype=ACQ_HEADER_DTYPE).copy() if heads else \
            np.zeros(0, ACQ_HEADER_DTYPE)
        return cls(head=head, data=data, traj=traj)

    @classmethod
    def from_records(cls, records: np.ndarray) -> AcquisitionTable:
        """A table from the rows of an ISMRMRD HDF5 ``data`` table (fields ``head``, ``traj``, ``data``)."""
        head = np.zeros(len(records), ACQ_HEADER_DTYPE)
        src = records["head"]
        # Copy field by field: files written by other tools may order or pad the compound type differently.
        for name in ACQ_HEADER_DTYPE.names:
            if name == "idx":
                for sub in ACQ_HEADER_DTYPE["idx"].names:
                    head["idx"][sub] = src["idx"][sub]
            else:
                head[name] = src[name]
        return cls(head=head, data=list(records["data"]), traj=list(records["traj"]))


def header_of(table: AcquisitionTable, i: int) -> ismrmrd.AcquisitionHeader:
    """Row i as an ``ismrmrd.AcquisitionHeader`` (a copy)."""
    return ismrmrd.AcquisitionHeader.from_buffer_copy(table.head[i:i + 1].tobytes())
