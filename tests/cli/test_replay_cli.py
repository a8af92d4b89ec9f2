"""``dainr replay`` refusals before any reply: one line on stderr, no progress bar, no output file."""

from __future__ import annotations

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
