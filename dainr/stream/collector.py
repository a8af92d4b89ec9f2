"""Acquisitions arriving one by one -> complete slices, ready for :func:`dainr.recon.reconstruct`.

Rules (ARCHITECTURE.md): acquisitions are buffered per ``idx.slice``; a slice is complete at an acquisition flagged
``ACQ_LAST_IN_SLICE`` (that acquisition included) or at the end of the stream. Noise scans
(``ACQ_IS_NOISE_MEASUREMENT``) are kept for prewhitening and go with every slice assembled after them. Each complete
slice is assembled by :func:`dainr.mrd.assemble_series`, the same code that reads files for ``dainr recon``, so its
:class:`~dainr.data.CineData` is the one the CLI builds (given the noise scans come first, as scanners send them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

from dainr.data import CineData
from dainr.errors import NoImagingData
from dainr.mrd import (Binning, RawSeries, TrajectoryOverride, assemble_series, encoding_info, image_index_start,
                       parse_header)
from dainr.mrd.acquisitions import LAST_IN_SLICE, NOISE_MEASUREMENT, AcquisitionLike
from dainr.mrd.validation import check_missing_slices

log = logging.getLogger(__name__)


@dataclass
class SliceJob:
    """One complete slice and where its images go in the output numbering.

    Attributes
    ----------
    cine:
        The assembled slice.
    image_index_start:
        ``image_index`` of its first frame (:func:`dainr.mrd.image_index_start`).
    number:
        0-based count of slices completed so far in this stream (for logs and ordering).
    """

    cine: CineData
    image_index_start: int
    number: int = 0


def slice_jobs(series: RawSeries, first_number: int = 0) -> list[SliceJob]:
    """The slices of an assembled series as jobs, numbered for the output (every front end numbers here).

    Parameters
    ----------
    series:
        A whole file (``dainr recon``) or one group of a stream (:class:`SliceCollector`).
    first_number:
        :attr:`SliceJob.number` of the first slice.
    """
    return [SliceJob(cine=cine, number=first_number + i,
                     image_index_start=image_index_start(cine.slice_index, cine.n_frames, series.first_slice))
            for i, cine in enumerate(series.slices)]


@dataclass
class SliceCollector:
    """Buffers acquisitions of one stream and hands out complete slices.

    Parameters
    ----------
    header_xml:
        The ISMRMRD XML header as received; parsed and checked at once (a non-radial header is refused before any
        data arrives).
    trajectory_override:
        How to compute spoke angles for data without ``traj`` (from the config's ``trajectory`` section).
    binning:
        Real-time binning into frames (from the config's ``binning`` section), or None for frames from idx.phase.
    """

    header_xml: bytes
    trajectory_override: TrajectoryOverride = field(default_factory=TrajectoryOverride)
    binning: Binning | None = None

    def __post_init__(self) -> None:
        self.header_xml = bytes(self.header_xml).rstrip(b"\0")
        self.header = parse_header(self.header_xml)
        self._info = encoding_info(self.header)  # refuses a non-radial header before any data arrive
        self._noise: list[AcquisitionLike] = []
        self._open: dict[int, list[AcquisitionLike]] = {}
        self._done: set[int] = set()
        self._slices: set[int] = set()
        self._count = 0
        self.acquisitions = 0

    @property
    def slices_done(self) -> int:
        """Number of slices handed out so far."""
        return self._count

    def add(self, acq: AcquisitionLike) -> list[SliceJob]:
        """Take one acquisition; return the slice it completes (or nothing)."""
        head = acq.getHead()
        self.acquisitions += 1
        if head.flags & NOISE_MEASUREMENT:
            self._noise.append(acq)
            return []
        s = int(head.idx.slice)
        if s in self._done and s not in self._open:
            log.warning("acquisitions for slice %d arrive after its ACQ_LAST_IN_SLICE; they form a new group", s)
        self._open.setdefault(s, []).append(acq)
        if head.flags & LAST_IN_SLICE:
            return self._complete(s)
        return []

    def assemble(self, acquisitions: Sequence[AcquisitionLike]) -> list[SliceJob]:
        """Slices of a self-contained group of acquisitions (e.g. a Gadgetron ``ReconData`` buffer)."""
        return self._jobs(list(acquisitions))

    def finish(self) -> list[SliceJob]:
        """End of stream: the slices still open, in ``idx.slice`` order.

        Raises
        ------
        InputError
            When the whole stream held no imaging acquisition, or a slice within the header's slice limits never
            came (the same refusals as ``dainr recon``; INPUT_POLICY.md rule 5).
        """
        jobs: list[SliceJob] = []
        for s in sorted(self._open):
            jobs += self._complete(s)
        if self._count == 0:
            # Nothing was ever reconstructed: let the assembler refuse with the CLI's message.
            assemble_series(self.header, list(self._noise), header_xml=self.header_xml,
                            trajectory_override=self.trajectory_override, binning=self.binning)
        check_missing_slices(self._info, self._slices)
        return jobs

    def _complete(self, s: int) -> list[SliceJob]:
        acqs = self._open.pop(s)
        self._done.add(s)
        return self._jobs(acqs)

    def _jobs(self, acqs: list[AcquisitionLike]) -> list[SliceJob]:
        try:
            series = assemble_series(self.header, self._noise + acqs, header_xml=self.header_xml,
                                     trajectory_override=self.trajectory_override, binning=self.binning,
                                     whole_series=False)
        except NoImagingData:
            if self._count == 0:
                raise
            log.warning("ignoring a group of %d acquisitions without imaging spokes", len(acqs))
            return []
        jobs = slice_jobs(series, first_number=self._count)
        self._count += len(jobs)
        self._slices.update(j.cine.slice_index for j in jobs)
        return jobs
