"""Shared fixtures: small simulated ISMRMRD raw files made with ``dainr simulate``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dainr.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "cardiac_data"


def simulate_file(path: Path, *extra: str, matrix: int = 32, frames: int = 4, coils: int = 4, spokes: int = 13,
                  snr: float = 200.0, seed: int = 0) -> tuple[Path, Path]:
    """Run ``dainr simulate`` into ``path`` (+ ``path.with_suffix('.npy')`` truth); returns both paths."""
    truth = path.with_suffix(".npy")
    rc = main(["simulate", "--matrix", str(matrix), "--frames", str(frames), "--coils", str(coils), "--spokes",
               str(spokes), "--snr", str(snr), "--seed", str(seed), "-o", str(path), "--truth", str(truth), "-q",
               *extra])
    assert rc == 0
    return path, truth


@pytest.fixture(scope="session")
def raw_file(tmp_path_factory) -> tuple[Path, Path]:
    """A 32×32, 4-frame, 4-coil, 13-spoke golden-angle phantom cine with noise scans."""
    return simulate_file(tmp_path_factory.mktemp("raw") / "raw.h5")
