"""``dainr compare``: the reports of ``dainr recon --report`` as one table."""

from __future__ import annotations

import json

from dainr.cli import main


def _report(path, method, seconds, psnr=None, ssim=None, preset="cpu"):
    report = {"method": method, "preset": preset, "slices": [{"seconds": s} for s in seconds]}
    if psnr is not None:
        report.update(psnr=psnr, ssim=ssim)
    path.write_text(json.dumps(report))
    return path


def test_table_of_reports(tmp_path, capsys):
    a = _report(tmp_path / "adjoint.json", "adjoint", [0.25], 24.123, 0.61234)
    d = _report(tmp_path / "report.json", "dainr", [60.0, 30.04], 31.5, 0.9)
    n = _report(tmp_path / "nt.json", "cgsense", [2.0])
    assert main(["compare", str(a), str(d), str(n)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [
        ["method", "preset", "slices", "seconds", "PSNR", "dB", "SSIM", "report"],
        ["adjoint", "cpu", "1", "0.2", "24.12", "0.6123", str(a)],
        ["dainr", "cpu", "2", "90.0", "31.50", "0.9000", str(d)],
        ["cgsense", "cpu", "1", "2.0", "-", "-", str(n)],
    ]
    assert len({line.index("SSIM") if i == 0 else None for i, line in enumerate(lines)} - {None}) == 1


def test_bad_reports_are_one_line(tmp_path, capsys):
    text = tmp_path / "notes.json"
    text.write_text("not json")
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    broken = tmp_path / "broken.json"
    broken.write_text('{"method": "dainr", "slices": [{}]}')
    for path, words in ((tmp_path / "missing.json", "cannot read report"), (text, "is not JSON"),
                        (other, "is not a report"), (broken, "lacks or has a bad 'seconds'")):
        assert main(["compare", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
