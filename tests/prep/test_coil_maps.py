import numpy as np
import pytest

from dainr.errors import ConfigError
from dainr.prep import estimate_coil_maps, time_averaged_coil_images, walsh_maps
from dainr.prep.coil_maps import reference_phase, reference_vector, signal_mask

from .simulated import SHARED_DATA, analytic_maps, simulate, smooth_object


def _unit(maps):
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))


def _support(images):
    mag = np.abs(images).mean(0)
    return mag > 0.3 * mag.max()


def _roughness(maps, mask):
    """Mean squared difference between horizontal neighbours (summed over coils) inside ``mask``."""
    d = (np.abs(np.diff(maps, axis=-1)) ** 2).sum(0)
    return float(d[mask[:, 1:] & mask[:, :-1]].mean())


@pytest.mark.parametrize("method", ["walsh", "rss"])
def test_maps_match_truth_on_simulated_cine(simulated, method):
    est = estimate_coil_maps(simulated.cine, method=method)
    assert est.shape == simulated.maps.shape and est.dtype == np.complex64
    support = _support(simulated.images)
    true = _unit(simulated.maps)
    # Per pixel the sensitivity vector is known up to a phase common to all coils: compare the directions.
    per_pixel = np.abs((est.conj() * true).sum(0))[support]
    assert per_pixel.mean() > 0.98 and per_pixel.min() > 0.9
    # Put both into one phase convention: then they agree up to a single global phase.
    u = np.ones(est.shape[0]) / np.sqrt(est.shape[0])
    a, b = reference_phase(est, u)[:, support], reference_phase(true, u)[:, support]
    corr = np.abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b))
    assert corr > 0.95
    # The phase reference makes the maps as smooth as the true ones (a per-pixel random phase would not be).
    assert _roughness(est, support) < 3 * _roughness(reference_phase(true, reference_vector(true)), support) + 1e-3


def test_maps_unit_norm_inside_mask_and_zero_outside(simulated):
    est = estimate_coil_maps(simulated.cine)
    norm = (np.abs(est) ** 2).sum(0)
    inside = norm > 0
    assert np.allclose(norm[inside], 1.0, atol=1e-4)
    assert inside[_support(simulated.images)].all()  # the object is inside the mask
    assert 0.2 < inside.mean() < 0.95  # and the empty corners are not
    everywhere = estimate_coil_maps(simulated.cine, mask_threshold=None)
    assert np.allclose((np.abs(everywhere) ** 2).sum(0), 1.0, atol=1e-4)


def test_phase_reference_convention(simulated):
    est = estimate_coil_maps(simulated.cine, mask_threshold=None, phase_reference="strongest")
    images = time_averaged_coil_images(simulated.cine)
    strongest = int(np.argmax((np.abs(images) ** 2).sum((1, 2))))
    ref = est[strongest]
    assert np.all(ref.real >= -1e-6) and np.abs(ref.imag).max() < 1e-5


def test_walsh_recovers_rank_one_maps_exactly():
    maps = _unit(analytic_maps(6, 32, 40))
    obj = np.abs(smooth_object(1, 32, 40)[0]) + 0.1
    est = walsh_maps(maps * obj, kernel=3)
    # Not exactly 1: the kernel averages S·Sᴴ over neighbours where S varies a little.
    assert np.abs((est.conj() * maps).sum(0)).min() > 0.995


def test_pooled_gridding_has_units_of_the_images(simulated):
    # Aᴴ diag(H·W·w) A ≈ I: the pooled gridding image is the time-averaged object times the maps.
    coil_images = time_averaged_coil_images(simulated.cine)
    combined = (simulated.maps.conj() * coil_images).sum(0) / (np.abs(simulated.maps) ** 2).sum(0)
    truth = simulated.images.mean(0)
    support = _support(simulated.images)
    ratio = np.abs(combined[support]).mean() / np.abs(truth[support]).mean()
    assert 0.9 < ratio < 1.1


def test_maps_follow_non_square_matrix_and_padded_spokes():
    images = smooth_object(3, 40, 56)
    maps = analytic_maps(4, 40, 56)
    cine = simulate(images, maps, spokes=20)
    mask = np.ones((3, 20), bool)
    mask[1, 15:] = False  # frame 1 measured only 15 spokes: its padding must be ignored
    cine.kspace[1, :, 15:] = 0
    cine.spoke_mask = mask
    est = estimate_coil_maps(cine)
    assert est.shape == (4, 40, 56)
    support = _support(images)
    assert np.abs((est.conj() * _unit(maps)).sum(0))[support].mean() > 0.97


def test_unknown_method_is_refused(simulated):
    with pytest.raises(ConfigError, match="coil-map method"):
        estimate_coil_maps(simulated.cine, method="nope")


# --- the real 12-coil radial frame ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_frame():
    if not (SHARED_DATA / "gpuNUFFT_radial_cardiac_25_projections.mat").is_file():
        pytest.skip(f"real radial frame not found in {SHARED_DATA.resolve()} (the shared cardiac_data folder)")
    from dainr.sources.acdc import radial_cardiac_frame

    return radial_cardiac_frame(SHARED_DATA, matrix=(128, 128))


@pytest.mark.parametrize("method", ["walsh", "rss"])
def test_real_frame_maps(real_frame, method):
    frame = real_frame
    assert frame.kspace.shape == (1, 12, 25, 256)
    maps = estimate_coil_maps(frame, method=method)
    maps_everywhere = estimate_coil_maps(frame, method=method, mask_threshold=None)
    norm = (np.abs(maps) ** 2).sum(0)
    inside = norm > 0
    # Normalised where there is signal; the signal region is most of this (torso-filled) central field of view.
    assert np.allclose(norm[inside], 1.0, atol=1e-4)
    assert 0.5 < inside.mean() < 1.0
    # The maps explain the coil images: at full resolution, the fraction of the coil-image energy captured by the
    # rank-one model S·m is far above chance (1/12) inside the body and near chance outside it.
    x = time_averaged_coil_images(frame)
    total = (np.abs(x) ** 2).sum(0)
    captured = np.abs((maps_everywhere.conj() * x).sum(0)) ** 2
    frac_in = captured[inside].sum() / total[inside].sum()
    frac_out = captured[~inside].sum() / total[~inside].sum()
    assert frac_in > 0.45 and frac_in > 3 * frac_out, (frac_in, frac_out)
    # The maps are smooth: neighbour differences far below those of the coil images normalised by their RSS.
    assert _roughness(maps, inside) < 0.05 * _roughness(x / np.sqrt(total), inside)


def test_real_frame_mask_is_the_body(real_frame):
    low = time_averaged_coil_images(real_frame, cutoff=8 / 128)
    mask = signal_mask(low, 0.05)
    rss = np.sqrt((np.abs(low) ** 2).sum(0))
    assert rss[mask].mean() > 5 * rss[~mask].mean()
