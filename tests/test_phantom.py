"""Tests of the analytic cardiac phantom (dainr.phantom): shapes, determinism, coils, motion, phase, contrast."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import dainr.phantom as phantom_module
from dainr.phantom import (AIR, FAT, LUNG, LV_BLOOD, MYOCARDIUM, PAPILLARY, RV_BLOOD, BODY, PhantomCine,
                           analytic_coil_maps, cardiac_phantom)


@pytest.fixture(scope="module")
def cine() -> PhantomCine:
    return cardiac_phantom(matrix=64, frames=16, coils=4, seed=0)


def test_shapes_and_dtypes(cine: PhantomCine) -> None:
    assert cine.images.shape == (16, 64, 64) and cine.images.dtype == np.complex64
    assert cine.coil_maps.shape == (4, 64, 64) and cine.coil_maps.dtype == np.complex64
    assert cine.tissue.shape == (16, 64, 64) and cine.tissue.dtype == np.uint8
    assert np.all(np.isfinite(cine.images)) and np.all(np.isfinite(cine.coil_maps))
    assert np.abs(cine.images).max() == pytest.approx(1.0, abs=1e-5)
    assert set(np.unique(cine.tissue)) <= set(phantom_module.TISSUE_LABELS)


def test_defaults_are_128_by_20_frames_by_8_coils() -> None:
    p = cardiac_phantom()
    assert p.images.shape == (20, 128, 128) and p.coil_maps.shape == (8, 128, 128) and p.tissue.shape == (20, 128, 128)


def test_same_seed_identical_other_seed_different() -> None:
    a = cardiac_phantom(32, 4, 3, seed=5)
    b = cardiac_phantom(32, 4, 3, seed=5)
    c = cardiac_phantom(32, 4, 3, seed=6)
    for name in ("images", "coil_maps", "tissue"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(np.abs(a.images), np.abs(c.images), atol=1e-3)   # anatomy jittered, not only the phase
    assert not np.array_equal(a.tissue, c.tissue)
    assert not np.allclose(a.coil_maps, c.coil_maps, atol=1e-3)


@pytest.mark.parametrize("shape", [(32, 32), (40, 56), (56, 40)])
def test_coil_maps_normalised_everywhere(shape: tuple[int, int]) -> None:
    maps = analytic_coil_maps(shape, coils=8, seed=1)
    assert maps.shape == (8, *shape) and maps.dtype == np.complex64
    np.testing.assert_allclose(np.sum(np.abs(maps) ** 2, axis=0), 1.0, atol=1e-5)   # air and corners included
    # the coils see different regions: their sensitivity peaks lie apart
    peaks = {np.unravel_index(np.argmax(np.abs(m)), shape) for m in maps}
    assert len(peaks) >= 6


def test_coil_maps_smooth_and_have_phase() -> None:
    maps = analytic_coil_maps((48, 48), coils=6, seed=2)
    step_x = np.abs(maps[:, :, 1:] - maps[:, :, :-1]).max()
    step_y = np.abs(maps[:, 1:, :] - maps[:, :-1, :]).max()
    assert max(step_x, step_y) < 0.15
    assert np.ptp(np.angle(maps[0] * np.conj(maps[0, 24, 24]))) > 0.2


def test_single_coil_is_ones() -> None:
    np.testing.assert_array_equal(analytic_coil_maps((16, 24), coils=1), np.ones((1, 16, 24), np.complex64))
    assert np.all(cardiac_phantom(32, 2, coils=1).coil_maps == 1)


def test_lv_blood_pool_periodic_largest_at_end_diastole_smallest_mid_cycle(cine: PhantomCine) -> None:
    frames = cine.tissue.shape[0]
    area = np.array([(t == LV_BLOOD).sum() for t in cine.tissue], dtype=float)
    # (rasterised areas may tie between neighbouring frames, hence no argmin/argmax)
    assert area[0] == area.max() and area[frames // 2] == area.min()
    assert np.all(np.abs(np.flatnonzero(area == area.min()) - frames // 2) <= frames // 4)
    assert area.min() < 0.7 * area.max()                                 # a real ejection, not jitter
    # one smooth cycle: no jump anywhere, including from the last frame back to frame 0 (no sawtooth)
    steps = np.abs(np.diff(np.append(area, area[0])))
    assert steps.max() < 0.35 * np.ptp(area)
    # decreasing in systole, increasing in diastole (a pixel or two of rasterisation slack)
    half = frames // 2
    assert np.all(np.diff(area[: half + 1]) <= 2) and np.all(np.diff(area[half:]) >= -2)


def test_myocardium_in_every_frame_surrounds_lv_and_thickens(cine: PhantomCine) -> None:
    myo = np.array([(t == MYOCARDIUM).sum() for t in cine.tissue], dtype=float)
    assert np.all(myo > 0)
    assert myo.min() > 0.75 * myo.max()            # muscle is (nearly) incompressible: the wall thickens in systole
    for t in cine.tissue:
        pool = np.isin(t, (LV_BLOOD, PAPILLARY))
        ring = ndimage.binary_dilation(pool, iterations=1) & ~pool
        assert np.mean(t[ring] == MYOCARDIUM) > 0.8     # the LV pool is enclosed by myocardium
    rv = np.array([(t == RV_BLOOD).sum() for t in cine.tissue], dtype=float)
    assert rv.min() > 0 and rv[len(rv) // 2] < 0.85 * rv[0]   # the RV deforms too


def test_images_change_over_the_cycle_and_return(cine: PhantomCine) -> None:
    mag = np.abs(cine.images)
    assert np.abs(mag[len(mag) // 2] - mag[0]).max() > 0.5
    # frame F-1 is one step before frame 0 of the next cycle: close to frame 0, much closer than end-systole is
    assert np.abs(mag[-1] - mag[0]).sum() < 0.4 * np.abs(mag[len(mag) // 2] - mag[0]).sum()


def test_phase_smooth_within_body_and_nontrivial(cine: PhantomCine) -> None:
    z = cine.images
    body = cine.tissue != AIR
    # wrapped phase differences of neighbours (no unwrapping needed): small everywhere in the body
    dx = np.angle(z[..., 1:] * np.conj(z[..., :-1]))[body[..., 1:] & body[..., :-1]]
    dy = np.angle(z[..., 1:, :] * np.conj(z[..., :-1, :]))[body[..., 1:, :] & body[..., :-1, :]]
    assert max(np.abs(dx).max(), np.abs(dy).max()) < 0.2
    # ...yet the phase is not constant: about a radian or more across the body
    centre = z[0, 32, 32]
    assert np.ptp(np.angle(z[0] * np.conj(centre))[body[0]]) > 1.0
    # slowly varying over time
    both = body.all(axis=0)
    assert np.abs(np.angle(z * np.conj(z[:1]))[:, both]).max() < 0.6


def test_bssfp_contrast(cine: PhantomCine) -> None:
    mag, t = np.abs(cine.images[0]), cine.tissue[0]

    def mean(label: int) -> float:
        return float(mag[ndimage.binary_erosion(t == label)].mean())  # erosion: away from partial-volume edges

    assert mean(LV_BLOOD) > 2.5 * mean(MYOCARDIUM)
    assert mean(FAT) > 1.5 * mean(BODY)
    assert mean(LUNG) < 0.2 * mean(BODY)
    assert np.all(mag[ndimage.binary_erosion(t == AIR)] == 0)      # air is empty beyond the one-pixel edge ramp


def test_edges_are_anti_aliased(cine: PhantomCine, monkeypatch: pytest.MonkeyPatch) -> None:
    def high_k_fraction(image: np.ndarray) -> float:
        k = np.abs(np.fft.fft2(image)) ** 2
        ky, kx = np.meshgrid(np.fft.fftfreq(image.shape[0]), np.fft.fftfreq(image.shape[1]), indexing="ij")
        return float(k[np.hypot(kx, ky) > 0.35].sum() / k.sum())

    smooth = high_k_fraction(np.abs(cine.images[0]))
    monkeypatch.setattr(phantom_module, "_coverage", lambda d, pixel: (d <= 0).astype(float))
    hard = high_k_fraction(np.abs(cardiac_phantom(64, 16, 1, seed=0).images[0]))
    assert smooth < 0.5 * hard
    # partial volume: many grey levels, not a handful of piecewise-constant tissues
    assert len(np.unique(np.round(np.abs(cine.images[0]), 4))) > 100


@pytest.mark.parametrize("h, w", [(40, 56), (56, 40)])
def test_non_square_matrix(h: int, w: int) -> None:
    p = cardiac_phantom(h, frames=3, coils=2, seed=3, matrix_w=w)
    assert p.images.shape == (3, h, w) and p.tissue.shape == (3, h, w) and p.coil_maps.shape == (2, h, w)
    t = p.tissue[0]
    border = np.concatenate([t[0], t[-1], t[:, 0], t[:, -1]])
    assert np.all(border == AIR)                                    # the thorax fits inside the smaller side
    assert {MYOCARDIUM, LV_BLOOD, RV_BLOOD, LUNG, FAT} <= set(np.unique(t))
    # square pixels: the LV pool is about as wide as it is tall whatever the matrix shape
    rows, cols = np.nonzero(t == LV_BLOOD)
    assert 0.7 < np.ptp(rows) / np.ptp(cols) < 1.4


def test_single_frame_and_bad_arguments() -> None:
    assert cardiac_phantom(32, frames=1, coils=2).images.shape == (1, 32, 32)
    with pytest.raises(ValueError, match="frames"):
        cardiac_phantom(32, frames=0)
    with pytest.raises(ValueError, match="coils"):
        cardiac_phantom(32, coils=0)
    with pytest.raises(ValueError, match="matrix"):
        cardiac_phantom(8)
