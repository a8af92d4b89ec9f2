"""Real-time radial streams (no phase index) binned into frames at reconstruction time, and per-frame headers."""

from __future__ import annotations

import ismrmrd
import numpy as np
import pytest

from dainr.errors import ConfigError
from dainr.mrd import Binning, assemble_series, build_header, header_to_xml, read_raw, to_images, write_raw

from .helpers import COILS, FRAMES, H, NS, SPOKES, W, assert_refused, make_noise, make_slices, read_acquisitions


def _realtime_file(tmp_path, n_slices=1, interleave=False, include_traj=True, name="rt.h5"):
    """The slices of :func:`make_slices` written as a real-time stream: idx.phase = 0, a single-phase header."""
    slices = make_slices(n_slices=n_slices, interleave=interleave)
    header = build_header((H, W), slices[0].geometry.fov_mm, COILS, "goldenangle", 1, n_slices, FRAMES * SPOKES)
    path = tmp_path / name
    write_raw(path, header, slices, interleave=interleave, include_traj=include_traj, phase_index=False,
              noise=make_noise())
    return path, slices, header


def test_binning_members():
    b = Binning(4)
    spoke, frame = b.members(10)  # two whole frames, 2 spokes left over
    assert list(spoke) == [0, 1, 2, 3, 4, 5, 6, 7] and list(frame) == [0, 0, 0, 0, 1, 1, 1, 1]
    s = Binning(4, stride=2)
    spoke, frame = s.members(10)
    assert s.frames_for(10) == 4
    assert list(spoke) == [0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9]
    assert list(frame) == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert Binning(4).frames_for(3) == 0
    with pytest.raises(ConfigError):
        Binning(0)
    with pytest.raises(ConfigError):
        Binning(4, stride=5)


def test_writer_realtime_stream_has_no_phase_index(tmp_path):
    path, *_ = _realtime_file(tmp_path)
    imaging = [a for a in read_acquisitions(path) if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    assert {a.idx.phase for a in imaging} == {0}
    assert not any(a.is_flag_set(ismrmrd.ACQ_FIRST_IN_PHASE) or a.is_flag_set(ismrmrd.ACQ_LAST_IN_PHASE)
                   for a in imaging)
    assert [a.idx.kspace_encode_step_1 for a in imaging] == list(range(FRAMES * SPOKES))


@pytest.mark.parametrize("include_traj", [True, False])
@pytest.mark.parametrize("n_slices,interleave", [(1, False), (2, False), (2, True)])
def test_binning_recovers_the_frames(tmp_path, include_traj, n_slices, interleave):
    path, slices, _ = _realtime_file(tmp_path, n_slices, interleave, include_traj)
    series = read_raw(path, binning=Binning(SPOKES))
    assert [c.slice_index for c in series.slices] == list(range(n_slices))
    for want, got in zip(slices, series.slices):
        np.testing.assert_array_equal(got.kspace, want.kspace)
        np.testing.assert_allclose(got.traj, want.traj, atol=0 if include_traj else 1e-6)
        assert got.spoke_mask is None
        assert len(got.frame_refs) == FRAMES
    # without binning: one frame of every spoke
    whole = read_raw(path)
    assert [c.kspace.shape for c in whole.slices] == [(1, COILS, FRAMES * SPOKES, NS)] * n_slices


def test_sliding_window_and_leftover_spokes(tmp_path):
    path, slices, _ = _realtime_file(tmp_path)
    stream = np.concatenate(list(slices[0].kspace.transpose(0, 2, 1, 3)))  # (spokes, coils, samples) in time order
    cine = read_raw(path, binning=Binning(5, stride=3)).slices[0]
    n = FRAMES * SPOKES
    assert cine.n_frames == (n - 5) // 3 + 1
    for f in range(cine.n_frames):
        np.testing.assert_array_equal(cine.kspace[f].transpose(1, 0, 2), stream[3 * f:3 * f + 5])
    spokes = [a for a in read_acquisitions(path) if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    for f, ref in enumerate(cine.frame_refs):  # a frame's reference is its first spoke
        assert ref.scan_counter == spokes[3 * f].scan_counter
        assert ref.acquisition_time_stamp == spokes[3 * f].acquisition_time_stamp


def test_streaming_assembly_bins_the_same(tmp_path):
    path, _, header = _realtime_file(tmp_path, n_slices=2, interleave=True)
    a = read_raw(path, binning=Binning(SPOKES, stride=2))
    b = assemble_series(header_to_xml(header), read_acquisitions(path), binning=Binning(SPOKES, stride=2))
    for x, y in zip(a.slices, b.slices):
        np.testing.assert_array_equal(x.kspace, y.kspace)
        np.testing.assert_array_equal(x.traj, y.traj)


def test_flagged_scans_never_reach_binned_frames(tmp_path):
    path, _, header = _realtime_file(tmp_path)
    acqs = read_acquisitions(path)
    extra = []
    for flag in (ismrmrd.ACQ_IS_NAVIGATION_DATA, ismrmrd.ACQ_IS_DUMMYSCAN_DATA, ismrmrd.ACQ_IS_PHASECORR_DATA,
                 ismrmrd.ACQ_IS_PARALLEL_CALIBRATION):
        a = ismrmrd.Acquisition(bytes(acqs[-1].getHead()))
        a.data[:] = 1e3
        a.traj[:] = acqs[-1].traj
        a.set_flag(flag)
        extra.append(a)
    mixed = acqs[:20] + extra + acqs[20:]  # in the middle of the stream
    want = assemble_series(header_to_xml(header), acqs, binning=Binning(SPOKES)).slices[0]
    got = assemble_series(header_to_xml(header), mixed, binning=Binning(SPOKES)).slices[0]
    np.testing.assert_array_equal(got.kspace, want.kspace)


def test_binning_refused_on_a_cine(tmp_path):
    slices = make_slices()
    header = build_header((H, W), slices[0].geometry.fov_mm, COILS, "goldenangle", FRAMES, 1, FRAMES * SPOKES)
    path = tmp_path / "cine.h5"
    write_raw(path, header, slices)
    assert_refused(lambda: read_raw(path, binning=Binning(SPOKES)), "idx.phase", "drop --spokes-per-frame")


def test_too_few_spokes_for_binning(tmp_path):
    path, *_ = _realtime_file(tmp_path)
    assert_refused(lambda: read_raw(path, binning=Binning(FRAMES * SPOKES + 1)), "too few",
                   f"at most {FRAMES * SPOKES}")


def test_images_take_geometry_and_time_from_their_frame(tmp_path):
    """Each image's position and time stamp come from its frame's first spoke, even where the slice moves."""
    path, _, header = _realtime_file(tmp_path)
    acqs = read_acquisitions(path)
    imaging = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    for n, a in enumerate(imaging):
        a.position = (1.0, 2.0, 3.0 + n // SPOKES)  # the slice follows something, frame by frame
        a.physiology_time_stamp = (100 + n, 0, 0)
    cine = assemble_series(header_to_xml(header), acqs, binning=Binning(SPOKES)).slices[0]
    images = to_images(cine, np.ones((FRAMES, H, W), np.complex64), image_index_start=1)
    for f, img in enumerate(images):
        first = imaging[f * SPOKES]
        np.testing.assert_allclose(img.position, (1.0, 2.0, 3.0 + f))
        assert img.acquisition_time_stamp == first.acquisition_time_stamp
        assert img.physiology_time_stamp[0] == 100 + f * SPOKES
        np.testing.assert_allclose(img.read_dir, first.read_dir)
        np.testing.assert_allclose(img.patient_table_position, first.patient_table_position)
