"""The pieces every real-data source shares: periodic resampling in time, cropping, the coil layout's turns."""

import numpy as np
import pytest

from dainr.sources.radial_frame import RADIAL_FILE, radial_coil_maps
from dainr.sources.realdata import crop_box, periodic_resample
from tests.sources.helpers import SHARED_DATA, need


def _cycle(frames: int) -> np.ndarray:
    """``(frames, 2, 3)``: smooth periodic signals sampled at phases f / frames."""
    t = np.arange(frames) / frames
    return np.stack([np.cos(2 * np.pi * t + k) + 0.3 * np.sin(4 * np.pi * t) for k in range(6)], -1).reshape(-1, 2, 3)


@pytest.mark.parametrize("kind", ["spline", "fourier"])
def test_periodic_resample_passes_through_the_frames_and_wraps(kind):
    coarse = _cycle(8)
    fine = periodic_resample(coarse, 32, kind)
    assert fine.shape == (32, 2, 3)
    assert np.allclose(fine[::4], coarse, atol=1e-12)  # frame i of 8 sits at frame 4i of 32
    # Between the frames it follows the smooth cycle, across the wrap (last frame -> frame 0) too.
    assert np.abs(fine - _cycle(32)).max() < 0.05
    assert np.abs(fine[-1] - fine[0]).max() < 0.5 * np.abs(fine[16] - fine[0]).max()


def test_periodic_resample_keeps_and_refuses():
    coarse = _cycle(8)
    assert periodic_resample(coarse, None, "spline") is coarse
    with pytest.raises(ValueError, match="fourier or spline"):
        periodic_resample(coarse, 16, "linear")


def test_crop_box_takes_the_largest_box_of_the_aspect_near_the_centre():
    rows, cols = crop_box((184, 256), 1.0, (100.0, 250.0))
    assert (rows.stop - rows.start, cols.stop - cols.start) == (184, 184)
    assert cols.stop == 256  # pushed inside the image
    rows, cols = crop_box((512, 246), 0.5, (257.0, 140.0))
    assert (rows.stop - rows.start, cols.stop - cols.start) == (123, 246)


def test_coil_layout_turns():
    need(RADIAL_FILE)
    plain = radial_coil_maps((24, 40), 4, SHARED_DATA)
    turned = radial_coil_maps((24, 40), 4, SHARED_DATA, turns=1)
    assert turned.shape == (4, 24, 40) and turned.flags.c_contiguous
    assert np.allclose((np.abs(turned) ** 2).sum(0), 1, atol=1e-4)
    upright = radial_coil_maps((40, 24), 4, SHARED_DATA)
    assert np.array_equal(turned, np.rot90(upright, 1, axes=(1, 2)))
    assert np.abs(turned - plain).max() > 0.3
