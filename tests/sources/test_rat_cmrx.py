"""The rat cine and the moving CMRxRecon frame: shapes, motion over the cycle, coil layouts apart from ACDC's,
``dainr simulate --source rat|cmrx``, and the one-line error when the data are absent."""

import numpy as np
import pytest

from dainr.cli import main
from dainr.errors import InputError
from dainr.sources import REAL_SOURCES, cmrx_cine, rat_cine, rat_images
from dainr.sources.acdc import ACDC_FILE, acdc_cine
from dainr.sources.cmrx import CMRX_FILE, contract
from dainr.sources.radial_frame import RADIAL_FILE
from dainr.sources.rat import RAT_FILE
from tests.sources.helpers import SHARED_DATA, need

FILES = {rat_cine: RAT_FILE, cmrx_cine: CMRX_FILE}


@pytest.mark.parametrize("source", [rat_cine, cmrx_cine], ids=["rat", "cmrx"])
def test_shapes_normalisation_and_a_cycle_that_moves(source):
    need(FILES[source], RADIAL_FILE)
    cine = source(32, frames=12, coils=3, seed=5, data_dir=SHARED_DATA)
    assert cine.images.shape == (12, 32, 32) and cine.images.dtype == np.complex64
    assert cine.coil_maps.shape == (3, 32, 32) and cine.coil_maps.dtype == np.complex64
    assert abs(np.abs(cine.images).max() - 1) < 1e-6
    assert np.allclose((np.abs(cine.coil_maps) ** 2).sum(0), 1, atol=1e-4)
    mag = np.abs(cine.images)
    # The heart beats: mid-cycle differs from frame 0 more than the last frame (its neighbour over the cycle) does.
    assert np.abs(mag[6] - mag[0]).mean() > 2 * np.abs(mag[-1] - mag[0]).mean()
    again = source(32, frames=12, coils=3, seed=5, data_dir=SHARED_DATA)
    assert np.array_equal(again.images, cine.images)
    other = source(32, frames=12, coils=3, seed=6, data_dir=SHARED_DATA)
    assert np.allclose(np.abs(other.images), mag, atol=1e-6) and not np.allclose(other.images, cine.images)


def test_rat_keeps_its_8_frames_and_interpolates_through_them():
    need(RAT_FILE)
    native = np.abs(rat_images(24, None, data_dir=SHARED_DATA))
    longer = np.abs(rat_images(24, 16, data_dir=SHARED_DATA))[::2]  # frames 0, 2, .. sit at the native phases
    assert native.shape == (8, 24, 24)
    assert np.allclose(longer / longer.max(), native / native.max(), atol=1e-5)


def test_contraction_draws_a_ring_towards_the_centre():
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32.0, xx - 30.0)
    ring = np.exp(-((r - 12.0) ** 2) / 4.0)
    assert np.array_equal(contract(ring, (32.0, 30.0), 15.0, 0.0), ring)
    moved = contract(ring, (32.0, 30.0), 15.0, 0.3)
    radius = lambda img: (img * r).sum() / img.sum()  # noqa: E731
    assert 9.0 < radius(moved) < 11.0 < radius(ring)  # 12 / (1 + 0.3·e^{-0.32}) ≈ 9.9 px


def test_cmrx_cycle_is_symmetric_and_starts_at_rest():
    need(CMRX_FILE, RADIAL_FILE)
    mag = np.abs(cmrx_cine(24, frames=10, coils=1, data_dir=SHARED_DATA).images)
    assert np.allclose(mag[1], mag[-1], atol=1e-6) and np.allclose(mag[4], mag[6], atol=1e-6)
    assert np.abs(mag[5] - mag[0]).max() > 0.1


def test_coil_layouts_differ_from_acdc():
    need(ACDC_FILE, RAT_FILE, CMRX_FILE, RADIAL_FILE)
    maps = [s(16, frames=2, coils=4, data_dir=SHARED_DATA).coil_maps for s in (acdc_cine, rat_cine, cmrx_cine)]
    for i in range(3):
        for j in range(i):
            assert np.abs(maps[i] - maps[j]).max() > 0.3


@pytest.mark.parametrize("name", ["rat", "cmrx"])
def test_simulate_cli_writes_the_source(tmp_path, name):
    need(FILES[REAL_SOURCES[name]], RADIAL_FILE)
    out, truth = tmp_path / "raw.h5", tmp_path / "truth.npy"
    assert main(["simulate", "--source", name, "--matrix", "16", "--frames", "3", "--coils", "2", "--spokes", "5",
                 "--seed", "4", "-o", str(out), "--truth", str(truth), "-q"]) == 0
    expected = REAL_SOURCES[name](16, frames=3, coils=2, seed=4, data_dir=SHARED_DATA).images
    assert np.array_equal(np.load(truth), expected)


@pytest.mark.parametrize("source", [rat_cine, cmrx_cine], ids=["rat", "cmrx"])
def test_missing_data_names_file_place_and_alternative(tmp_path, source):
    with pytest.raises(InputError) as info:
        source(16, frames=2, coils=2, data_dir=tmp_path)
    msg = str(info.value)
    assert FILES[source] in msg and str(tmp_path) in msg and "--source phantom" in msg and "\n" not in msg
