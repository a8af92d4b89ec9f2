import numpy as np
import pytest

from dainr.errors import ConfigError, InputError
from dainr.sources.acdc import ACDC_FILE, acdc_cine
from dainr.sources.radial_frame import RADIAL_FILE, radial_cardiac_frame
from tests.sources.helpers import SHARED_DATA, need


@pytest.fixture(scope="module")
def cine64():
    need(ACDC_FILE, RADIAL_FILE)
    return acdc_cine(64, frames=12, coils=6, seed=3, data_dir=SHARED_DATA)


def test_shapes_and_normalisation(cine64):
    assert cine64.images.shape == (12, 64, 64) and cine64.images.dtype == np.complex64
    assert cine64.coil_maps.shape == (6, 64, 64) and cine64.coil_maps.dtype == np.complex64
    assert abs(np.abs(cine64.images).max() - 1) < 1e-6
    assert np.allclose((np.abs(cine64.coil_maps) ** 2).sum(0), 1, atol=1e-4)


def test_images_move_and_have_smooth_phase(cine64):
    mag = np.abs(cine64.images)
    # The heart beats: frames differ, and the first and last frames (neighbours over the cycle) are alike.
    assert np.abs(mag[6] - mag[0]).mean() > 2 * np.abs(mag[-1] - mag[0]).mean()
    bright = mag[0] > 0.2
    dphi = np.angle(cine64.images[0, :, 1:] * cine64.images[0, :, :-1].conj())
    assert np.abs(dphi[bright[:, 1:] & bright[:, :-1]]).max() < 0.2  # radians between neighbours


def test_determinism_and_seed(cine64):
    again = acdc_cine(64, frames=12, coils=6, seed=3, data_dir=SHARED_DATA)
    assert np.array_equal(again.images, cine64.images)
    assert np.array_equal(again.coil_maps, cine64.coil_maps)
    other = acdc_cine(64, frames=12, coils=6, seed=4, data_dir=SHARED_DATA)
    assert np.allclose(np.abs(other.images), np.abs(cine64.images), atol=1e-6)  # the seed changes only the phase
    assert not np.allclose(other.images, cine64.images)


def test_native_frames_non_square_and_all_coils():
    need(ACDC_FILE, RADIAL_FILE)
    cine = acdc_cine((48, 80), frames=None, coils=12, seed=0, data_dir=SHARED_DATA)
    assert cine.images.shape == (30, 48, 80)
    assert cine.coil_maps.shape == (12, 48, 80)
    assert np.allclose((np.abs(cine.coil_maps) ** 2).sum(0), 1, atol=1e-4)


def test_coil_count_is_checked():
    with pytest.raises(ConfigError, match="1..12"):
        acdc_cine(32, frames=4, coils=13, seed=0, data_dir=SHARED_DATA)


def test_missing_data_names_file_place_and_alternative(tmp_path):
    with pytest.raises(InputError) as info:
        acdc_cine(32, frames=4, coils=4, seed=0, data_dir=tmp_path)
    msg = str(info.value)
    assert ACDC_FILE in msg and str(tmp_path) in msg and "--source phantom" in msg and "\n" not in msg


def test_radial_frame_orientation_matches_the_readme_preview():
    """``traj = (imag k, real k)``: the gridded frame matches the preview image, its transpose does not."""
    need(RADIAL_FILE, "preview_gpuNUFFT_radial_cardiac_sos.png")
    from skimage.io import imread

    from dainr.prep import time_averaged_coil_images

    frame = radial_cardiac_frame(SHARED_DATA, matrix=(256, 256))
    rss = np.sqrt((np.abs(time_averaged_coil_images(frame)) ** 2).sum(0))[48:208, 48:208]
    preview = imread(SHARED_DATA / "preview_gpuNUFFT_radial_cardiac_sos.png").astype(float)
    assert preview.shape == (160, 160)
    corr = lambda a, b: np.corrcoef(a.ravel(), b.ravel())[0, 1]  # noqa: E731
    assert corr(rss, preview) > 0.9
    assert corr(rss.T, preview) < 0.5
