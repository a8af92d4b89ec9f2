"""``dainr simulate`` + ``dainr recon`` end to end, and the refusal of bad input files."""

import json
import subprocess
import sys

import h5py
import numpy as np

from dainr.cli import main
from dainr.config import load_config
from dainr.metrics import quality
from dainr.mrd import read_images, read_raw
from dainr.recon import reconstruct
from tests.conftest import simulate_file


def test_recon_baselines_end_to_end(raw_file, tmp_path):
    raw, truth = raw_file
    psnr = {}
    for method in ("adjoint", "cgsense"):
        out, rep = tmp_path / f"{method}.h5", tmp_path / f"{method}.json"
        assert main(["recon", str(raw), "-o", str(out), "--method", method, "--preset", "cpu-test", "--truth",
                     str(truth), "--report", str(rep), "-q"]) == 0
        images = read_images(out, "dataset")[1]
        assert len(images) == 4
        assert [im.getHead().phase for im in images] == [0, 1, 2, 3]
        report = json.loads(rep.read_text())
        assert report["slices"][0]["method"] == method
        psnr[method] = report["psnr"]
    assert psnr["cgsense"] > psnr["adjoint"]


def test_recon_dainr_cpu_test_preset(raw_file, tmp_path, monkeypatch):
    """``dainr recon`` runs the engine once per slice with the preset's config and writes its DA-INR cine (magnitudes
    bit for bit, one image per frame in order); its report gives that cine's PSNR; and the preset's 12 steps do fit:
    far closer to the truth than one step."""
    import dainr.recon

    runs = []

    def engine(cine, config, **kwargs):
        runs.append((cine, config, reconstruct(cine, config, **kwargs)))
        return runs[-1][2]

    monkeypatch.setattr(dainr.recon, "reconstruct", engine)
    raw, truth_file = raw_file
    out, gif, rep = tmp_path / "dainr.h5", tmp_path / "p.gif", tmp_path / "r.json"
    assert main(["recon", str(raw), "-o", str(out), "--preset", "cpu-test", "--truth", str(truth_file),
                 "--preview", str(gif), "--report", str(rep), "-q"]) == 0
    ((cine, config, result),) = runs
    assert config == load_config("cpu-test") and result.method == "dainr"
    assert np.array_equal(cine.kspace, read_raw(raw).slices[0].kspace)
    images = read_images(out, "dataset")[1]
    assert [(im.slice, im.phase, im.image_index) for im in images] == [(0, f, f + 1) for f in range(4)]
    for im, frame in zip(images, result.images):
        assert im.data.dtype == np.float32 and np.array_equal(im.data[0, 0], np.abs(frame))
    truth = np.load(truth_file)
    truth = truth[0] if truth.ndim == 4 else truth
    report = json.loads(rep.read_text())
    assert report["psnr"] == round(quality(result.images, truth).psnr, 3)
    one_step = reconstruct(cine, load_config("cpu-test", None, ["dainr.steps=1"]))
    assert report["psnr"] > quality(one_step.images, truth).psnr + 5.0
    assert gif.stat().st_size > 0


def test_output_group_and_complex(raw_file, tmp_path):
    raw, _ = raw_file
    out = tmp_path / "c.h5"
    assert main(["recon", str(raw), "-o", str(out), "--method", "adjoint", "--group", "mygroup", "--complex",
                 "--series", "7", "-q"]) == 0
    with h5py.File(out, "r") as f:
        assert "mygroup/image_7" in f
    im = read_images(out, "mygroup")[7][0]
    assert np.iscomplexobj(im.data)


def _bad_files(tmp_path):
    text = tmp_path / "text.h5"
    text.write_text("this is not HDF5\n")
    empty_h5 = tmp_path / "nodataset.h5"
    with h5py.File(empty_h5, "w") as f:
        f.create_group("other")
    bad_xml = tmp_path / "badxml.h5"
    raw, _ = simulate_file(tmp_path / "good.h5", matrix=16, frames=2, coils=2, spokes=4)
    import shutil

    shutil.copy(raw, bad_xml)
    with h5py.File(bad_xml, "r+") as f:
        del f["dataset/xml"]
        f.create_dataset("dataset/xml", data=np.array([b"<notismrmrd>hello</notismrmrd>"], dtype=object),
                         dtype=h5py.string_dtype())
    noise_only = tmp_path / "noiseonly.h5"
    shutil.copy(raw, noise_only)
    with h5py.File(noise_only, "r+") as f:
        data = f["dataset/data"][:]
        flags = data["head"]["flags"]
        keep = data[(flags & np.uint64(1 << 18)) != 0]  # ACQ_IS_NOISE_MEASUREMENT = bit 19 (1-based)
        del f["dataset/data"]
        f.create_dataset("dataset/data", data=keep, maxshape=(None,), chunks=True)
    return {
        "missing": (tmp_path / "does_not_exist.h5", "not found"),
        "not hdf5": (text, "HDF5"),
        "no dataset": (empty_h5, "dataset"),
        "bad header": (bad_xml, "ISMRMRD"),
        "no imaging": (noise_only, "imaging"),
    }


def test_bad_inputs_one_line_nonzero(tmp_path, capsys):
    for name, (path, words) in _bad_files(tmp_path).items():
        out = tmp_path / f"out_{name.replace(' ', '_')}.h5"
        rc = main(["recon", str(path), "-o", str(out), "--method", "adjoint", "-q"])
        err = capsys.readouterr().err.strip()
        assert rc != 0, name
        assert len(err.splitlines()) == 1, (name, err)
        assert words.lower() in err.lower(), (name, err)
        assert "Traceback" not in err
        assert not out.exists(), name


def test_console_script_exit_status(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dainr", "recon", str(tmp_path / "missing.h5"), "-o",
                        str(tmp_path / "o.h5")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "missing.h5" in r.stderr


def test_slice_selection_config_file_and_png_preview(tmp_path, capsys):
    raw, truth = simulate_file(tmp_path / "ms.h5", "--slices", "2", matrix=16, frames=3, coils=2, spokes=5)
    cfg = tmp_path / "site.yaml"
    cfg.write_text("method: adjoint\n")
    out, png = tmp_path / "one.h5", tmp_path / "p.png"
    assert main(["recon", str(raw), "-o", str(out), "--config", str(cfg), "--slice", "1", "--truth", str(truth),
                 "--preview", str(png), "-q"]) == 0
    images = read_images(out)[1]
    assert [im.getHead().slice for im in images] == [1, 1, 1]
    assert [im.getHead().image_index for im in images] == [4, 5, 6]  # numbering does not depend on the selection
    assert png.stat().st_size > 0 and "PSNR" in capsys.readouterr().out
    rc = main(["recon", str(raw), "-o", str(tmp_path / "x.h5"), "--method", "adjoint", "--slice", "5", "-q"])
    assert rc == 2 and "--slice [5] not in the data" in capsys.readouterr().err


def test_bad_config_and_simulate_arguments(raw_file, tmp_path, capsys):
    raw, _ = raw_file
    out = tmp_path / "o.h5"
    assert main(["recon", str(raw), "-o", str(out), "--set", "dainr.stepz=3", "-q"]) == 2
    assert "unknown config key 'dainr.stepz'" in capsys.readouterr().err and not out.exists()
    assert main(["simulate", "--matrix", "4", "-o", str(tmp_path / "s.h5"), "-q"]) == 2
    assert "--matrix 4 is out of range" in capsys.readouterr().err


def test_truth_with_the_wrong_slice_count_is_refused(tmp_path, capsys):
    raw, truth = simulate_file(tmp_path / "ms.h5", "--slices", "2", matrix=16, frames=3, coils=2, spokes=5)
    one = tmp_path / "one.npy"
    np.save(one, np.load(truth)[0])
    assert main(["recon", str(raw), "-o", str(tmp_path / "o.h5"), "--method", "adjoint", "--truth", str(one),
                 "-q"]) == 2
    assert "holds 1 slice(s) but the data has 2" in capsys.readouterr().err
