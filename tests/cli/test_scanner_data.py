"""Scanner-like raw data end to end (issue 4): files built with ``dainr simulate`` (multi-slice sequential or
interleaved, real-time streams, with and without ``traj``), reconstructed with ``dainr recon``, and the images checked
against the truth per slice and frame, in the right order, with the right headers."""

from __future__ import annotations

import ismrmrd
import numpy as np
import pytest

from dainr.cli import main
from dainr.mrd import read_images
from tests.conftest import simulate_file
from tests.mrd.helpers import read_acquisitions

MATRIX, FRAMES, COILS, SPOKES = 24, 4, 3, 12


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.abs(a), np.abs(b)
    a, b = a / a.max(), b / b.max()
    return float(-10 * np.log10(max(float(np.mean((a - b) ** 2)), 1e-12)))


def _simulate(tmp_path, name, *flags, **kw):
    raw, truth = simulate_file(tmp_path / f"{name}.h5", *flags, matrix=kw.pop("matrix", MATRIX), frames=FRAMES,
                               coils=COILS, spokes=kw.pop("spokes", SPOKES), snr=200.0, **kw)
    truth = np.load(truth)
    return raw, (truth if truth.ndim == 4 else truth[None])


def _recon(raw, out, *extra, method="cgsense"):
    assert main(["recon", str(raw), "-o", str(out), "--method", method, "--preset", "cpu-test", "-q", *extra]) == 0
    return read_images(out)[1]


def _imaging(path):
    return [a for a in read_acquisitions(path) if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]


def _first_spokes(path, spokes_per_frame=None):
    """``{(slice, frame): first acquisition}`` of the raw file: by ``idx.phase``, or by bins of consecutive spokes."""
    out, seen = {}, {}
    for a in _imaging(path):
        s = a.idx.slice
        n = seen[s] = seen.get(s, -1) + 1
        if spokes_per_frame is None:
            out.setdefault((s, a.idx.phase), a)
        elif n % spokes_per_frame == 0:
            out[(s, n // spokes_per_frame)] = a
    return out


def _check_order_and_headers(images, truth, raw, spokes_per_frame=None):
    """Images come slice-major, frame by frame; each is closest to its own truth frame and slice; headers carry the
    geometry and time stamps of the first spoke of their slice and frame."""
    n_slices, n_frames = truth.shape[:2]
    assert len(images) == n_slices * n_frames
    refs = _first_spokes(raw, spokes_per_frame)
    for n, img in enumerate(images):
        s, f = divmod(n, n_frames)
        assert (img.slice, img.phase, img.image_index) == (s, f, n + 1)
        assert img.image_series_index == 1
        data = img.data[0, 0]
        right = _psnr(data, truth[s, f])
        assert right > 20.0, (s, f, right)
        for g in range(n_frames):  # the right frame: closer than any frame that differs from it
            if _psnr(truth[s, g], truth[s, f]) < 40.0:
                assert right > _psnr(data, truth[s, g]) + 0.5, (s, f, g)
        for t in range(n_slices):  # the right slice
            if t != s:
                assert right > _psnr(data, truth[t, f]) + 0.5, (s, f, t)
        ref = refs[(s, f)]
        for name in ("position", "read_dir", "phase_dir", "slice_dir", "patient_table_position"):
            np.testing.assert_allclose(getattr(img, name), getattr(ref, name), err_msg=name)
        assert img.acquisition_time_stamp == ref.acquisition_time_stamp
        assert tuple(img.physiology_time_stamp) == tuple(ref.physiology_time_stamp)
        np.testing.assert_allclose(img.field_of_view, (256.0, 256.0, 8.0))
        assert tuple(img.matrix_size) == (MATRIX, MATRIX, 1)
    positions = [images[s * n_frames].position[2] for s in range(n_slices)]
    assert positions == sorted(set(positions))  # distinct slice positions, in idx.slice order


@pytest.mark.parametrize("flags", [("--slices", "2"), ("--slices", "2", "--interleave", "--no-traj")],
                         ids=["sequential-traj", "interleaved-no-traj"])
def test_multi_slice(tmp_path, flags):
    raw, truth = _simulate(tmp_path, "ms", *flags)
    _check_order_and_headers(_recon(raw, tmp_path / "img.h5"), truth, raw)


@pytest.mark.parametrize("flags", [("--realtime", "--no-traj"), ("--realtime", "--slices", "2", "--interleave")],
                         ids=["one-slice-no-traj", "interleaved-traj"])
def test_realtime_binned(tmp_path, flags):
    raw, truth = _simulate(tmp_path, "rt", *flags)
    acqs = _imaging(raw)
    assert {a.idx.phase for a in acqs} == {0}  # a continuous stream: no phase index
    assert len(acqs) == truth.shape[0] * FRAMES * SPOKES
    images = _recon(raw, tmp_path / "img.h5", "--spokes-per-frame", str(SPOKES))
    _check_order_and_headers(images, truth, raw, spokes_per_frame=SPOKES)
    # without binning the stream is one frame of every spoke
    assert len(_recon(raw, tmp_path / "one.h5", method="adjoint")) == truth.shape[0]


def test_realtime_sliding_window(tmp_path):
    raw, truth = _simulate(tmp_path, "rt", "--realtime")
    stride = SPOKES // 2
    images = _recon(raw, tmp_path / "img.h5", "--spokes-per-frame", str(SPOKES), "--frame-stride", str(stride))
    n_frames = (FRAMES * SPOKES - SPOKES) // stride + 1
    assert [im.phase for im in images] == list(range(n_frames))
    spokes = _imaging(raw)
    for f, im in enumerate(images):
        assert im.acquisition_time_stamp == spokes[f * stride].acquisition_time_stamp
    for f in range(0, n_frames, 2):  # even windows are the acquisition's frames
        assert _psnr(images[f].data[0, 0], truth[0, f // 2]) > 20.0
    # the same binning as config keys
    again = _recon(raw, tmp_path / "cfg.h5", "--set", f"binning.spokes_per_frame={SPOKES}", "--set",
                   f"binning.stride={stride}")
    np.testing.assert_array_equal(np.stack([i.data for i in again]), np.stack([i.data for i in images]))


def test_trajectory_overrides_reach_the_reader(tmp_path):
    raw, truth = _simulate(tmp_path, "nt", "--no-traj")
    base = np.stack([i.data[0, 0] for i in _recon(raw, tmp_path / "a.h5", method="adjoint")])
    golden_deg = 180.0 / ((1 + 5 ** 0.5) / 2)
    same = np.stack([i.data[0, 0] for i in _recon(raw, tmp_path / "b.h5", "--set",
                                                  f"trajectory.angle_increment_deg={golden_deg!r}",
                                                  method="adjoint")])
    np.testing.assert_allclose(same, base, rtol=1e-4, atol=1e-4 * np.abs(base).max())
    wrong = np.stack([i.data[0, 0] for i in _recon(raw, tmp_path / "c.h5", "--set",
                                                   "trajectory.angle_increment_deg=100", method="adjoint")])
    uniform = np.stack([i.data[0, 0] for i in _recon(raw, tmp_path / "d.h5", "--set", "trajectory.kind=uniform",
                                                     method="adjoint")])
    good = np.mean([_psnr(base[f], truth[0, f]) for f in range(FRAMES)])
    for other in (wrong, uniform):
        assert np.mean([_psnr(other[f], truth[0, f]) for f in range(FRAMES)]) < good - 3.0


@pytest.mark.parametrize("oversampling", [1, 2])
def test_readout_oversampling_from_recon_space(tmp_path, oversampling):
    raw, truth = _simulate(tmp_path, "os", "--no-traj", "--oversampling", str(oversampling))
    assert _imaging(raw)[0].number_of_samples == oversampling * MATRIX
    images = _recon(raw, tmp_path / "img.h5")
    assert images[0].data.shape == (1, 1, MATRIX, MATRIX)  # the recon matrix, not the encoded one
    for f, im in enumerate(images):
        assert _psnr(im.data[0, 0], truth[0, f]) > 20.0
