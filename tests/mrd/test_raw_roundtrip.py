"""write_raw → read_raw / assemble_series round trips."""

from __future__ import annotations

import logging
import math

import h5py
import ismrmrd
import numpy as np
import pytest

from dainr.data import CineData
from dainr.errors import InputError
from dainr import mrd
from dainr.mrd import TrajectoryOverride, assemble_series, header_to_xml, read_raw, write_raw
from dainr.mrd.raw_writer import TICK_MS
from dainr.physics import radial_trajectory

from .helpers import COILS, FRAMES, NS, SPOKES, assert_refused, header_for, make_noise, make_slices, read_acquisitions


def _heads(path):
    with h5py.File(path, "r") as f:
        return f["dataset/data"]["head"]


def _assert_same(written: list[CineData], read: list[CineData], traj_atol: float = 0.0):
    assert [c.slice_index for c in read] == [c.slice_index for c in written]
    for a, b in zip(written, read):
        np.testing.assert_array_equal(b.kspace, a.kspace)
        assert b.kspace.dtype == np.complex64 and b.traj.dtype == np.float32
        if traj_atol:
            np.testing.assert_allclose(b.traj, a.traj, atol=traj_atol)
        else:
            np.testing.assert_array_equal(b.traj, a.traj)
        assert b.matrix == a.matrix
        assert b.geometry == a.geometry
        assert b.spoke_mask is None or not b.spoke_mask.all()
        assert len(b.frame_refs) == a.n_frames
        for f, ref in enumerate(b.frame_refs):
            assert isinstance(ref, ismrmrd.AcquisitionHeader)
            assert (ref.idx.phase, ref.idx.slice) == (f, a.slice_index)


def test_single_slice_with_traj_and_noise(good_file):
    path, slices, _, noise = good_file
    series = read_raw(path)
    _assert_same(slices, series.slices)
    np.testing.assert_array_equal(series.noise, noise)  # 70 samples over acquisitions of 32, 32, 6
    assert series.slices[0].noise is series.noise
    assert series.slices[0].dcw is None
    assert b"ismrmrdHeader" in series.header_xml
    assert series.header.encoding[0].trajectory.value == "goldenangle"


@pytest.mark.parametrize("interleave", [False, True])
@pytest.mark.parametrize("include_traj", [True, False])
def test_multi_slice(tmp_path, interleave, include_traj):
    slices = make_slices(n_slices=3, interleave=interleave, counter_start=7)
    path = tmp_path / "multi.h5"
    write_raw(path, header_for(slices, counter_start=7), slices, interleave=interleave, include_traj=include_traj,
              spoke_counter_start=7)
    series = read_raw(path)
    # Without traj the reader computes the angles in float64 from the counter: equal to float32 rounding.
    _assert_same(slices, series.slices, traj_atol=0.0 if include_traj else 1e-6)
    assert series.noise is None


def test_interleaved_order_and_headers(tmp_path):
    slices = make_slices(n_slices=2, interleave=True)
    path = tmp_path / "il.h5"
    write_raw(path, header_for(slices), slices, interleave=True)
    h = _heads(path)
    idx = h["idx"]
    expected_slices = np.tile(np.repeat([0, 1], SPOKES), FRAMES)
    np.testing.assert_array_equal(idx["slice"], expected_slices)
    np.testing.assert_array_equal(idx["phase"], np.repeat(np.arange(FRAMES), 2 * SPOKES))
    np.testing.assert_array_equal(idx["kspace_encode_step_1"], np.arange(len(h)))  # global, never reset
    assert (np.diff(h["acquisition_time_stamp"].astype(np.int64)) > 0).all()
    np.testing.assert_array_equal(h["scan_counter"], np.arange(1, len(h) + 1))
    assert (h["center_sample"] == NS // 2).all()
    assert (h["active_channels"] == COILS).all() and (h["available_channels"] == COILS).all()
    assert (h["channel_mask"][:, 0] == 0b11).all()
    assert (h["trajectory_dimensions"] == 2).all()

    def flagged(flag):
        return np.flatnonzero(h["flags"] & np.uint64(1 << (flag - 1)))

    np.testing.assert_array_equal(flagged(ismrmrd.ACQ_FIRST_IN_SLICE), [0, SPOKES])
    last_slice_start = (FRAMES - 1) * 2 * SPOKES
    np.testing.assert_array_equal(flagged(ismrmrd.ACQ_LAST_IN_SLICE),
                                  [last_slice_start + SPOKES - 1, last_slice_start + 2 * SPOKES - 1])
    np.testing.assert_array_equal(flagged(ismrmrd.ACQ_FIRST_IN_PHASE), np.arange(0, len(h), SPOKES))
    np.testing.assert_array_equal(flagged(ismrmrd.ACQ_LAST_IN_PHASE), np.arange(SPOKES - 1, len(h), SPOKES))
    np.testing.assert_allclose(h["position"][SPOKES], slices[1].geometry.position)
    np.testing.assert_allclose(h["read_dir"][0], slices[0].geometry.read_dir)
    np.testing.assert_allclose(h["patient_table_position"][0], slices[0].geometry.patient_table_position)


def test_noise_scans_come_first_and_are_flagged(good_file):
    path, *_ = good_file
    h = _heads(path)
    noise = (h["flags"] & np.uint64(1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1))) != 0
    np.testing.assert_array_equal(noise, [True] * 3 + [False] * (FRAMES * SPOKES))
    assert list(h["number_of_samples"][:3]) == [NS, NS, 70 - 2 * NS]
    assert (h["trajectory_dimensions"][:3] == 0).all()
    stamps = h["acquisition_time_stamp"].astype(np.int64)
    assert stamps[-1] - stamps[0] == math.floor((len(h) - 1) * 2.5 / TICK_MS)


@pytest.mark.parametrize("kind,header_traj,identifier", [
    ("goldenangle", "goldenangle", None),
    ("uniform", "radial", None),
    ("tddip", "goldenangle", "tddip"),
])
def test_trajectory_computed_without_traj(tmp_path, kind, header_traj, identifier):
    slices = make_slices(kind)
    path = tmp_path / f"{kind}.h5"
    write_raw(path, header_for(slices, header_traj, identifier), slices, include_traj=False)
    assert (_heads(path)["trajectory_dimensions"] == 0).all()
    series = read_raw(path)
    _assert_same(slices, series.slices, traj_atol=1e-6)


def test_golden_angle_from_counter_by_hand(tmp_path):
    slices = make_slices()
    path = tmp_path / "g.h5"
    write_raw(path, header_for(slices, counter_start=5), slices, include_traj=False, spoke_counter_start=5)
    traj = read_raw(path).slices[0].traj
    # frame 1, spoke 2 has counter 5 + 1·4 + 2 = 11; its last sample lies at radius (Ns−1−Ns/2)/Ns.
    theta = math.radians(11 * 180.0 / ((1 + 5 ** 0.5) / 2))
    r = (NS - 1 - NS // 2) / NS
    np.testing.assert_allclose(traj[1, 2, -1], [r * math.cos(theta), r * math.sin(theta)], atol=1e-6)


def test_trajectory_override(tmp_path):
    slices = make_slices("uniform")
    path = tmp_path / "u.h5"
    write_raw(path, header_for(slices, "goldenangle"), slices)  # header says golden angle, traj is uniform
    assert np.allclose(read_raw(path).slices[0].traj, slices[0].traj)
    forced = read_raw(path, trajectory_override=TrajectoryOverride(kind="radial", ignore_traj=True))
    np.testing.assert_allclose(forced.slices[0].traj, slices[0].traj, atol=1e-6)
    golden = read_raw(path, trajectory_override=TrajectoryOverride(ignore_traj=True))
    np.testing.assert_allclose(golden.slices[0].traj, radial_trajectory("goldenangle", FRAMES, SPOKES, NS), atol=1e-6)
    tiny = read_raw(path, trajectory_override=TrajectoryOverride(angle_increment_deg=23.628, ignore_traj=True))
    np.testing.assert_allclose(tiny.slices[0].traj,
                               radial_trajectory("goldenangle", FRAMES, SPOKES, NS,
                                                 angle_increment_rad=math.radians(23.628)), atol=1e-6)


def test_three_column_traj_becomes_dcw(tmp_path):
    slices = make_slices()
    dcw = np.random.default_rng(3).uniform(0.1, 2.0, (FRAMES, SPOKES, NS)).astype(np.float32)
    slices[0].dcw = dcw
    path = tmp_path / "dcw.h5"
    write_raw(path, header_for(slices), slices)
    assert (_heads(path)["trajectory_dimensions"] == 3).all()
    cine = read_raw(path).slices[0]
    np.testing.assert_array_equal(cine.dcw, dcw)
    np.testing.assert_array_equal(cine.traj, slices[0].traj)


def test_short_frame_is_padded_and_masked(tmp_path):
    slices = make_slices()
    mask = np.ones((FRAMES, SPOKES), bool)
    mask[1, -1] = False
    slices[0].spoke_mask = mask
    path = tmp_path / "short.h5"
    write_raw(path, header_for(slices), slices)
    cine = read_raw(path).slices[0]
    np.testing.assert_array_equal(cine.spoke_mask, mask)
    assert not cine.kspace[1, :, -1].any()
    np.testing.assert_array_equal(cine.kspace[mask.nonzero()[0], :, mask.nonzero()[1]],
                                  slices[0].kspace[mask.nonzero()[0], :, mask.nonzero()[1]])


def test_assemble_series_from_acquisitions_matches_read_raw(good_file):
    path, slices, header, noise = good_file
    acqs = read_acquisitions(path)
    for hdr in (header, header_to_xml(header) + b"\0"):
        series = assemble_series(hdr, acqs)
        _assert_same(slices, series.slices)
        np.testing.assert_array_equal(series.noise, noise)
    assert assemble_series(header_to_xml(header) + b"\0", acqs).header_xml == header_to_xml(header)


def test_read_acquisitions_gives_the_stored_header_bytes_and_every_acquisition(good_file, tmp_path):
    """What replay streams: the XML exactly as stored (not re-serialised) and the acquisitions ismrmrd reads."""
    path, _, header, _ = good_file
    stored = header_to_xml(header).replace(b"<ismrmrdHeader", b"<!-- kept as stored -->\n<ismrmrdHeader", 1)
    with h5py.File(path, "r+") as f:
        del f["dataset/xml"]
        f.create_dataset("dataset/xml", data=np.array([stored], dtype=object), dtype=h5py.string_dtype())
    xml, acqs = mrd.read_acquisitions(path)
    assert xml == stored
    reference = read_acquisitions(path)  # ismrmrd.Dataset, one by one
    assert len(acqs) == len(reference)
    for a, b in zip(acqs, reference):
        assert bytes(a.getHead()) == bytes(b.getHead())
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.traj, b.traj)
    text = tmp_path / "text.h5"
    text.write_text("not HDF5")
    with pytest.raises(InputError, match="is not an HDF5 file"):
        mrd.read_acquisitions(text)


def test_acquisition_order_is_free(good_file):
    """Shuffled spokes (other than within a frame) and any slice interleaving give the same series."""
    path, slices, header, _ = good_file
    acqs = read_acquisitions(path)
    imaging = acqs[3:]
    by_frame = [imaging[f * SPOKES:(f + 1) * SPOKES] for f in range(FRAMES)]
    reordered = by_frame[2] + by_frame[0] + acqs[:3] + by_frame[1]
    _assert_same(slices, assemble_series(header, reordered).slices)


def test_flagged_scans_are_skipped(good_file):
    path, slices, header, _ = good_file
    acqs = read_acquisitions(path)
    nav = ismrmrd.Acquisition.from_array(np.ones((1, 8), np.complex64))  # different channels/samples: exempt
    nav.set_flag(ismrmrd.ACQ_IS_NAVIGATION_DATA)
    calib = ismrmrd.Acquisition.from_array(np.full((COILS, NS), np.nan, np.complex64))
    calib.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
    dummy = ismrmrd.Acquisition.from_array(np.ones((COILS, 3), np.complex64))
    dummy.set_flag(ismrmrd.ACQ_IS_DUMMYSCAN_DATA)
    series = assemble_series(header, [nav, dummy] + acqs + [calib])
    _assert_same(slices, series.slices)


def test_duplicates_are_dropped_with_warning(good_file, caplog):
    path, slices, header, _ = good_file
    acqs = read_acquisitions(path)
    with caplog.at_level(logging.WARNING):
        series = assemble_series(header, acqs + [acqs[5], acqs[9]])
    _assert_same(slices, series.slices)
    assert any("duplicat" in r.message for r in caplog.records)


def test_reading_leaves_the_input_untouched(good_file):
    path, *_ = good_file
    before = path.read_bytes()
    stamp = path.stat().st_mtime_ns
    read_raw(path)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in path.parent.iterdir()) == ["raw.h5"]


class _FailingArray(np.ndarray):
    """k-space that fails after a few reads, as a full disk or a killed process would mid-write."""

    reads = 0

    def __getitem__(self, item):
        type(self).reads += 1
        if type(self).reads > 5:
            raise RuntimeError("disk full")
        return np.asarray(self)[item]


def test_write_is_atomic(tmp_path):
    slices = make_slices()
    good = slices[0].kspace
    slices[0].kspace = good.view(_FailingArray)
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError, match="disk full"):
        write_raw(path, header_for(slices), slices, noise=make_noise())
    assert list(tmp_path.iterdir()) == []
    slices[0].kspace = good
    path.write_bytes(b"old")
    write_raw(path, header_for(slices), slices)  # replaces an existing file
    assert read_raw(path).slices[0].n_frames == FRAMES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def test_missing_slice_is_refused(tmp_path):
    """INPUT_POLICY.md rule 5: the header's slice limits bind both ways."""
    slices = make_slices(n_slices=3)
    path = tmp_path / "gap.h5"
    write_raw(path, header_for(slices), [slices[0], slices[2]])
    assert_refused(lambda: read_raw(path), "declares slices 0..2", "slice(s) 1 have no imaging spokes")


def test_unknown_override_kind_is_a_config_error(good_file):
    from dainr.errors import ConfigError
    path, *_ = good_file
    with pytest.raises(ConfigError, match="spiral"):
        read_raw(path, trajectory_override=TrajectoryOverride(kind="spiral", ignore_traj=True))
