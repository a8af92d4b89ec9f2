"""One test per refusal of INPUT_POLICY.md: an InputError with a one-line message naming cause and fix."""

from __future__ import annotations

import h5py
import ismrmrd
import numpy as np
import pytest

from dainr.mrd import assemble_series, build_header, header_to_xml, read_raw, write_raw

from .helpers import COILS, FRAMES, NS, SPOKES, assert_refused, header_for, make_slices, write_acquisitions


def _rewrite(tmp_path, xml, acqs, name="bad.h5"):
    path = tmp_path / name
    write_acquisitions(path, xml, acqs)
    return path


def _refused_both_ways(tmp_path, xml, acqs, *fragments):
    """The file reader and the streaming assembler refuse the same input the same way."""
    msg = assert_refused(lambda: read_raw(_rewrite(tmp_path, xml, acqs)), *fragments)
    assert_refused(lambda: assemble_series(xml, acqs), *fragments)
    return msg


def _imaging(acqs):
    return [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]


def _with_head(acq, **fields):
    """A copy of ``acq`` with header fields changed (sizes included), samples and traj resized."""
    head = acq.getHead()
    idx = fields.pop("idx", {})
    for k, v in fields.items():
        setattr(head, k, v)
    for k, v in idx.items():
        setattr(head.idx, k, v)
    out = ismrmrd.Acquisition(bytes(head))
    c = min(acq.active_channels, out.active_channels)
    n = min(acq.number_of_samples, out.number_of_samples)
    out.data[:c, :n] = acq.data[:c, :n]
    d = min(acq.trajectory_dimensions, out.trajectory_dimensions)
    out.traj[:n, :d] = acq.traj[:n, :d]
    return out


# -- the file -------------------------------------------------------------------------------------------------------

def test_missing_path(tmp_path):
    missing = tmp_path / "nope.h5"
    assert_refused(lambda: read_raw(missing), "file not found", "path")
    assert not missing.exists()


def test_directory(tmp_path):
    assert_refused(lambda: read_raw(tmp_path), "directory")


def test_text_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("this is not HDF5\n")
    assert_refused(lambda: read_raw(path), "not an HDF5 file")


def test_truncated_file(good_file, tmp_path):
    path, *_ = good_file
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_refused(lambda: read_raw(cut), "truncated or corrupt")


def test_hdf5_without_xml(tmp_path, good_acqs):
    _, acqs = good_acqs
    path = tmp_path / "noxml.h5"
    dset = ismrmrd.Dataset(str(path), "dataset", True)
    for a in acqs:
        dset.append_acquisition(a)
    dset.close()
    assert_refused(lambda: read_raw(path), "/dataset/xml")


def test_hdf5_without_group(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("something", data=[1, 2, 3])
    assert_refused(lambda: read_raw(path), "no /dataset group")


@pytest.mark.parametrize("empty", [True, False])
def test_hdf5_without_data(tmp_path, good_acqs, empty):
    xml, acqs = good_acqs
    path = tmp_path / "nodata.h5"
    write_acquisitions(path, xml, acqs[:1])
    with h5py.File(path, "a") as f:
        if empty:
            f["dataset/data"].resize((0,))
        else:
            del f["dataset/data"]
    assert_refused(lambda: read_raw(path), "no acquisitions", "/dataset/data")


def test_image_file_given_as_raw(tmp_path, good_file):
    from dainr.mrd import to_images, write_images
    path, *_ = good_file
    series = read_raw(path)
    out = tmp_path / "images.h5"
    images = to_images(series.slices[0], np.ones((FRAMES, 16, 16)), image_index_start=1)
    write_images(out, images, header_xml=series.header_xml)
    assert_refused(lambda: read_raw(out), "no acquisitions", "images")


# -- the header -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("xml", [
    b"<not-xml",
    b'<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><bogus>1</bogus></ismrmrdHeader>',
    b"<ismrmrdHeader><encoding/></ismrmrdHeader>",  # no namespace
])
def test_invalid_xml_header(tmp_path, good_acqs, xml):
    _, acqs = good_acqs
    _refused_both_ways(tmp_path, xml, acqs, "not a valid ISMRMRD header")
    assert_refused(lambda: assemble_series(xml + b"\0", acqs), "not a valid ISMRMRD header")  # MRD text payload


def test_header_without_encoding(tmp_path, good_acqs):
    _, acqs = good_acqs
    xml = (b'<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><experimentalConditions>'
           b"<H1resonanceFrequency_Hz>123200000</H1resonanceFrequency_Hz></experimentalConditions></ismrmrdHeader>")
    _refused_both_ways(tmp_path, xml, acqs, "no <encoding>")


def test_cartesian_trajectory(tmp_path, good_acqs):
    xml, acqs = good_acqs
    bad = xml.replace(b"<trajectory>goldenangle</trajectory>", b"<trajectory>cartesian</trajectory>")
    assert bad != xml
    _refused_both_ways(tmp_path, bad, acqs, "cartesian", "radial data only")


@pytest.mark.parametrize("size", [0, 5000])
def test_insane_matrix(tmp_path, good_acqs, size):
    _, acqs = good_acqs
    hdr = header_for(make_slices())
    hdr.encoding[0].reconSpace.matrixSize.x = size
    _refused_both_ways(tmp_path, header_to_xml(hdr), acqs, "reconSpace matrix size", "4096")


# -- the acquisitions -----------------------------------------------------------------------------------------------

def test_no_imaging_acquisitions(tmp_path, good_acqs):
    xml, acqs = good_acqs
    noise_only = [a for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    _refused_both_ways(tmp_path, xml, noise_only, "no imaging acquisitions")


def test_channel_count_differs(tmp_path, good_acqs):
    xml, acqs = good_acqs
    acqs[5] = _with_head(acqs[5], active_channels=COILS + 1, available_channels=COILS + 1)
    _refused_both_ways(tmp_path, xml, acqs, "channel count")


def test_sample_count_differs(tmp_path, good_acqs):
    xml, acqs = good_acqs
    acqs[6] = _with_head(acqs[6], number_of_samples=NS - 2, center_sample=NS // 2 - 1)
    _refused_both_ways(tmp_path, xml, acqs, "sample count")


def test_traj_on_some_spokes_only(tmp_path, good_acqs):
    xml, acqs = good_acqs
    acqs[7] = _with_head(acqs[7], trajectory_dimensions=0)
    _refused_both_ways(tmp_path, xml, acqs, "traj is present on")


@pytest.mark.parametrize("dims", [1, 4])
def test_traj_wrong_column_count(tmp_path, good_acqs, dims):
    xml, acqs = good_acqs
    acqs = [a if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) else _with_head(a, trajectory_dimensions=dims)
            for a in acqs]
    _refused_both_ways(tmp_path, xml, acqs, f"traj has {dims} column")


def test_traj_out_of_range(tmp_path, good_acqs):
    xml, acqs = good_acqs
    for a in _imaging(acqs):
        a.traj[:] *= 16  # k-sample units instead of cycles/pixel
    _refused_both_ways(tmp_path, xml, acqs, "beyond 0.5 cycles/pixel")


@pytest.mark.parametrize("where", ["data", "noise", "traj"])
def test_non_finite_values(tmp_path, good_acqs, where):
    xml, acqs = good_acqs
    if where == "noise":
        acqs[1].data[0, 3] = np.inf
    elif where == "data":
        acqs[8].data[1, 5] = np.nan
    else:
        acqs[9].traj[4, 0] = np.nan
    _refused_both_ways(tmp_path, xml, acqs, "NaN or Inf")


def test_slice_outside_limits(tmp_path, good_acqs):
    xml, acqs = good_acqs
    acqs[4] = _with_head(acqs[4], idx={"slice": 2})
    _refused_both_ways(tmp_path, xml, acqs, "idx.slice 2", "slice limits")


def test_phase_outside_limits(tmp_path, good_acqs):
    xml, acqs = good_acqs
    acqs[4] = _with_head(acqs[4], idx={"phase": FRAMES})
    _refused_both_ways(tmp_path, xml, acqs, f"idx.phase {FRAMES}", "phase limits")


def test_frame_without_spokes(tmp_path, good_acqs):
    xml, acqs = good_acqs
    kept = [a for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) or a.idx.phase != 1]
    _refused_both_ways(tmp_path, xml, kept, "no spokes in idx.phase 1")


def test_all_phase_zero_under_multiphase_header(tmp_path, good_acqs):
    xml, acqs = good_acqs
    acqs = [a if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) else _with_head(a, idx={"phase": 0}) for a in acqs]
    _refused_both_ways(tmp_path, xml, acqs, "idx.phase = 0", f"declares {FRAMES}")


def test_counter_outside_limit_without_traj(tmp_path):
    slices = make_slices()
    path = tmp_path / "nt.h5"
    hdr = header_for(slices)
    write_raw(path, hdr, slices, include_traj=False, spoke_counter_start=1)  # header limit ends at 11, data at 12
    assert_refused(lambda: read_raw(path), "kspace_encode_step_1 12", "limit 0..11")
    # with traj the counter is not used for angles, so the same counters are fine
    write_raw(path, hdr, slices, spoke_counter_start=1)
    assert read_raw(path).slices[0].n_spokes == SPOKES


def test_header_limits_absent_are_derived(tmp_path, good_acqs):
    xml, acqs = good_acqs
    hdr = build_header((16, 16), (240.0, 240.0, 8.0), COILS, "goldenangle", FRAMES, 1, FRAMES * SPOKES)
    hdr.encoding[0].encodingLimits.phase = None
    hdr.encoding[0].encodingLimits.slice = None
    series = assemble_series(header_to_xml(hdr), acqs)
    assert series.slices[0].n_frames == FRAMES


# -- limits bind both ways, allocations are bounded before they happen (issue 19 item 2) ------------------------------

def _limit(xml: bytes, name: str, maximum: int) -> bytes:
    text = xml.decode()
    start = text.index(f"<{name}>")
    end = text.index(f"</{name}>", start)
    return (text[:start] + f"<{name}><minimum>0</minimum><maximum>{maximum}</maximum><center>0</center>"
            + text[end:]).encode()


def test_slice_limit_above_the_slices_present(tmp_path, good_acqs):
    xml, acqs = good_acqs
    _refused_both_ways(tmp_path, _limit(xml, "slice", 1), acqs, "declares slices 0..1", "slice(s) 1 have no imaging")


@pytest.mark.parametrize("name", ["phase", "slice", "kspace_encoding_step_1"])
def test_header_limit_beyond_the_uint16_counters(tmp_path, good_acqs, name):
    xml, acqs = good_acqs
    _refused_both_ways(tmp_path, _limit(xml, name, 10**7), acqs, f"encodingLimits/{name} is 0..10000000",
                       "outside 0..65535")


@pytest.mark.parametrize("name", ["phase", "slice"])
def test_huge_limits_cost_memory_of_the_data_not_of_the_limits(good_acqs, name):
    """A header claiming 65536 phases (or slices) for a tiny series is refused without arrays sized by the claim."""
    import tracemalloc

    xml, acqs = good_acqs
    xml = _limit(xml, name, 65535)
    tracemalloc.start()
    try:
        assert_refused(lambda: assemble_series(xml, acqs), "65535",
                       "no spokes in idx.phase" if name == "phase" else "no imaging spokes")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, f"{peak / 2**20:.1f} MiB allocated to refuse it"


def _spokes(template, n: int, phase_of=lambda i: 0) -> list:
    """``n`` imaging spokes shaped like ``template`` (counter i, idx.phase ``phase_of(i)``, no LAST flags)."""
    out = []
    for i in range(n):
        a = _with_head(template, idx={"kspace_encode_step_1": i % 65536, "phase": phase_of(i)}, flags=0)
        out.append(a)
    return out


def test_padding_frames_to_the_longest_is_bounded(good_acqs):
    """600 frames, frame 0 with 600 spokes and the others with 1: refused before allocating 600 x 600 spokes."""
    xml, acqs = good_acqs
    n_frames, long = 600, 600
    spokes = _spokes(_imaging(acqs)[0], long + n_frames - 1, lambda i: max(0, i - long + 1))
    hdr = _limit(_limit(xml, "phase", n_frames - 1), "kspace_encoding_step_1", 65535)
    assert_refused(lambda: assemble_series(hdr, spokes), f"padding {n_frames} frames of 1..{long} spokes",
                   "more than 8 times", "similar numbers of spokes")
    # the same frames padded within the bound are fine: 8 frames, one of 4 spokes, the others 1
    few = _spokes(_imaging(acqs)[0], 11, lambda i: max(0, i - 3))
    cine = assemble_series(_limit(_limit(xml, "phase", 7), "kspace_encoding_step_1", 65535), few).slices[0]
    assert cine.kspace.shape[:3] == (8, COILS, 4) and cine.spoke_mask.sum() == 11


def test_sliding_window_binning_is_bounded(good_acqs):
    """600 spokes per frame with stride 1 repeat every spoke 600 times: refused, naming the stride that fits."""
    from dainr.mrd import Binning

    xml, acqs = good_acqs
    spokes = _spokes(_imaging(acqs)[0], 1200)
    hdr = _limit(_limit(xml, "phase", 0), "kspace_encoding_step_1", 65535)
    assert_refused(lambda: assemble_series(hdr, spokes, binning=Binning(600, stride=1)),
                   "binning 600 spokes per frame every 1 spoke", "binning.stride of at least 75")
    cine = assemble_series(hdr, spokes, binning=Binning(600, stride=75)).slices[0]
    assert cine.n_frames == 9
