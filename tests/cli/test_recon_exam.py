"""``dainr recon`` over a whole exam: ``--concurrent-slices`` and device lists give each slice's images alone, in the
same order, numbering and report; a failed slice leaves no output."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dainr.stream.exam as exam
from dainr.cli import main
from dainr.errors import InputError
from dainr.mrd import read_images
from tests.conftest import simulate_file
from tests.gadget.compare import assert_same_images


@pytest.fixture(scope="module")
def exam_file(tmp_path_factory):
    return simulate_file(tmp_path_factory.mktemp("exam") / "raw.h5", "--slices", "3", matrix=16, frames=3, coils=2,
                         spokes=5)


@pytest.fixture(scope="module")
def one_at_a_time(exam_file, tmp_path_factory):
    """Images and report of ``--concurrent-slices 1``."""
    d = tmp_path_factory.mktemp("ref")
    raw, truth = exam_file
    assert main(["recon", str(raw), "-o", str(d / "o.h5"), "--preset", "cpu-test", "--concurrent-slices", "1",
                 "--truth", str(truth), "--report", str(d / "r.json"), "-q"]) == 0
    return read_images(d / "o.h5")[1], json.loads((d / "r.json").read_text())


def _recon(exam_file, tmp_path, args: list[str]) -> tuple[list, dict]:
    """``dainr recon`` of the exam (cpu-test, with the truth) with ``args``: its images and report."""
    raw, truth = exam_file
    out, rep = tmp_path / "o.h5", tmp_path / "r.json"
    assert main(["recon", str(raw), "-o", str(out), "--preset", "cpu-test", "--truth", str(truth), "--report",
                 str(rep), "-q", *args]) == 0
    return read_images(out)[1], json.loads(rep.read_text())


@pytest.mark.parametrize("args", [["--concurrent-slices", "2"], ["--concurrent-slices", "3"],
                                  ["--device", "cpu,cpu"]])
def test_slices_at_once_write_the_images_of_one_at_a_time(exam_file, one_at_a_time, tmp_path, args, capsys):
    images, report = _recon(exam_file, tmp_path, args)
    ref_images, ref_report = one_at_a_time
    assert_same_images(images, ref_images)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("slice ")]
    assert [line.split(":")[0] for line in lines] == ["slice 0", "slice 1", "slice 2"]
    assert [s["slice"] for s in report["slices"]] == [0, 1, 2]
    assert [s["psnr"] for s in report["slices"]] == [s["psnr"] for s in ref_report["slices"]]
    if args[0] == "--device":
        assert report["devices"] == ["cpu", "cpu"] and report["concurrent_slices"] == 1
    else:
        assert report["devices"] == ["cpu"] and report["concurrent_slices"] == int(args[1])


@pytest.mark.parametrize("args", [["--batch-slices", "3"], ["--batch-slices", "2", "--concurrent-slices", "2"]])
def test_batched_slices_write_the_images_of_one_at_a_time(exam_file, one_at_a_time, tmp_path, args):
    """Batched fits (tests/recon/test_batched_fit.py states the tolerance): same images to 1e-5 of each slice's
    largest pixel, same numbering and order; the report says how the slices were batched."""
    images, report = _recon(exam_file, tmp_path, args)
    ref_images, ref_report = one_at_a_time
    assert [(im.slice, im.phase, im.image_index) for im in images] == [(im.slice, im.phase, im.image_index)
                                                                        for im in ref_images]
    for im, ref in zip(images, ref_images):
        assert np.abs(im.data - ref.data).max() <= 1e-5 * np.abs(ref.data).max()
    batch = int(args[1])
    assert report["batch_slices"] == batch and ref_report["batch_slices"] == 1
    assert [s.get("batch_slices", 1) for s in report["slices"]] == ([3, 3, 3] if batch == 3 else [2, 2, 1])
    assert [s["psnr"] for s in report["slices"]] == pytest.approx([s["psnr"] for s in ref_report["slices"]],
                                                                  abs=1e-3)


def test_report_accounts_for_the_run(one_at_a_time):
    _, report = one_at_a_time
    assert report["devices"] == ["cpu"] and report["concurrent_slices"] == 1
    assert set(report["timings"]) == {"imports_and_read", "plan", "slices", "run"}
    assert report["timings"]["run"] >= report["timings"]["slices"] >= 0
    for s in report["slices"]:
        assert {"prep_seconds", "setup_seconds", "fit_seconds", "capture_seconds", "wait_seconds"} <= set(s)
        assert s["seconds"] >= s["prep_seconds"] + s["setup_seconds"] + s["fit_seconds"] - 0.01


def test_bad_concurrency_and_device_lists_are_one_line_errors(exam_file, tmp_path, capsys):
    raw, _ = exam_file
    out = tmp_path / "o.h5"
    for args, words in ((["--concurrent-slices", "0"], "--concurrent-slices must be >= 1"),
                        (["--batch-slices", "0"], "--batch-slices must be >= 1"),
                        (["--device", "cpu,gpu"], "device 'gpu' in 'cpu,gpu'")):
        assert main(["recon", str(raw), "-o", str(out), "--method", "adjoint", "-q", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
        assert not out.exists()


def test_a_failed_slice_leaves_no_output(exam_file, tmp_path, capsys, monkeypatch):
    """Slices 0 and 1 are written as they finish, slice 2 fails: no output file, and no temporary file."""
    real = exam.reconstruct_slice

    def failing(job, settings, progress=None, device=None):
        if job.cine.slice_index == 2:
            raise InputError("slice 2 is broken")
        return real(job, settings, progress, device)

    monkeypatch.setattr(exam, "reconstruct_slice", failing)
    raw, _ = exam_file
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["recon", str(raw), "-o", str(out_dir / "o.h5"), "--method", "adjoint", "-q",
                 "--concurrent-slices", "2"]) == 2
    assert "slice 2 is broken" in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []
