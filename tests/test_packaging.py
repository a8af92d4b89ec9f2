"""The package as ``pip install .`` (not editable) builds it: no setuptools warning about the package layout, the
presets and the Gadgetron chains inside, and an installed server that finds the built-in chains by name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("setup.cfg", "setup.py", "pyproject.toml", "README.md", "MANIFEST.in", "dainr", "gadget", "xml_configs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """(wheel path, pip's verbose build log) of the checkout's package, built without network or isolation."""
    pytest.importorskip("setuptools", minversion="70.1")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w",
                          str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300, cwd=str(tmp))
    assert res.returncode == 0, res.stderr[-2000:]
    (path,) = (tmp / "dist").glob("*.whl")
    return path, res.stdout + res.stderr


def test_wheel_builds_without_layout_warnings_and_holds_presets_and_chains(wheel):
    path, log = wheel
    for warning in ("would be ignored", "is absent from the `packages` configuration", "SetuptoolsDeprecationWarning"):
        assert warning not in log, warning
    names = set(zipfile.ZipFile(path).namelist())
    for needed in ["dainr/presets/fast.yaml", "dainr/presets/cpu.yaml", "dainr/cli/outputs.py"] + [
            f"dainr/xml_configs/{p.name}" for p in (REPO / "xml_configs").glob("*.xml")]:
        assert needed in names, needed
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


def test_installed_server_finds_the_built_in_chains(wheel, tmp_path):
    path, _ = wheel
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                          str(target), str(path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    code = ("from dainr.server.config_names import BUILTIN_XML_DIR, settings_for_name\n"
            "from dainr.stream.settings import ReconSettings\n"
            "s = settings_for_name('dainr_raw.xml', ReconSettings.load('cpu-test'))\n"
            "print(BUILTIN_XML_DIR)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                         env=dict(os.environ, PYTHONPATH=str(target)))
    assert run.returncode == 0, run.stderr[-2000:]
    assert Path(run.stdout.strip()) == target / "dainr" / "xml_configs"
