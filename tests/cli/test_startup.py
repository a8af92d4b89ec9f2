"""Start-up of the ``dainr`` command: no heavy import before a command needs it, Ctrl-C is one line, every command's
parser builds, and ``recon`` picks the CPU preset on a machine without a GPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dainr.cli import COMMANDS, _parser, main
from dainr.config import DEFAULT_PRESET, available_presets

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


@pytest.mark.parametrize("argv", [["--help"], ["config", "show"], ["config", "--help"], ["compare", "--help"]])
def test_help_and_config_show_import_no_torch(argv):
    code = ("import sys\n"
            "from dainr.cli import main\n"
            "try:\n"
            f"    main({argv!r})\n"
            "except SystemExit:\n"
            "    pass\n"
            "heavy = sorted(m for m in ('torch', 'ismrmrd', 'h5py', 'scipy') if m in sys.modules)\n"
            "print('heavy:', heavy, file=sys.stderr)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "heavy: []" in run.stderr, run.stderr


def test_importing_the_gadget_and_the_engine_prints_nothing():
    """The README's ``python -c "import gadget.dainr_gadget"`` check: no warning (torchkbnufft's torch.jit.script
    deprecation is filtered where it is imported, whatever ismrmrd does to the global filters)."""
    run = subprocess.run([sys.executable, "-c", "import gadget.dainr_gadget, dainr.recon"], capture_output=True,
                         text=True, env=ENV, timeout=300, cwd=str(REPO))
    assert run.returncode == 0 and run.stderr == "", run.stderr


def test_ctrl_c_is_one_line():
    """SIGINT while a command runs (here a stand-in that waits) gives one line and status 130, no traceback."""
    code = ("import sys, time\n"
            "import dainr.cli.config as c\n"
            "def wait(args):\n"
            "    print('ready', flush=True)\n"
            "    time.sleep(60)\n"
            "c.run = wait\n"
            "from dainr.cli import main\n"
            "sys.exit(main(['config', 'show']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.strip() == "dainr config: interrupted"


def test_ctrl_c_while_parsing_is_one_line(monkeypatch, capsys):
    def interrupted(command=None):
        raise KeyboardInterrupt

    monkeypatch.setattr("dainr.cli._parser", interrupted)
    assert main(["recon", "--help"]) == 130
    assert capsys.readouterr().err.strip() == "dainr: interrupted"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_builds_its_parser(command, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser(command).parse_args([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: dainr {command}") and "--debug" in out


def test_recon_without_preset_takes_the_cpu_preset_without_a_gpu(raw_file, tmp_path, monkeypatch, caplog):
    """No --preset: ``cpu`` where the device resolves to the CPU (said in one line for DA-INR), the default preset
    where it resolves to a GPU; an explicit --preset is kept."""
    import dataclasses

    import dainr.recon
    import dainr.recon.device as device_mod
    import torch

    assert "cpu" in available_presets()
    real = dainr.recon.reconstruct
    seen = []

    def engine(cine, config, **kwargs):  # records the config, runs the (cheap) adjoint
        seen.append(config.preset)
        return real(cine, dataclasses.replace(config, method="adjoint", device="cpu"), **kwargs)

    monkeypatch.setattr(dainr.recon, "reconstruct", engine)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    raw, _ = raw_file
    report = tmp_path / "r.json"
    caplog.set_level("INFO")
    assert main(["recon", str(raw), "-o", str(tmp_path / "a.h5"), "--report", str(report), "-q"]) == 0
    assert seen == ["cpu"] and json.loads(report.read_text())["preset"] == "cpu"
    notes = [r.getMessage() for r in caplog.records if "no CUDA GPU" in r.getMessage()]
    assert notes == [f"no CUDA GPU: using the preset cpu (--preset {DEFAULT_PRESET} runs the GPU preset on the "
                     "CPU, far slower)"]
    assert main(["recon", str(raw), "-o", str(tmp_path / "b.h5"), "--preset", DEFAULT_PRESET, "-q"]) == 0
    assert seen[-1] == DEFAULT_PRESET
    # Where a GPU is found the default preset stays (the device check is all that differs).
    from dainr.stream import exam

    monkeypatch.setattr(device_mod, "resolve_devices", lambda spec: ["cuda:0"])
    monkeypatch.setattr(exam, "plan_exam", lambda cines, cfg, devices=None, per_device=None, batch_slices=None:
                        exam.ExamPlan(devices=("cpu",), per_device=1, configs=tuple([cfg] * len(cines))))
    assert main(["recon", str(raw), "-o", str(tmp_path / "c.h5"), "-q"]) == 0
    assert seen[-1] == DEFAULT_PRESET
