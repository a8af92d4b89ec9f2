"""Fixtures of the gadget tests: tiny simulated raw files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import simulate_file

TINY = dict(matrix=16, frames=3, coils=2, spokes=5)


@pytest.fixture(scope="session")
def raw_single(tmp_path_factory) -> Path:
    """One slice, golden angle, with traj and noise scans."""
    return simulate_file(tmp_path_factory.mktemp("gadget") / "single.h5", **TINY)[0]


@pytest.fixture(scope="session")
def raw_multi_notraj(tmp_path_factory) -> Path:
    """Two slices interleaved frame by frame, no traj (angles from the spoke counter)."""
    return simulate_file(tmp_path_factory.mktemp("gadget") / "multi.h5", "--slices", "2", "--no-traj",
                         "--interleave", seed=1, **TINY)[0]

