"""``dainr replay`` refusals before any reply: one line on stderr, no progress bar, no output file."""

from __future__ import annotations

import importlib
import socket

import pytest

from dainr.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["missing file", "no server"])
def test_refusal_is_one_line(case, raw_file, tmp_path, capsys):
    raw = tmp_path / "missing.h5" if case == "missing file" else raw_file[0]
    out = tmp_path / "images.h5"
    assert main(["replay", str(raw), "--port", str(_free_port()), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "\r" not in err, err
    assert err.startswith("dainr replay: error: ")
    assert ("not found" if case == "missing file" else "cannot connect") in err
    assert not out.exists()


def test_bar_counts_images_back_and_notes_the_acquisitions_sent(raw_file, tmp_path, capsys, monkeypatch):
    """The bar's count and rate are the images that came back (server compute included, as it should be); the
    acquisitions sent are a note without a rate of their own. A stand-in server replies with the CLI's images."""
    from dainr.mrd import read_images
    from dainr.server.replay import ReplayResult

    raw, _ = raw_file
    ref = tmp_path / "ref.h5"
    assert main(["recon", str(raw), "-o", str(ref), "--method", "adjoint", "-q"]) == 0
    images = read_images(ref)[1]

    def fake_replay(path, host, port, progress=None, **kwargs):
        for n in range(1, len(images) + 1):
            progress(100, 100, n)
        return ReplayResult(images=images, header_xml=b"<xml/>", acquisitions=100, seconds=1.0, first_image_s=0.5)

    # dainr.server re-exports the function under the module's name: patch the module itself.
    monkeypatch.setattr(importlib.import_module("dainr.server.replay"), "replay", fake_replay)
    out = tmp_path / "images.h5"
    assert main(["replay", str(raw), "-o", str(out), "--group", "run"]) == 0
    err = capsys.readouterr().err
    last = [p for p in err.replace("\r", "\n").splitlines() if p.startswith("images back")][-1]
    assert f"{len(images)} images [" in last and "100/100 acquisitions sent" in last and "acq/s" not in last, last
    assert len(read_images(out, "run")[1]) == len(images)
