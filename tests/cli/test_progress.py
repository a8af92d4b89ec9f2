"""What ``dainr recon`` shows while it runs: one bar per slice that ends full, log lines printed above the bars
(tqdm's logging redirection), and where DA-INR stopped on its held-out spokes, the selected step."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from dainr.cli.recon import _fit_summary
from dainr.data import ReconResult

REPO = Path(__file__).resolve().parents[2]


def test_adjoint_bar_ends_full_and_log_lines_stay_off_the_bar(raw_file, tmp_path):
    raw, _ = raw_file
    run = subprocess.run([sys.executable, "-m", "dainr", "recon", str(raw), "-o", str(tmp_path / "a.h5"), "--method",
                          "adjoint"], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr, run.stderr
    pieces = re.split(r"[\r\n]", run.stderr)
    bars = [p for p in pieces if p.startswith("slice 0 adjoint:")]
    assert bars and "1/1" in bars[-1] and "done" in bars[-1], bars
    logs = [p for p in pieces if "INFO dainr.recon.engine" in p]
    assert logs, run.stderr
    # Written through tqdm, a log line starts a line of its own instead of running on after the bar.
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO ", p) for p in logs), logs


def _result(method, iterations, info):
    return ReconResult(images=np.zeros((1, 2, 2), np.complex64), method=method, seconds=1.0,
                       iterations=iterations, info=info)


def test_finished_bar_names_the_selected_step_and_its_held_out_loss():
    stopped = _result("dainr", 150, {"selected_step": 100, "steps_run": 150,
                                     "validation": [[50, 0.2], [100, 0.1], [150, 0.15]]})
    assert _fit_summary(stopped) == "150 steps, selected step 100 (held-out loss 1.000e-01)"
    assert _fit_summary(_result("dainr", 12, {})) == "12 steps"
    assert _fit_summary(_result("cgsense", 8, {})) == "8 iterations"
    assert _fit_summary(_result("adjoint", 0, {})) == "done"
