import dataclasses

import numpy as np
import pytest

from dainr.prep import PreparedCine, intensity_scale, noise_covariance, prepare

from .simulated import analytic_maps, simulate, smooth_object


def correlated_cine(noise_std: float = 0.02):
    """Simulated 6-coil cine whose noise (k-space and noise scans alike) is correlated across coils."""
    images = smooth_object(4, 48, 48)
    cine = simulate(images, analytic_maps(6, 48, 48), spokes=20, noise_std=noise_std, noise_samples=20_000)
    rng = np.random.default_rng(5)
    mix = (np.eye(6) + 0.3 * rng.standard_normal((6, 6))).astype(np.complex64)
    # Mixing signal and noise alike is a change of coil basis: the object and true maps are unchanged in substance.
    cine.kspace = np.einsum("dc,fcsn->fdsn", mix, cine.kspace).astype(np.complex64)
    cine.noise = (mix @ cine.noise).astype(np.complex64)
    return cine


def test_prepare_composes_the_steps():
    cine = correlated_cine()
    before = cine.kspace.copy()
    out = prepare(cine, prewhiten=True, n_virtual=4, coil_maps_method="walsh")
    assert isinstance(out, PreparedCine)
    assert out.cine.kspace.shape == (4, 4, 20, 96) and out.cine.kspace.dtype == np.complex64
    assert out.coil_maps.shape == (4, 48, 48) and out.coil_maps.dtype == np.complex64
    assert out.coil_transform.shape == (4, 6)
    assert np.array_equal(cine.kspace, before)  # the input is not modified
    # Prewhitened and compressed noise is white with unit variance, then divided by the scale.
    assert abs(out.noise_std_after * out.scale - 1) < 0.02
    assert np.abs(noise_covariance(out.cine.noise * out.scale) - np.eye(4)).max() < 0.05
    # The prepared data are scaled: their own intensity scale is 1.
    assert abs(intensity_scale(out.cine, out.coil_maps) - 1) < 1e-3
    norm = (np.abs(out.coil_maps) ** 2).sum(0)
    assert np.allclose(norm[norm > 0], 1, atol=1e-4)


def test_prepare_without_noise_scans_or_prewhitening():
    cine = correlated_cine()
    plain = prepare(cine, prewhiten=False, n_virtual=None, coil_maps_method="rss")
    assert plain.cine.n_coils == 6
    assert np.allclose(plain.coil_transform, np.eye(6))
    rms = np.sqrt(np.mean(np.abs(cine.noise) ** 2))
    assert abs(plain.noise_std_after / (rms / plain.scale) - 1) < 1e-4
    cine.noise = None
    none = prepare(cine, prewhiten=True, n_virtual=None)
    assert none.noise_std_after is None and none.cine.noise is None


def test_prepare_from_some_frames_only():
    """``frames`` restricts what informs the preparation (compression, coil maps, scale) and nothing else: the
    other frames' k-space can be anything, and every frame is still transformed and scaled."""
    cine = correlated_cine()
    seen = [0, 2]
    a = prepare(cine, prewhiten=True, n_virtual=4, frames=seen)
    wild = cine.kspace.copy()
    rng = np.random.default_rng(1)
    wild[[1, 3]] = (rng.standard_normal(wild[[1, 3]].shape) * 1e3 * np.abs(wild).max()).astype(np.complex64)
    b = prepare(dataclasses.replace(cine, kspace=wild), prewhiten=True, n_virtual=4, frames=seen)
    assert a.scale == b.scale and np.array_equal(a.coil_maps, b.coil_maps)
    assert np.array_equal(a.coil_transform, b.coil_transform)
    assert np.array_equal(a.cine.kspace[seen], b.cine.kspace[seen])
    # the same as preparing the seen frames alone, applied to all four frames
    alone = prepare(cine.select_frames(seen), prewhiten=True, n_virtual=4)
    assert a.scale == alone.scale and np.array_equal(a.coil_maps, alone.coil_maps)
    want = np.einsum("dc,csn->dsn", a.coil_transform, cine.kspace[1]) / a.scale  # frame 1, transformed and scaled
    assert a.cine.kspace.shape == (4, 4, 20, 96)
    np.testing.assert_allclose(a.cine.kspace[1], want, rtol=0, atol=1e-5 * np.abs(want).max())
    # pooling every frame (the default) does see the wild frames: the test can fail
    assert prepare(dataclasses.replace(cine, kspace=wild), prewhiten=True, n_virtual=4).scale != a.scale


def test_select_frames():
    cine = correlated_cine()
    cine.spoke_mask = np.ones((4, 20), bool)
    cine.spoke_mask[3, -2:] = False
    cine.frame_refs = ["a", "b", "c", "d"]
    two = cine.select_frames([3, 1])
    assert np.array_equal(two.kspace, cine.kspace[[3, 1]]) and np.array_equal(two.traj, cine.traj[[3, 1]])
    assert two.spoke_mask[0, -2:].tolist() == [False, False] and two.frame_refs == ["d", "b"]
    assert two.noise is cine.noise and two.matrix == cine.matrix
    for bad in ([], [4], [-1]):
        with pytest.raises(ValueError, match="frames"):
            cine.select_frames(bad)
