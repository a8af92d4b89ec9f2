"""``dainr config show`` prints the configuration ``dainr recon`` would use; help texts list the presets folder."""

import argparse
import subprocess
import sys

import yaml

from dainr.cli import _parser, main
from dainr.config import DEFAULT_PRESET, available_presets, load_config


def test_config_show_prints_the_resolved_config_as_yaml(tmp_path, capsys):
    mine = tmp_path / "mine.yaml"
    mine.write_text("cgsense:\n  iterations: 3\n")
    assert main(["config", "show", "--preset", "cpu-test", "--config", str(mine), "--set", "dainr.steps=5",
                 "--set", "method=cgsense"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"# preset cpu-test, --config {mine}, --set dainr.steps=5, --set method=cgsense"
    shown = yaml.safe_load(out)
    assert shown["method"] == "cgsense" and shown["dainr"]["steps"] == 5 and shown["cgsense"]["iterations"] == 3
    assert shown["dainr"]["hidden"] == 16 and "preset" not in shown  # the preset's own values, no label
    dump = tmp_path / "dump.yaml"
    dump.write_text(out)
    expected = load_config("cpu-test", mine, ["dainr.steps=5", "method=cgsense"])
    assert load_config("cpu-test", dump) == expected  # --config reads it back


def test_config_show_defaults_to_the_default_preset(capsys):
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# preset {DEFAULT_PRESET}\n")
    assert yaml.safe_load(out)["dainr"]["steps"] == load_config(DEFAULT_PRESET).dainr.steps


def test_config_show_refuses_in_one_line(capsys):
    assert main(["config", "show", "--set", "preset=paper"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "dainr config: error: config key 'preset' cannot be overridden (got 'paper'); use --preset paper"
    assert main(["config", "show", "--set", "dainr.grid.backend=triton"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("dainr config: error: config key 'dainr.grid.backend' is 'triton'; choose one of auto, torch, "
                   "tcnn")


def test_help_texts_list_every_preset_of_the_folder():
    listed = ", ".join(available_presets())
    assert "cpu" in available_presets()
    for command, option in [("recon", "--preset"), ("config", "--preset"), ("serve", "--default-config"),
                            ("replay", "--config")]:
        sub = next(a for a in _parser(command)._actions if isinstance(a, argparse._SubParsersAction))
        action = next(a for a in sub.choices[command]._actions if option in a.option_strings)
        assert listed in action.help, (command, option)
        if command in ("config", "serve"):
            assert action.default == DEFAULT_PRESET
        if command == "recon":  # chosen by the device (tests/cli/test_startup.py)
            assert action.default is None and f"default {DEFAULT_PRESET} with a CUDA GPU, cpu without" in action.help


def test_config_show_needs_no_torch():
    code = ("import argparse, sys\n"
            "from dainr.cli import config as c\n"
            "p = argparse.ArgumentParser(); c.add_parser(p.add_subparsers())\n"
            "c.run(p.parse_args(['config', 'show', '--preset', 'paper']))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert yaml.safe_load(run.stdout)["dainr"]["steps"] == 1001
