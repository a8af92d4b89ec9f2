"""The shared real-data folder, and a skip with the reason when a file of it is absent."""

from __future__ import annotations

import pytest

from tests.conftest import SHARED_DATA

__all__ = ["SHARED_DATA", "need"]


def need(*names: str) -> None:
    """Skip the calling test, naming the files and the folder, unless every file is in ``SHARED_DATA``."""
    missing = [n for n in names if not (SHARED_DATA / n).is_file()]
    if missing:
        pytest.skip(f"real cardiac data {', '.join(missing)} not found in {SHARED_DATA.resolve()}")
