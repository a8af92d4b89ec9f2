import numpy as np
import pytest

from dainr.errors import InputError
from dainr.prep import apply_scale, estimate_coil_maps, intensity_scale, undo_scale

from .simulated import analytic_maps, simulate, smooth_object


@pytest.fixture(scope="module")
def unit_map_cine():
    """A cine whose true maps have Σ|S|² = 1, so the combined adjoint image is the object itself."""
    images = smooth_object(6, 64, 64)
    maps = analytic_maps(8, 64, 64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    cine = simulate(images, maps, spokes=24)
    return cine, images, estimate_coil_maps(cine)


def test_scale_is_the_99th_percentile_of_the_object(unit_map_cine):
    cine, images, maps = unit_map_cine
    s = intensity_scale(cine, maps)
    inside = (np.abs(maps) ** 2).sum(0) > 0
    expected = np.percentile(np.abs(images.mean(0))[inside], 99)
    assert abs(s / expected - 1) < 0.05, (s, expected)
    assert abs(intensity_scale(apply_scale(cine, s), maps) - 1) < 1e-4


def test_scale_is_homogeneous_and_apply_undo_round_trip(unit_map_cine):
    cine, images, maps = unit_map_cine
    s = intensity_scale(cine, maps)
    scaled = apply_scale(cine, 1 / 250.0)  # k-space × 250
    assert abs(intensity_scale(scaled, maps) / (250 * s) - 1) < 1e-4
    assert scaled.kspace.dtype == np.complex64 and scaled is not cine
    assert np.allclose(cine.kspace * 250, scaled.kspace, rtol=1e-5)  # the input is untouched
    assert np.allclose(undo_scale(images / s, s), images, rtol=1e-5)
    s99 = intensity_scale(cine, maps, percentile=99.0)
    s50 = intensity_scale(cine, maps, percentile=50.0)
    assert s50 < s99


def test_scale_of_empty_data_is_refused(unit_map_cine):
    cine, _, maps = unit_map_cine
    empty = apply_scale(cine, 1.0)
    empty.kspace[:] = 0
    with pytest.raises(InputError, match="no signal"):
        intensity_scale(empty, maps)


def test_scale_checks_map_shape(unit_map_cine):
    cine, _, maps = unit_map_cine
    with pytest.raises(ValueError):
        intensity_scale(cine, maps[:4])
