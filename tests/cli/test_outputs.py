"""The output rule of ``dainr recon``, ``simulate`` and ``replay`` (:mod:`dainr.cli.outputs`): every output checked
before any work, nothing existing replaced without ``--overwrite`` (an image file gets its own group added), and
nothing left behind when something fails."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import dainr.recon
from dainr.cli import main
from dainr.mrd import read_images


@pytest.fixture
def no_engine(monkeypatch):
    """Calls of the engine and of the simulator, recorded instead of run: a refusal must come before either."""
    calls = []
    monkeypatch.setattr(dainr.recon, "reconstruct", lambda *a, **k: calls.append("reconstruct"))
    monkeypatch.setattr("dainr.cli.simulate.simulate", lambda **k: calls.append("simulate"))
    return calls


def _refused(argv, capsys, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def _files(folder):
    return sorted(p.name for p in folder.rglob("*"))


@pytest.mark.parametrize("option", ["-o", "--preview", "--report"])
def test_recon_output_in_a_missing_folder_is_refused_before_any_work(option, raw_file, tmp_path, capsys, no_engine):
    raw, truth = raw_file
    paths = {"-o": tmp_path / "o.h5", "--preview": tmp_path / "p.gif", "--report": tmp_path / "r.json"}
    paths[option] = tmp_path / "missing" / "dir" / paths[option].name
    argv = ["recon", str(raw), "--truth", str(truth), "-q"] + [a for o, p in paths.items() for a in (o, str(p))]
    _refused(argv, capsys, option, "missing/dir does not exist", "mkdir -p")
    assert no_engine == [] and _files(tmp_path) == []


@pytest.mark.parametrize("option", ["-o", "--truth"])
def test_simulate_output_in_a_missing_folder_is_refused_before_any_work(option, tmp_path, capsys, no_engine):
    paths = {"-o": tmp_path / "raw.h5", "--truth": tmp_path / "truth.npy"}
    paths[option] = tmp_path / "missing" / paths[option].name
    _refused(["simulate", "-q"] + [a for o, p in paths.items() for a in (o, str(p))], capsys, option,
             "does not exist")
    assert no_engine == [] and _files(tmp_path) == []


def test_outputs_that_collide_or_have_the_wrong_kind_are_refused(raw_file, tmp_path, capsys, no_engine):
    raw, truth = raw_file
    out = tmp_path / "o.h5"
    _refused(["recon", str(raw), "-o", str(raw)], capsys, "is also the input raw file")
    _refused(["recon", str(raw), "-o", str(out), "--truth", str(truth), "--report", str(truth)], capsys,
             "is also the --truth file")
    _refused(["recon", str(raw), "-o", str(out), "--report", str(out)], capsys, "--report", "is also -o")
    _refused(["recon", str(raw), "-o", str(out), "--preview", str(tmp_path / "p.jpg")], capsys,
             "must end in .gif or .png")
    _refused(["recon", str(raw), "-o", str(tmp_path)], capsys, "is a folder")
    _refused(["simulate", "-o", str(out), "--truth", str(out)], capsys, "is also -o")
    assert no_engine == [] and not out.exists()


def test_a_failure_after_the_reconstruction_leaves_no_output(raw_file, tmp_path, capsys, monkeypatch):
    """The images fail to write (here: a disk error) after the preview and report are made: none of the three is
    left, not even as a temporary file."""
    raw, truth = raw_file

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dainr.mrd.write_images", disk_full)
    out, gif, rep = tmp_path / "o.h5", tmp_path / "p.gif", tmp_path / "r.json"
    assert main(["recon", str(raw), "-o", str(out), "--method", "adjoint", "--truth", str(truth), "--preview",
                 str(gif), "--report", str(rep), "-q"]) == 3
    assert "No space left on device" in capsys.readouterr().err
    assert _files(tmp_path) == []


def test_simulate_leaves_no_truth_when_the_raw_file_fails(tmp_path, capsys, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dainr.mrd.write_raw", disk_full)
    assert main(["simulate", "--matrix", "16", "--frames", "2", "--coils", "2", "--spokes", "3", "-o",
                 str(tmp_path / "raw.h5"), "--truth", str(tmp_path / "t.npy"), "-q"]) == 3
    assert _files(tmp_path) == []


def test_recon_adds_its_group_to_an_image_file_and_replaces_it_only_with_overwrite(raw_file, tmp_path, capsys):
    raw, truth = raw_file
    out, rep = tmp_path / "images.h5", tmp_path / "r.json"
    base = ["recon", str(raw), "-o", str(out), "-q"]
    assert main(base + ["--method", "adjoint"]) == 0
    first = read_images(out, "dataset")[1]
    assert main(base + ["--method", "cgsense", "--group", "second", "--report", str(rep)]) == 0
    assert json.loads(rep.read_text())["group"] == "second"
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["dataset", "second"]
    cg = read_images(out, "second")[1]
    for a, b in zip(read_images(out, "dataset")[1], first):  # the other group, untouched
        assert np.array_equal(a.data, b.data) and a.attribute_string == b.attribute_string
    before = out.read_bytes()
    # The same group again: refused before any work, the file and the report as they were.
    _refused(base + ["--method", "adjoint", "--group", "second"], capsys, "already has a group 'second'",
             "--overwrite")
    _refused(base + ["--method", "adjoint", "--group", "third", "--report", str(rep)], capsys, "--report",
             "exists", "--overwrite")
    assert out.read_bytes() == before
    # --overwrite replaces that group only.
    assert main(base + ["--method", "adjoint", "--group", "second", "--overwrite"]) == 0
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["dataset", "second"]
    for a, b, c in zip(read_images(out, "second")[1], first, cg):
        assert np.array_equal(a.data, b.data) and not np.array_equal(a.data, c.data)
    for a, b in zip(read_images(out, "dataset")[1], first):
        assert np.array_equal(a.data, b.data)


def test_recon_and_simulate_refuse_to_replace_another_kind_of_file(raw_file, tmp_path, capsys, no_engine):
    raw, _ = raw_file
    images = tmp_path / "images.h5"
    with h5py.File(images, "w") as f:  # an image file, as far as the check can tell
        f.create_group("dataset/image_1")
    notes = tmp_path / "notes.h5"
    notes.write_text("my notes")
    raw_copy = tmp_path / "raw_copy.h5"
    raw_copy.write_bytes(raw.read_bytes())
    for path in (notes, raw_copy):
        _refused(["recon", str(raw), "-o", str(path)], capsys, "is not an ISMRMRD image file", "--overwrite")
    for path in (images, notes, raw_copy):
        _refused(["simulate", "-o", str(path)], capsys, "exists", "--overwrite")
    assert notes.read_text() == "my notes" and raw_copy.read_bytes() == raw.read_bytes()
    assert no_engine == []


def test_overwrite_replaces_a_file_of_another_kind_whole(raw_file, tmp_path):
    raw, _ = raw_file
    target = tmp_path / "target.h5"
    target.write_bytes(raw.read_bytes())  # raw data where the images go
    assert main(["recon", str(raw), "-o", str(target), "--method", "adjoint", "--overwrite", "-q"]) == 0
    with h5py.File(target, "r") as f:
        assert list(f) == ["dataset"] and "data" not in f["dataset"] and "image_1" in f["dataset"]
    assert main(["simulate", "--matrix", "16", "--frames", "2", "--coils", "2", "--spokes", "3", "-o", str(target),
                 "--overwrite", "-q"]) == 0
    with h5py.File(target, "r") as f:
        assert "data" in f["dataset"] and "image_1" not in f["dataset"]


def test_replay_refuses_an_existing_group_before_connecting(raw_file, tmp_path, capsys):
    raw, _ = raw_file
    out = tmp_path / "images.h5"
    assert main(["recon", str(raw), "-o", str(out), "--method", "adjoint", "--group", "run", "-q"]) == 0
    before = out.read_bytes()
    # Port 9 (discard) is never a server here: the refusal names the group, not the connection.
    _refused(["replay", str(raw), "--port", "9", "-o", str(out), "--group", "run"], capsys,
             "already has a group 'run'")
    assert out.read_bytes() == before


def test_truth_that_is_not_npy_is_one_line(raw_file, tmp_path, capsys):
    raw, _ = raw_file
    text = tmp_path / "truth.txt"
    text.write_text("1 2 3\n")
    _refused(["recon", str(raw), "-o", str(tmp_path / "o.h5"), "--method", "adjoint", "--truth", str(text), "-q"],
             capsys, "is not a NumPy .npy file", "numpy.save")
    assert not (tmp_path / "o.h5").exists()
