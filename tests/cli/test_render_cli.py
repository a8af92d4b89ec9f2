"""``dainr recon --save-model`` / ``--warm-start`` and ``dainr render``: the same images again without a fit, other
frame counts, and one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest

from dainr.cli import main
from dainr.mrd import read_images
from tests.conftest import simulate_file
from tests.gadget.compare import assert_same_images

RECON = ["--preset", "cpu-test", "--device", "cpu", "-q", "--set", "dainr.steps=4"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Two slices reconstructed with the motion series, their models saved."""
    d = tmp_path_factory.mktemp("render_cli")
    raw = simulate_file(d / "raw.h5", "--slices", "2", matrix=16, frames=3, coils=2, spokes=5)[0]
    assert main(["recon", str(raw), "-o", str(d / "fit.h5"), "--motion", "--jacobian", "--save-model",
                 str(d / "model.pt"), *RECON]) == 0
    return d, raw


def _all(path):
    images = read_images(path)
    return [im for s in sorted(images) for im in images[s]]


def test_render_gives_the_fit_images_again(stack):
    d, _ = stack
    assert main(["render", str(d / "model.pt"), "-o", str(d / "again.h5"), "--motion", "--jacobian", "-q"]) == 0
    assert sorted(read_images(d / "again.h5")) == [1, 2, 3]
    assert_same_images(_all(d / "again.h5"), _all(d / "fit.h5"))


def test_render_other_frames_one_slice(stack, capsys):
    d, _ = stack
    assert main(["render", str(d / "model.pt"), "-o", str(d / "five.h5"), "--render-frames", "5", "--slice", "1",
                 "--series", "7", "--preview", str(d / "five.png")]) == 0
    images = read_images(d / "five.h5")
    assert list(images) == [7]
    assert [(im.slice, im.phase, im.image_index) for im in images[7]] == [(1, f, 6 + f) for f in range(5)]
    fit = read_images(d / "fit.h5")[1]
    for k in (0, 2, 4):  # rendered frames 0, 2, 4 are the acquired frames 0, 1, 2
        assert np.array_equal(images[7][k].data, fit[3 + k // 2].data)
    assert (d / "five.png").stat().st_size > 0
    assert "wrote 5 images" in capsys.readouterr().out


def test_warm_start_changes_later_slices_only(stack, tmp_path):
    _, raw = stack
    assert main(["recon", str(raw), "-o", str(tmp_path / "cold.h5"), *RECON]) == 0
    assert main(["recon", str(raw), "-o", str(tmp_path / "warm.h5"), "--warm-start", *RECON]) == 0
    cold, warm = read_images(tmp_path / "cold.h5")[1], read_images(tmp_path / "warm.h5")[1]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(cold[:3], warm[:3]))
    assert not all(np.array_equal(a.data, b.data) for a, b in zip(cold[3:], warm[3:]))


@pytest.mark.parametrize("args, fragment", [
    (["render", "{d}/fit.h5", "-o", "{t}/x.h5"], "is not a DA-INR model file"),
    (["render", "{d}/model.pt", "-o", "{t}/x.h5", "--slice", "5"], "--slice [5] not in"),
    (["render", "{d}/model.pt", "-o", "{t}/x.h5", "--render-frames", "1"], "must be 0"),
    (["render", "{d}/model.pt", "-o", "{d}/model.pt"], "must differ from the model file"),
    (["recon", "{raw}", "-o", "{t}/x.h5", "--method", "adjoint", "--motion"], "need method dainr"),
    (["recon", "{raw}", "-o", "{t}/x.h5", "--method", "adjoint", "--save-model", "{t}/m.pt"], "need method dainr"),
    (["recon", "{raw}", "-o", "{t}/x.h5", "--save-model", "{t}/x.h5"], "is also -o: give another file name"),
    (["recon", "{raw}", "-o", "{t}/x.h5", "--truth", "{truth}", "--render-frames", "5"], "--truth compares"),
])
def test_refusals_are_one_line(stack, tmp_path, capsys, args, fragment):
    d, raw = stack
    args = [a.format(d=d, t=tmp_path, raw=raw, truth=raw.with_suffix(".npy")) for a in args]
    assert main([*args, "-q"] + (["--preset", "cpu-test"] if args[0] == "recon" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err, err
    assert not (tmp_path / "m.pt").exists()
