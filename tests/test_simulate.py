"""``dainr simulate``: the raw files it writes for multi-slice, interleaved, real-time and traj-less acquisitions."""

from __future__ import annotations

import h5py
import ismrmrd
import numpy as np
import pytest

from dainr.cli import main
from dainr.mrd import encoding_info, parse_header
from dainr.simulate import simulate, spoke_counters
from tests.mrd.helpers import read_acquisitions

MATRIX, FRAMES, COILS, SPOKES = 16, 3, 2, 5


def _run(tmp_path, *flags, name="raw.h5"):
    out, truth = tmp_path / name, tmp_path / (name + ".npy")
    assert main(["simulate", "--matrix", str(MATRIX), "--frames", str(FRAMES), "--coils", str(COILS), "--spokes",
                 str(SPOKES), "--snr", "100", "-o", str(out), "--truth", str(truth), "-q", *flags]) == 0
    with h5py.File(out, "r") as f:
        info = encoding_info(parse_header(bytes(f["dataset/xml"][0])))
    acqs = read_acquisitions(out)
    imaging = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    return info, imaging, np.load(truth)


def test_spoke_counters_sequential_and_interleaved():
    seq = spoke_counters(2, 3, 4)
    assert seq[0, 0, 0] == 0 and seq[0, 2, 3] == 11 and seq[1, 0, 0] == 12
    il = spoke_counters(2, 3, 4, interleave=True)
    assert il[0, 0, 3] == 3 and il[1, 0, 0] == 4 and il[0, 1, 0] == 8
    for c in (seq, il):
        assert sorted(c.ravel()) == list(range(24))


def test_slices_differ_and_sit_at_their_positions():
    sim = simulate(matrix=MATRIX, frames=FRAMES, coils=COILS, spokes=SPOKES, slices=3, snr=0)
    assert sim.truth.shape == (3, FRAMES, MATRIX, MATRIX)
    assert not np.allclose(sim.truth[0], sim.truth[1])
    assert [c.geometry.position[2] for c in sim.slices] == [-8.0, 0.0, 8.0]
    assert sim.noise is None


def test_cine_file(tmp_path):
    info, imaging, truth = _run(tmp_path)
    assert truth.shape == (FRAMES, MATRIX, MATRIX)
    assert info.limits["phase"] == (0, FRAMES - 1)
    assert [a.idx.phase for a in imaging] == [f for f in range(FRAMES) for _ in range(SPOKES)]
    assert {a.trajectory_dimensions for a in imaging} == {2}


@pytest.mark.parametrize("interleave", [False, True])
def test_multi_slice_order(tmp_path, interleave):
    flags = ["--slices", "2", "--no-traj"] + (["--interleave"] if interleave else [])
    info, imaging, truth = _run(tmp_path, *flags)
    assert truth.shape == (2, FRAMES, MATRIX, MATRIX)
    assert info.limits["slice"] == (0, 1)
    order = [(a.idx.slice, a.idx.phase) for a in imaging[::SPOKES]]
    if interleave:
        assert order == [(s, f) for f in range(FRAMES) for s in range(2)]
    else:
        assert order == [(s, f) for s in range(2) for f in range(FRAMES)]
    assert [a.idx.kspace_encode_step_1 for a in imaging] == list(range(2 * FRAMES * SPOKES))
    assert {a.trajectory_dimensions for a in imaging} == {0}
    assert {a.position[2] for a in imaging if a.idx.slice == 0} == {-4.0}


@pytest.mark.parametrize("flags", [(), ("--slices", "2", "--interleave", "--no-traj")])
def test_realtime_stream(tmp_path, flags):
    info, imaging, truth = _run(tmp_path, "--realtime", *flags)
    n_slices = 2 if flags else 1
    assert truth.shape == ((n_slices,) if flags else ()) + (FRAMES, MATRIX, MATRIX)  # binned with S = --spokes
    assert info.limits["phase"] == (0, 0)
    assert {a.idx.phase for a in imaging} == {0}
    assert not any(a.is_flag_set(ismrmrd.ACQ_FIRST_IN_PHASE) for a in imaging)
    assert len(imaging) == n_slices * FRAMES * SPOKES
    for s in range(n_slices):  # each slice's counter is one golden-angle sequence, in time order
        counters = [a.idx.kspace_encode_step_1 for a in imaging if a.idx.slice == s]
        assert counters == sorted(counters) and len(counters) == FRAMES * SPOKES


def test_realtime_needs_a_continuous_trajectory(tmp_path, capsys):
    out = tmp_path / "u.h5"
    rc = main(["simulate", "--matrix", "16", "--frames", "2", "--spokes", "4", "--coils", "2", "--realtime", "--traj",
               "uniform", "-o", str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "goldenangle" in err
    assert not out.exists()
