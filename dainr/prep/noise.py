"""Noise prewhitening from noise scans (``ACQ_IS_NOISE_MEASUREMENT``), as Gadgetron's NoiseAdjust does it.

With noise covariance ``Ψ = L Lᴴ`` (Cholesky), ``W = L⁻¹`` makes the noise of every coil white and of unit variance:
``cov(W n) = I``. Applying ``W`` along the coil axis of k-space (and of the coil maps estimated afterwards) leaves
SENSE/NUFFT models unchanged and turns a least-squares data term into the maximum-likelihood one.

Scaling: we whiten to unit *complex* variance per sample, ``E|n_c|² = 1`` (Gadgetron and ismrmrd-python-tools use
variance 2, i.e. 1 per real and per imaginary channel). When the noise scans were read out with a different dwell time
than the imaging data, pass ``bandwidth_ratio = acquisition_dwell / noise_dwell`` (optionally times the receiver's
noise bandwidth, Gadgetron's ``receiver_noise_bandwidth``): noise variance scales with the bandwidth ``1/dwell``, so the
data's noise is ``W`` scaled by ``sqrt(bandwidth_ratio)`` away from white.
"""

from __future__ import annotations

import numpy as np

from dainr.errors import InputError

#: Covariances whose condition number exceeds this are refused: a dead or duplicated channel (real arrays: < 1e3).
MAX_CONDITION = 1e6


def noise_covariance(noise: np.ndarray) -> np.ndarray:
    """Sample covariance of the receiver noise.

    Parameters
    ----------
    noise:
        ``(coils, n)`` complex noise samples (all noise-scan readouts of the coils concatenated).

    Returns
    -------
    ``(coils, coils)`` complex128 Hermitian ``Ψ = N Nᴴ / (n − 1)`` (noise is zero-mean; no mean is removed, as in
    Gadgetron), in (k-space units)².
    """
    noise = np.asarray(noise)
    if noise.ndim != 2:
        raise InputError(f"noise samples must be (coils, n), got shape {noise.shape}")
    n = noise.shape[1]
    if n < 2:
        raise InputError(f"need at least 2 noise samples per coil for a covariance, got {n}")
    x = noise.astype(np.complex128)
    cov = x @ x.conj().T / (n - 1)
    return 0.5 * (cov + cov.conj().T)


def prewhitening_matrix(cov: np.ndarray, bandwidth_ratio: float = 1.0) -> np.ndarray:
    """Prewhitening matrix ``W = sqrt(bandwidth_ratio) · L⁻¹`` with ``Ψ = L Lᴴ``.

    Parameters
    ----------
    cov:
        ``(coils, coils)`` Hermitian positive-definite noise covariance (:func:`noise_covariance`).
    bandwidth_ratio:
        ``acquisition_dwell / noise_dwell`` (1 when noise and data were read out alike); see the module docstring.

    Returns
    -------
    ``(coils, coils)`` complex64 lower-triangular ``W``: ``cov(W n) = bandwidth_ratio · I`` for noise scans ``n``, i.e.
    unit complex variance for the imaging data's noise.

    Raises
    ------
    InputError
        When the covariance is not finite, not positive definite or nearly singular (dead or duplicated channel).
    """
    cov = np.asarray(cov, np.complex128)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise InputError(f"noise covariance must be square (coils, coils), got shape {cov.shape}")
    if not np.all(np.isfinite(cov)):
        raise InputError("noise covariance has NaN/Inf entries: corrupt noise scans; set prep.prewhiten=false")
    if not bandwidth_ratio > 0 or not np.isfinite(bandwidth_ratio):
        raise InputError(f"bandwidth ratio must be a positive number, got {bandwidth_ratio}")
    cov = 0.5 * (cov + cov.conj().T)
    eig = np.linalg.eigvalsh(cov)
    if eig[-1] <= 0 or eig[0] <= eig[-1] / MAX_CONDITION:
        raise InputError(f"noise covariance is singular (eigenvalues {eig[0]:.3g}..{eig[-1]:.3g}); a coil is dead or "
                         "duplicated: drop it or set prep.prewhiten=false")
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:  # pragma: no cover - the eigenvalue test above catches this first
        raise InputError("noise covariance is not positive definite; set prep.prewhiten=false") from None
    w = np.linalg.solve(chol, np.eye(cov.shape[0])) * np.sqrt(bandwidth_ratio)
    return np.tril(w).astype(np.complex64)


def prewhiten(kspace: np.ndarray, w: np.ndarray, coil_axis: int = 1) -> np.ndarray:
    """Apply a coil-mixing matrix along the coil axis: ``y'_{c'} = Σ_c W_{c'c} y_c``.

    Parameters
    ----------
    kspace:
        Complex array with coils on ``coil_axis``, e.g. ``(frames, coils, spokes, samples)`` (default axis 1) or
        noise ``(coils, n)`` (``coil_axis=0``).
    w:
        ``(coils_out, coils)`` matrix (:func:`prewhitening_matrix`, or any coil transform).

    Returns
    -------
    New array, same shape except ``coils_out`` on ``coil_axis``; complex64 unless the input is complex128.
    """
    kspace = np.asarray(kspace)
    axis = coil_axis % kspace.ndim
    if kspace.shape[axis] != w.shape[1]:
        raise InputError(f"coil transform expects {w.shape[1]} coils, k-space has {kspace.shape[axis]} on axis {axis}")
    dtype = np.complex128 if kspace.dtype == np.complex128 else np.complex64
    out = np.tensordot(w.astype(dtype), kspace.astype(dtype, copy=False), axes=([1], [axis]))
    return np.moveaxis(out, 0, axis)
