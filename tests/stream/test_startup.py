"""The engine's start-up (:mod:`dainr.stream.startup`) and what a front end imports before it (issue 16 goal 2)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from dainr.stream.startup import EngineStartup, StartupReport, warm_up


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after ``code``."""
    probe = textwrap.dedent(code) + "\nimport sys\nprint(' '.join(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_reading_a_raw_file_needs_no_torch():
    # dainr recon reads its input while PyTorch is imported in the background: the reader must not wait for it.
    assert "torch" not in _modules_after("import dainr.mrd, dainr.stream.collector, dainr.cli.recon")


def test_the_deterministic_switch_imports_no_compiler():
    mods = _modules_after("""
        import torch
        from dainr.recon.concurrent import deterministic
        with deterministic(True):
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert not torch.are_deterministic_algorithms_enabled()
    """)
    assert "torch._inductor" not in mods and "torch._dynamo" not in mods


def test_warm_up_imports_the_engine_and_torch_optim_s_dynamo():
    report = warm_up("cpu")
    assert [name for name, *_ in report.phases] == ["import torch", "import engine"]
    assert all(end >= start for _, start, end in report.phases)
    assert report.cuda_devices == []
    assert {"torch._dynamo", "dainr.recon.engine"} <= set(sys.modules)


def test_engine_startup_runs_in_the_background_and_survives_a_bad_device_spec():
    report = EngineStartup("no-such-device").wait()  # the run reports the bad spec itself, in its own words
    assert [name for name, *_ in report.phases] == ["import torch", "import engine"]


def test_engine_startup_calls_on_done_with_its_report_before_wait_returns():
    seen = []
    job = EngineStartup("cpu", on_done=seen.append)
    report = job.wait()
    assert job.done and seen == [report]
    assert report.seconds == pytest.approx(report.phases[-1][2] - report.phases[0][1])
    assert re.fullmatch(r"import torch [\d.]+ s, import engine [\d.]+ s", report.summary())


def test_startup_report_summary_names_the_gpus():
    report = StartupReport(phases=[("import torch", 10.0, 12.0), ("CUDA init", 11.0, 12.5)], cuda_devices=["cuda:0"])
    assert report.seconds == 2.5
    assert report.summary() == "import torch 2.00 s, CUDA init 1.50 s (cuda:0)"
    assert StartupReport().seconds == 0.0 and StartupReport().summary() == "nothing completed"
