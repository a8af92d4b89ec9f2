"""Fixtures of the interop tests: the project's files (tiny), and ``dainr serve`` as a separate process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import simulate_file
from tests.interop.tools import REPO
from tests.server.conftest import wait_until

TINY = dict(matrix=16, frames=3, coils=2, spokes=5)

#: Chain properties of the copy of dainr_raw.xml the server is given: CPU-sized, and a linear method, so that the
#: images of every front end are compared bit for bit.
CHAIN_PROPERTIES = '<property name="preset" value="cpu-test"/><property name="method" value="cgsense"/>'


@pytest.fixture(scope="session")
def raw_traj(tmp_path_factory) -> Path:
    """One slice, golden angle, traj and noise scans."""
    return simulate_file(tmp_path_factory.mktemp("interop") / "traj.h5", **TINY)[0]


@pytest.fixture(scope="session")
def raw_notraj(tmp_path_factory) -> Path:
    """Two slices interleaved frame by frame, no traj."""
    return simulate_file(tmp_path_factory.mktemp("interop") / "notraj.h5", "--slices", "2", "--no-traj",
                         "--interleave", seed=1, **TINY)[0]


@pytest.fixture(scope="session")
def chain_dir(tmp_path_factory) -> Path:
    """A --config-dir holding dainr_raw.xml with :data:`CHAIN_PROPERTIES` (clients name it as usual)."""
    d = tmp_path_factory.mktemp("chains")
    text = (REPO / "xml_configs" / "dainr_raw.xml").read_text()
    default = '<property name="preset" value="fast"/>'
    assert default in text
    (d / "dainr_raw.xml").write_text(text.replace(default, CHAIN_PROPERTIES))
    return d


@pytest.fixture(scope="module")
def served(tmp_path_factory, chain_dir):
    """``(port, log path)`` of ``dainr serve --device cpu --default-config cpu-test --config-dir CHAINS``."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "dainr", "serve", "--port", "0", "--device", "cpu",
                                 "--default-config", "cpu-test", "--config-dir", str(chain_dir), "--timeout", "60",
                                 "--grace", "10"], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    listening = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
    try:
        wait_until(lambda: listening.search(log.read_text()) or proc.poll() is not None, what="the server to listen")
        match = listening.search(log.read_text())
        assert match, log.read_text()
        yield int(match.group(1)), log
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
