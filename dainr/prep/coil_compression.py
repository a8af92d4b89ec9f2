"""SVD (PCA) coil compression: fewer virtual coils that keep most of the signal energy.

The compression matrix ``M`` holds the leading left singular vectors of the k-space data arranged as a
``(coils, all samples)`` matrix, so its rows are orthonormal: white noise stays white with the same variance, which is
why compression runs after prewhitening. Virtual coil 0 carries the most energy.
"""

from __future__ import annotations

import numpy as np

from dainr.errors import ConfigError
from dainr.prep.noise import prewhiten


def _coil_energy_basis(kspace: np.ndarray, coil_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns) of the ``(coils, coils)`` data correlation ``X Xᴴ``."""
    arr = np.asarray(kspace)
    x = np.moveaxis(arr, coil_axis, 0).reshape(arr.shape[coil_axis], -1).astype(np.complex128)
    corr = x @ x.conj().T
    evals, evecs = np.linalg.eigh(0.5 * (corr + corr.conj().T))
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    # Eigenvectors have an arbitrary phase: make the largest entry of each real positive, for reproducible results.
    big = evecs[np.argmax(np.abs(evecs), axis=0), np.arange(evecs.shape[1])]
    evecs = evecs * (np.abs(big) / np.where(big == 0, 1, big))[None, :]
    return np.maximum(evals, 0.0), evecs


def compression_matrix(kspace: np.ndarray, n_virtual: int, coil_axis: int = 1) -> np.ndarray:
    """Coil-compression matrix from k-space data.

    Parameters
    ----------
    kspace:
        ``(frames, coils, spokes, samples)`` complex data (any shape with coils on ``coil_axis``). Zero-padded spokes
        add nothing to the correlation and need no masking.
    n_virtual:
        Number of virtual coils, >= 1. When ``n_virtual >= coils`` the identity is returned (no compression).

    Returns
    -------
    ``(min(n_virtual, coils), coils)`` complex64 with orthonormal rows, ordered by decreasing energy.
    """
    n_coils = np.asarray(kspace).shape[coil_axis]
    if n_virtual < 1:
        raise ConfigError(f"number of virtual coils must be >= 1, got {n_virtual}")
    if n_virtual >= n_coils:
        return np.eye(n_coils, dtype=np.complex64)
    _, evecs = _coil_energy_basis(kspace, coil_axis)
    return evecs[:, :n_virtual].conj().T.astype(np.complex64)


def energy_fraction(kspace: np.ndarray, coil_axis: int = 1) -> np.ndarray:
    """``(coils,)`` cumulative fraction of the signal energy kept by the first 1, 2, … virtual coils."""
    evals, _ = _coil_energy_basis(kspace, coil_axis)
    total = evals.sum()
    return np.cumsum(evals) / (total if total > 0 else 1.0)


def compress(kspace: np.ndarray, m: np.ndarray, coil_axis: int = 1) -> np.ndarray:
    """Apply a compression matrix ``M`` ``(n_virtual, coils)`` along the coil axis.

    Returns the input unchanged (same object) when ``M`` is the identity; otherwise a new complex64 array with
    ``n_virtual`` entries on ``coil_axis``. Use the same ``M`` on noise samples (``coil_axis=0``) and on coil maps.
    """
    if m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0], dtype=m.dtype)):
        return kspace
    return prewhiten(kspace, m, coil_axis)
