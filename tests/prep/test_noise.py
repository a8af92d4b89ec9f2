import numpy as np
import pytest

from dainr.errors import InputError
from dainr.prep import noise_covariance, prewhiten, prewhitening_matrix


def correlated_noise(coils: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(coils, n)`` complex noise with covariance ``A Aᴴ`` (A random, well conditioned), and that covariance."""
    rng = np.random.default_rng(seed)
    a = np.eye(coils) + 0.5 * (rng.standard_normal((coils, coils)) + 1j * rng.standard_normal((coils, coils)))
    a *= np.linspace(0.5, 3.0, coils)[:, None]  # unequal coil noise levels
    white = (rng.standard_normal((coils, n)) + 1j * rng.standard_normal((coils, n))) / np.sqrt(2)
    return (a @ white).astype(np.complex64), a @ a.conj().T


def test_covariance_estimate():
    noise, cov = correlated_noise(6, 200_000)
    est = noise_covariance(noise)
    assert est.shape == (6, 6)
    assert np.allclose(est, est.conj().T)
    assert np.abs(est - cov).max() < 0.03 * np.abs(cov).max()


def test_prewhitening_gives_identity_covariance():
    noise, _ = correlated_noise(8, 100_000, seed=1)
    w = prewhitening_matrix(noise_covariance(noise))
    assert w.shape == (8, 8) and w.dtype == np.complex64
    assert np.allclose(np.triu(w, 1), 0)  # lower triangular (Cholesky based)
    white = prewhiten(noise, w, coil_axis=0)
    assert np.abs(noise_covariance(white) - np.eye(8)).max() < 1e-3  # exact on the scans it was estimated from
    # ... and on fresh noise of the same receiver chain (same covariance, new draws), up to sampling error.
    _, cov = correlated_noise(8, 2, seed=1)
    rng = np.random.default_rng(7)
    fresh = np.linalg.cholesky(cov) @ ((rng.standard_normal((8, 100_000)) + 1j * rng.standard_normal((8, 100_000)))
                                       / np.sqrt(2))
    assert np.abs(noise_covariance(prewhiten(fresh, w, coil_axis=0)) - np.eye(8)).max() < 0.05


def test_bandwidth_ratio_scales_the_matrix():
    noise, _ = correlated_noise(4, 10_000)
    cov = noise_covariance(noise)
    assert np.allclose(prewhitening_matrix(cov, bandwidth_ratio=2.0), np.sqrt(2.0) * prewhitening_matrix(cov),
                       rtol=1e-5, atol=1e-6)


def test_prewhiten_along_kspace_coil_axis():
    rng = np.random.default_rng(2)
    ksp = (rng.standard_normal((3, 5, 7, 16)) + 1j * rng.standard_normal((3, 5, 7, 16))).astype(np.complex64)
    w = (rng.standard_normal((5, 5)) + 1j * rng.standard_normal((5, 5))).astype(np.complex64)
    out = prewhiten(ksp, w)
    assert out.shape == ksp.shape and out.dtype == np.complex64
    assert np.allclose(out, np.einsum("dc,fcsn->fdsn", w, ksp), atol=1e-4)
    with pytest.raises(InputError, match="coil transform"):
        prewhiten(ksp, w[:, :4])


@pytest.mark.parametrize("bad, why", [
    ("duplicate", "singular"),
    ("near-duplicate", "singular"),
    ("dead", "singular"),
    ("nan", "NaN"),
])
def test_bad_covariance_is_refused(bad, why):
    noise, _ = correlated_noise(4, 5_000)
    if bad == "duplicate":
        noise[3] = noise[2]
    elif bad == "near-duplicate":
        noise[3] = noise[2] + 1e-4 * noise[0]
    elif bad == "dead":
        noise[1] = 0
    else:
        noise[0, 10] = np.nan
    with pytest.raises(InputError, match=why) as info:
        prewhitening_matrix(noise_covariance(noise))
    assert "\n" not in str(info.value)


def test_too_few_noise_samples_are_refused():
    with pytest.raises(InputError):
        noise_covariance(np.zeros((4, 1), np.complex64))
