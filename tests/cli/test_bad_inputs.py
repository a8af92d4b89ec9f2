"""The bad-input catalogue of issue 4, each through ``dainr recon``: one line on stderr naming cause and fix, a
non-zero exit, no traceback (unless ``--debug``), and no output file (not even a temporary one) left behind."""

from __future__ import annotations

import subprocess
import sys

import h5py
import ismrmrd
import numpy as np
import pytest
import torch

from dainr.cli import main
from dainr.mrd import build_header, header_to_xml
from tests.conftest import simulate_file
from tests.mrd.helpers import read_acquisitions, write_acquisitions

MATRIX, FRAMES, COILS, SPOKES = 16, 2, 2, 4


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A tiny valid cine, a tiny valid real-time stream, and the cine's (xml, acquisitions) to break."""
    d = tmp_path_factory.mktemp("good")
    cine, _ = simulate_file(d / "cine.h5", matrix=MATRIX, frames=FRAMES, coils=COILS, spokes=SPOKES)
    realtime, _ = simulate_file(d / "rt.h5", "--realtime", matrix=MATRIX, frames=FRAMES, coils=COILS, spokes=SPOKES)
    with h5py.File(cine, "r") as f:
        xml = bytes(f["dataset/xml"][0])
    return {"cine": cine, "realtime": realtime, "xml": xml, "acqs": read_acquisitions(cine)}


def _imaging(acqs):
    return [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]


def _resized(acq, channels=None, samples=None, traj_dims=None):
    """A copy of ``acq`` with other channel / sample / traj column counts (data copied where they overlap)."""
    head = acq.getHead()
    if channels is not None:
        head.active_channels = head.available_channels = channels
    if samples is not None:
        head.number_of_samples = samples
    if traj_dims is not None:
        head.trajectory_dimensions = traj_dims
    out = ismrmrd.Acquisition(bytes(head))
    c, n = min(acq.active_channels, out.active_channels), min(acq.number_of_samples, out.number_of_samples)
    out.data[:c, :n] = acq.data[:c, :n]
    d = min(acq.trajectory_dimensions, out.trajectory_dimensions)
    out.traj[:n, :d] = acq.traj[:n, :d]
    return out


def _rewrite(path, xml, acqs):
    write_acquisitions(path, xml, acqs)
    return path


def _missing(tmp, good):
    return tmp / "does_not_exist.h5", []


def _directory(tmp, good):
    (tmp / "adir").mkdir()
    return tmp / "adir", []


def _not_hdf5(tmp, good):
    p = tmp / "notes.h5"
    p.write_text("this is a text file, not HDF5\n")
    return p, []


def _truncated(tmp, good):
    p = tmp / "cut.h5"
    data = good["cine"].read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p, []


def _no_ismrmrd_dataset(tmp, good):
    p = tmp / "other.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("measurements/values", data=np.arange(10))
    return p, []


def _invalid_header(tmp, good):
    xml = good["xml"].replace(b"<encoding>", b"<encodingz>", 1).replace(b"</encoding>", b"</encodingz>", 1)
    return _rewrite(tmp / "badxml.h5", xml, good["acqs"]), []


def _unconvertible_header_value(tmp, good):
    xml = good["xml"].replace(b"<reconSpace><matrixSize><x>16</x>", b"<reconSpace><matrixSize><x>abc</x>", 1)
    assert xml != good["xml"]
    return _rewrite(tmp / "badvalue.h5", xml, good["acqs"]), []


def _no_imaging(tmp, good):
    noise = [a for a in good["acqs"] if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    return _rewrite(tmp / "noise_only.h5", good["xml"], noise), []


def _sample_count_differs(tmp, good):
    acqs = list(good["acqs"])
    i = next(k for k, a in enumerate(acqs) if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)) + 3
    acqs[i] = _resized(acqs[i], samples=acqs[i].number_of_samples - 4)
    return _rewrite(tmp / "samples.h5", good["xml"], acqs), []


def _channel_count_differs(tmp, good):
    acqs = list(good["acqs"])
    i = len(acqs) - 2
    acqs[i] = _resized(acqs[i], channels=COILS + 1)
    return _rewrite(tmp / "channels.h5", good["xml"], acqs), []


def _traj_wrong_shape(tmp, good):
    acqs = [a if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) else _resized(a, traj_dims=4)
            for a in good["acqs"]]
    return _rewrite(tmp / "traj4.h5", good["xml"], acqs), []


def _traj_on_some_spokes(tmp, good):
    acqs = list(good["acqs"])
    acqs[-1] = _resized(acqs[-1], traj_dims=0)
    return _rewrite(tmp / "traj_some.h5", good["xml"], acqs), []


def _traj_out_of_range(tmp, good):
    acqs = []
    for a in good["acqs"]:
        b = _resized(a)
        if not b.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            b.traj[:] = a.traj * a.number_of_samples  # k-sample units instead of cycles/pixel
        acqs.append(b)
    return _rewrite(tmp / "traj_range.h5", good["xml"], acqs), []


def _cartesian(tmp, good):
    header = build_header((MATRIX, MATRIX), (256.0, 256.0, 8.0), COILS, "radial", FRAMES, 1, FRAMES * SPOKES)
    xml = header_to_xml(header).replace(b">radial<", b">cartesian<")
    return _rewrite(tmp / "cartesian.h5", xml, good["acqs"]), []


def _too_few_spokes_for_binning(tmp, good):
    return good["realtime"], ["--spokes-per-frame", str(FRAMES * SPOKES + 1)]


def _binning_a_cine(tmp, good):
    return good["cine"], ["--spokes-per-frame", str(SPOKES)]


def _image_file(tmp, good):
    p = tmp / "images.h5"
    assert main(["recon", str(good["cine"]), "-o", str(p), "--method", "adjoint", "-q"]) == 0
    with h5py.File(p, "r+") as f:
        del f["dataset/xml"]
    return p, []


#: name -> (builder, words the one-line message must hold: cause and fix)
CASES = {
    "missing file": (_missing, ["not found", "check the path"]),
    "directory": (_directory, ["directory", "give the"]),
    "not HDF5": (_not_hdf5, ["not an HDF5 file", "convert"]),
    "truncated": (_truncated, ["truncated or corrupt", "again"]),
    "no ISMRMRD dataset": (_no_ismrmrd_dataset, ["no /dataset group", "pass the group"]),
    "image file, not raw": (_image_file, ["no /dataset/xml", "ISMRMRD"]),
    "invalid ISMRMRD header": (_invalid_header, ["not a valid ISMRMRD header", "fix the header"]),
    "header value the schema refuses": (_unconvertible_header_value, ["matrixSize x is 'abc'", "fix it in the header"]),
    "no imaging acquisitions": (_no_imaging, ["no imaging acquisitions", "must contain"]),
    "sample count differs": (_sample_count_differs, ["differ in sample count", "same sample count"]),
    "channel count differs": (_channel_count_differs, ["differ in channel count", "same channel count"]),
    "traj wrong shape": (_traj_wrong_shape, ["4 column", "needs 2"]),
    "traj on some spokes": (_traj_on_some_spokes, ["traj is present on", "every spoke or on none"]),
    "traj out of range": (_traj_out_of_range, ["beyond 0.5 cycles/pixel", "cycles/pixel"]),
    "Cartesian header": (_cartesian, ["'cartesian'", "radial data only"]),
    "too few spokes for binning": (_too_few_spokes_for_binning, ["too few for one frame", "lower --spokes-per-frame"]),
    "binning a cine": (_binning_a_cine, ["numbered in idx.phase", "drop --spokes-per-frame"]),
}


def _refused(argv, capsys, tmp_path, out, words):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("dainr recon: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w.lower() in err.lower(), (w, err)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no temporary file either
    return err


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_refused_in_one_line(name, good, tmp_path, capsys):
    build, words = CASES[name]
    path, extra = build(tmp_path, good)
    before = path.read_bytes() if path.is_file() else None
    out = tmp_path / "out" / "images.h5"
    out.parent.mkdir()
    capsys.readouterr()
    _refused(["recon", str(path), "-o", str(out), "--method", "adjoint", "-q", *extra], capsys, tmp_path, out, words)
    if before is not None:
        assert path.read_bytes() == before  # the input is left untouched
    assert path.exists() or name == "missing file"
    if name == "missing file":
        assert not path.exists()  # opening read-only never creates the missing input


def test_xsdata_warnings_do_not_reach_stderr(good, tmp_path):
    """In a real process (pytest would capture them otherwise) a header value the schema refuses gives one line."""
    path, _ = _unconvertible_header_value(tmp_path, good)
    r = subprocess.run([sys.executable, "-m", "dainr", "recon", str(path), "-o", str(tmp_path / "o.h5"), "--method",
                        "adjoint"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert "matrixSize x is 'abc'" in r.stderr and "Warning" not in r.stderr


def test_debug_shows_the_traceback(good, tmp_path, capsys):
    build, _ = CASES["traj out of range"]
    path, _ = build(tmp_path, good)
    out = tmp_path / "o.h5"
    assert main(["recon", str(path), "-o", str(out), "--method", "adjoint", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "InputError" in err
    assert err.strip().splitlines()[-1].startswith("dainr recon: error: ")
    assert not out.exists()


def test_out_of_gpu_memory_refused_before_optimisation(good, tmp_path, capsys, monkeypatch):
    """Even one frame per step does not fit the (faked) free GPU memory: ResourceError before any work."""
    import dainr.recon.budget as budget
    import dainr.recon.device as device_mod

    monkeypatch.setattr(device_mod, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(budget, "device_free_bytes", lambda device: 64 * 2**20)
    called = []
    monkeypatch.setattr("dainr.recon.reconstruct", lambda *a, **k: called.append(1))
    out = tmp_path / "o.h5"
    capsys.readouterr()
    _refused(["recon", str(good["cine"]), "-o", str(out), "--preset", "fast", "-q"], capsys, tmp_path, out,
             ["GPU memory even at one frame per step", "free", "prep.virtual_coils"])
    assert not called


def test_gpu_memory_reduces_frames_per_step_with_a_warning(good, tmp_path, caplog, monkeypatch):
    """Two frames per step do not fit, one does: a warning, and the report says which."""
    import json

    import dainr.recon.budget as budget
    import dainr.recon.device as device_mod
    from dainr.config import load_config

    cfg = load_config("cpu-test", None, ["dainr.frames_per_step=2", "dainr.steps=2"])
    shape = budget.SeriesShape(frames=FRAMES, coils=COILS, spokes=SPOKES, samples=2 * MATRIX, matrix=(MATRIX, MATRIX))
    one, two = (budget.estimate_memory(shape, cfg, b).total for b in (1, 2))
    assert one < two
    free = int((one + two) / 2 / budget.USABLE_FRACTION)
    monkeypatch.setattr(device_mod, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(budget, "device_free_bytes", lambda device: free)
    out, report = tmp_path / "o.h5", tmp_path / "r.json"
    assert main(["recon", str(good["cine"]), "-o", str(out), "--preset", "cpu-test", "--set", "dainr.steps=2",
                 "--set", "dainr.frames_per_step=2", "--report", str(report), "-q"]) == 0
    assert "running with 1 frame(s) per step" in caplog.text
    assert json.loads(report.read_text())["slices"][0]["frames_per_step"] == 1
    assert out.exists()


def test_good_inputs_pass(good, tmp_path):
    """The fixtures themselves are fine: the refusals above come from the breakage alone."""
    assert main(["recon", str(good["cine"]), "-o", str(tmp_path / "a.h5"), "--method", "adjoint", "-q"]) == 0
    assert main(["recon", str(good["realtime"]), "-o", str(tmp_path / "b.h5"), "--method", "adjoint", "-q",
                 "--spokes-per-frame", str(SPOKES)]) == 0
