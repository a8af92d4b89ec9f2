"""``dainr compare a.json b.json ...``: the reports of ``dainr recon --report`` side by side, as a table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dainr.errors import InputError

#: Columns: header, and how a report fills it.
_COLUMNS = (
    ("method", lambda r: r["method"]),
    ("preset", lambda r: r.get("preset", "-")),
    ("slices", lambda r: str(len(r["slices"]))),
    ("seconds", lambda r: f"{sum(s['seconds'] for s in r['slices']):.1f}"),
    ("PSNR dB", lambda r: f"{r['psnr']:.2f}" if "psnr" in r else "-"),
    ("SSIM", lambda r: f"{r['ssim']:.4f}" if "ssim" in r else "-"),
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", description="Print a table of reconstructions (method, preset, seconds, mean "
                                              "PSNR and SSIM against the truth) from their dainr recon --report "
                                              "files.")
    p.add_argument("reports", type=Path, nargs="+", metavar="REPORT", help="JSON report of dainr recon --report")
    return p


def read_report(path: Path) -> dict:
    """A report of ``dainr recon --report``; :class:`InputError` naming the file when it is not one."""
    try:
        report = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read report {path}: {exc.strerror}") from None
    except ValueError:
        raise InputError(f"{path} is not JSON; give the file dainr recon --report wrote") from None
    if not isinstance(report, dict) or "method" not in report or not isinstance(report.get("slices"), list):
        raise InputError(f"{path} is not a report of dainr recon --report (no method and slices)")
    return report


def table(reports: list[tuple[Path, dict]]) -> str:
    """The reports as an aligned text table, one row each, with the file in the last column."""
    rows = [[name for name, _ in _COLUMNS] + ["report"]]
    for path, r in reports:
        try:
            rows.append([cell(r) for _, cell in _COLUMNS] + [str(path)])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"report {path} lacks or has a bad {exc}: give the file dainr recon --report "
                             "wrote") from None
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    # Text columns left-aligned, numbers right-aligned.
    left = {0, 1, len(widths) - 1}
    return "\n".join("  ".join(v.ljust(w) if c in left else v.rjust(w) for c, (v, w) in enumerate(zip(row, widths)))
                     .rstrip() for row in rows)


def run(args: argparse.Namespace) -> int:
    print(table([(path, read_report(path)) for path in args.reports]))
    return 0
