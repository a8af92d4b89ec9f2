"""Fixtures of the preparation tests."""

from __future__ import annotations

import pytest

from .simulated import SimulatedCine, analytic_maps, simulate, smooth_object


@pytest.fixture(scope="module")
def simulated() -> SimulatedCine:
    """64×64, 6 frames × 24 spokes, 8 coils, mild noise."""
    images = smooth_object(6, 64, 64)
    maps = analytic_maps(8, 64, 64)
    return SimulatedCine(simulate(images, maps, spokes=24, noise_std=2e-3), images, maps)
