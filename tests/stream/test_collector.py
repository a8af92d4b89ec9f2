"""SliceCollector: acquisitions one by one give the slices ``dainr recon`` reads from the file."""

from __future__ import annotations

import ismrmrd
import numpy as np
import pytest

from dainr.errors import InputError, NoImagingData
from dainr.mrd import assemble_series, read_raw
from dainr.stream import SliceCollector, slice_jobs
from tests.conftest import simulate_file
from tests.gadget.harness import read_acquisitions

TINY = dict(matrix=16, frames=3, coils=2, spokes=5)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    return simulate_file(tmp_path_factory.mktemp("col") / "multi.h5", "--slices", "3", "--interleave", "--no-traj",
                         **TINY)[0]


def _same_cine(a, b):
    assert a.slice_index == b.slice_index and a.matrix == b.matrix
    for name in ("kspace", "traj", "spoke_mask", "dcw", "noise"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert np.array_equal(x, y), name
    assert a.geometry == b.geometry
    assert [bytes(r) for r in a.frame_refs] == [bytes(r) for r in b.frame_refs]


def test_slices_complete_at_last_in_slice_and_match_the_file_reader(multi):
    header, acqs = read_acquisitions(multi)
    col = SliceCollector(header)
    done = []
    for i, acq in enumerate(acqs):
        jobs = col.add(acq)
        if jobs:
            done.append((i, [j.cine.slice_index for j in jobs]))
    # interleaved frame by frame: slice s ends with frame 2's spokes, slices in order 0, 1, 2
    assert [s for _, s in done] == [[0], [1], [2]]
    assert done[-1][0] == len(acqs) - 1
    assert col.finish() == []
    reference = read_raw(multi).slices
    col2 = SliceCollector(header)
    jobs = [j for a in acqs for j in col2.add(a)]
    for job, ref in zip(jobs, reference):
        _same_cine(job.cine, ref)
    assert [j.image_index_start for j in jobs] == [1, 4, 7]


def test_numbering_starts_at_the_headers_first_slice_for_a_stream_and_a_file(multi):
    """Slices 4..6 of a header whose slice limits are 4..6: images 1..9, the same from a stream and a whole series."""
    header, acqs = read_acquisitions(multi)
    header = header.replace(b"<slice><minimum>0</minimum><maximum>2</maximum>",
                            b"<slice><minimum>4</minimum><maximum>6</maximum>")
    for a in acqs:
        h = a.getHead()
        h.idx.slice += 4
        a.setHead(h)
    col = SliceCollector(header)
    streamed = [j for a in acqs for j in col.add(a)]
    whole = slice_jobs(assemble_series(header, acqs))
    for jobs in (streamed, whole):
        assert [(j.cine.slice_index, j.image_index_start, j.number) for j in jobs] == [(4, 1, 0), (5, 4, 1), (6, 7, 2)]


def test_end_of_stream_completes_open_slices(multi):
    header, acqs = read_acquisitions(multi)
    last = 1 << (ismrmrd.ACQ_LAST_IN_SLICE - 1)
    for a in acqs:
        h = a.getHead()
        h.flags &= ~last
        a.setHead(h)
    col = SliceCollector(header)
    assert all(col.add(a) == [] for a in acqs)
    jobs = col.finish()
    assert [j.cine.slice_index for j in jobs] == [0, 1, 2]
    for job, ref in zip(jobs, read_raw(multi).slices):
        _same_cine(job.cine, ref)


def test_noise_only_and_empty_streams_are_refused(multi):
    header, acqs = read_acquisitions(multi)
    noise = [a for a in acqs if a.getHead().flags & (1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1))]
    assert noise
    col = SliceCollector(header)
    for a in noise:
        assert col.add(a) == []
    with pytest.raises(InputError, match="no imaging acquisitions"):
        col.finish()
    with pytest.raises(InputError, match="no acquisitions"):
        SliceCollector(header).finish()


def test_non_radial_header_is_refused_at_once(multi):
    header, _ = read_acquisitions(multi)
    with pytest.raises(InputError, match="radial"):
        SliceCollector(header.replace(b">goldenangle<", b">cartesian<").replace(b">radial<", b">cartesian<"))


def test_a_slice_of_the_header_that_never_came_is_refused_at_the_end_of_the_stream(multi):
    """INPUT_POLICY.md rule 5: the header's slice limits bind both ways; a stream knows only at its end."""
    header, acqs = read_acquisitions(multi)
    col = SliceCollector(header)
    for a in acqs:
        col.add(a)
    col.finish()  # every slice came
    col = SliceCollector(header)
    jobs = [j for a in acqs if a.getHead().idx.slice != 1 for j in col.add(a)]  # no refusal while it runs
    assert [j.cine.slice_index for j in jobs] == [0, 2]
    with pytest.raises(InputError, match=r"declares slices 0\.\.2 .* slice\(s\) 1 have no imaging spokes"):
        col.finish()


def test_a_huge_slice_limit_is_refused_without_work_proportional_to_it(multi):
    """A header claiming 65536 slices for a 3-slice stream: one line, in time proportional to the data."""
    header, acqs = read_acquisitions(multi)
    header = header.replace(b"<slice><minimum>0</minimum><maximum>2</maximum>",
                            b"<slice><minimum>0</minimum><maximum>65535</maximum>")
    col = SliceCollector(header)
    for a in acqs:
        col.add(a)
    with pytest.raises(InputError, match=r"slice\(s\) 3, 4, 5, 6, 7, \.\.\. \(65533 values\)"):
        col.finish()


def test_a_later_group_without_imaging_spokes_is_skipped_not_fatal(multi, caplog):
    header, acqs = read_acquisitions(multi)
    noise = [a for a in acqs if a.getHead().flags & (1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1))]
    col = SliceCollector(header)
    with pytest.raises(NoImagingData):
        col.assemble(noise)  # nothing reconstructed yet: the stream's refusal
    jobs = [j for a in acqs for j in col.add(a)]
    with caplog.at_level("WARNING"):
        assert col.assemble(noise) == []
    assert len(jobs) == 3 and "without imaging spokes" in caplog.text
