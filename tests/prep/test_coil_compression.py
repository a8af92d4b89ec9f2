import numpy as np
import pytest

from dainr.errors import ConfigError
from dainr.prep import compress, compression_matrix, energy_fraction, noise_covariance, prewhiten


def low_rank_kspace(coils: int = 8, sources: int = 3, seed: int = 0) -> np.ndarray:
    """``(frames, coils, spokes, samples)``: ``sources`` independent signals mixed into ``coils``, plus weak noise."""
    rng = np.random.default_rng(seed)
    cplx = lambda *s: rng.standard_normal(s) + 1j * rng.standard_normal(s)  # noqa: E731
    sig = cplx(4, sources, 10, 32) * np.array([3.0, 2.0, 1.0][:sources])[None, :, None, None]
    mix = cplx(coils, sources)
    return (np.einsum("cs,fsrn->fcrn", mix, sig) + 0.01 * cplx(4, coils, 10, 32)).astype(np.complex64)


def test_compression_keeps_energy_in_first_virtual_coils():
    ksp = low_rank_kspace()
    m = compression_matrix(ksp, 3)
    assert m.shape == (3, 8) and m.dtype == np.complex64
    assert np.allclose(m @ m.conj().T, np.eye(3), atol=1e-5)  # orthonormal rows
    out = compress(ksp, m)
    assert out.shape == (4, 3, 10, 32)
    energy = (np.abs(out) ** 2).sum((0, 2, 3))
    assert energy.sum() / (np.abs(ksp) ** 2).sum() > 0.999
    assert np.all(np.diff(energy) < 0)  # ordered by decreasing energy
    frac = energy_fraction(ksp)
    assert frac.shape == (8,) and np.all(np.diff(frac) >= -1e-12) and abs(frac[-1] - 1) < 1e-9
    assert frac[0] > 0.5 and frac[2] > 0.999


def test_one_virtual_coil_is_the_dominant_direction():
    ksp = low_rank_kspace(sources=1)
    out = compress(ksp, compression_matrix(ksp, 1))
    assert (np.abs(out) ** 2).sum() / (np.abs(ksp) ** 2).sum() > 0.999


@pytest.mark.parametrize("n", [8, 12])
def test_identity_when_not_fewer_coils(n):
    ksp = low_rank_kspace()
    m = compression_matrix(ksp, n)
    assert np.array_equal(m, np.eye(8, dtype=np.complex64))
    assert compress(ksp, m) is ksp


def test_compression_keeps_white_noise_white():
    rng = np.random.default_rng(3)
    noise = ((rng.standard_normal((8, 50_000)) + 1j * rng.standard_normal((8, 50_000))) / np.sqrt(2))
    m = compression_matrix(low_rank_kspace(), 4)
    assert np.abs(noise_covariance(prewhiten(noise, m, coil_axis=0)) - np.eye(4)).max() < 0.03


def test_compression_is_deterministic_and_axis_aware():
    ksp = low_rank_kspace()
    m1, m2 = compression_matrix(ksp, 3), compression_matrix(ksp.copy(), 3)
    assert np.array_equal(m1, m2)
    coils_last = np.moveaxis(ksp, 1, -1)
    assert np.allclose(compression_matrix(coils_last, 3, coil_axis=-1), m1, atol=1e-5)


def test_zero_virtual_coils_is_refused():
    with pytest.raises(ConfigError):
        compression_matrix(low_rank_kspace(), 0)
