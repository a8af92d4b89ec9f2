"""Radial trajectories: units, angle conventions, readout positions."""

import math

import numpy as np
import pytest

from dainr.physics import GOLDEN_ANGLE_RAD, radial_trajectory, ramp_density, readout_positions, spoke_angles
from dainr.physics.trajectory import angles_from_counter


def test_golden_angle_value():
    assert math.degrees(GOLDEN_ANGLE_RAD) == pytest.approx(111.246, abs=1e-3)


def test_golden_angle_on_global_counter():
    a = spoke_angles("goldenangle", 3, 4, first_counter=10)
    assert a[2, 1] == pytest.approx((10 + 2 * 4 + 1) * GOLDEN_ANGLE_RAD)
    n = np.array([10, 19])
    assert np.allclose(angles_from_counter("goldenangle", n, n % 4, 4), n * GOLDEN_ANGLE_RAD)


def test_uniform_per_frame():
    a = spoke_angles("uniform", 2, 4)
    assert np.allclose(a[0], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]) and np.allclose(a[1], a[0])


def test_tddip_radians_and_row_pairing():
    """The reference uses θ = 111.246·(i+1) as radians and pairs k·cosθ with rows (ky)."""
    t = radial_trajectory("tddip", 1, 2, 8)
    theta = 111.246
    k = (np.arange(8) - 3.5) / 8
    assert np.allclose(t[0, 0, :, 1], k * np.cos(theta), atol=1e-6)
    assert np.allclose(t[0, 0, :, 0], k * np.sin(theta), atol=1e-6)


def test_units_and_centre():
    r = readout_positions(256)
    assert r[128] == 0 and r[0] == -0.5 and r.max() < 0.5
    t = radial_trajectory("goldenangle", 2, 3, 64)
    assert t.shape == (2, 3, 64, 2) and t.dtype == np.float32
    assert np.all(np.linalg.norm(t, axis=-1) <= 0.5 + 1e-6)
    a = spoke_angles("goldenangle", 2, 3)
    assert np.allclose(t[1, 2, 40], (40 - 32) / 64 * np.array([np.cos(a[1, 2]), np.sin(a[1, 2])]), atol=1e-6)


def test_ramp_density_covers_disc():
    t = radial_trajectory("goldenangle", 1, 64, 128)
    w = ramp_density(t)
    assert w.shape == (1, 64, 128)
    assert w.sum() == pytest.approx(np.pi * 0.25, rel=0.03)
    assert w[0, 0, 127] > w[0, 0, 70] > w[0, 0, 64] > 0
