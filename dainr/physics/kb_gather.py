"""Precomputed Kaiser–Bessel interpolation: the NUFFT as FFT + one gather (fast on GPUs, differentiable).

torchkbnufft's table interpolation launches many small kernels per call; for DA-INR's thousands of small NUFFTs per
scan we precompute, once per trajectory, each sample's J = numpoints² grid neighbours and complex weights (the formula of
torchkbnufft's sparse-matrix builder, vectorised in torch; the apodisation is torchkbnufft's own). Then

    forward:  y[k] = Σ_j w[k, j] · FFT(pad(x · apod))[idx[k, j]]
    adjoint:  the exact transpose (scatter-add, inverse FFT without 1/N, crop, conj(apod)).

Both are plain torch ops, so autograd gives exact gradients.
"""

from __future__ import annotations

import numpy as np
import torch
import torchkbnufft as tkbn


def kb_tables(omega: torch.Tensor, im_size: tuple[int, int], grid_size: tuple[int, int], numpoints: int = 6,
              kbwidth: float = 2.34) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid neighbours and weights of every sample, as torchkbnufft's ``build_numpy_spmatrix`` defines them
    (Kaiser–Bessel kernel of order 0, α = kbwidth·numpoints, centring phase for shift ``im_size // 2``), computed
    vectorised on ``omega``'s device.

    Parameters
    ----------
    omega: ``(frames, 2, K)`` radians/pixel ordered (rows, columns).

    Returns
    -------
    idx ``(frames, K, numpoints²)`` int64 flat grid indices, weights ``(frames, K, numpoints²)`` complex64.
    """
    om = omega.to(torch.float64)
    alpha = kbwidth * numpoints
    jvec = torch.arange(1, numpoints + 1, device=om.device, dtype=torch.float64)
    coefs, offs = [], []
    for d in range(2):
        gam = 2 * np.pi / grid_size[d]
        koff = torch.floor(om[:, d] / gam - numpoints / 2)  # (F, K)
        dist = om[:, d] / gam - koff
        kern_in = dist[..., None] - jvec  # (F, K, n)
        inside = kern_in.abs() < numpoints / 2
        arg = torch.sqrt((1 - (kern_in / (numpoints / 2)) ** 2).clamp_min(0))
        coef = torch.where(inside, torch.special.i0(alpha * arg) / float(np.i0(alpha)), torch.zeros_like(arg))
        phase = torch.exp(1j * (gam * (im_size[d] - 1) / 2) * kern_in)
        coefs.append(coef * phase)
        offs.append(torch.remainder(jvec.long() + koff.long()[..., None], grid_size[d]))
    idx = (offs[0][..., :, None] * grid_size[1] + offs[1][..., None, :]).flatten(-2)
    w = (coefs[0][..., :, None] * coefs[1][..., None, :]).flatten(-2).conj()
    shift = torch.exp(1j * (om[:, 0] * (im_size[0] // 2) + om[:, 1] * (im_size[1] // 2)))
    return idx, (w * shift[..., None]).to(torch.complex64)


def kb_apodisation(im_size: tuple[int, int], grid_size: tuple[int, int], numpoints: int,
                   device: torch.device) -> torch.Tensor:
    """``(H, W)`` complex64 apodisation (torchkbnufft's scaling coefficients) that the interpolation kernel needs."""
    apod = tkbn.KbNufft(im_size=im_size, grid_size=grid_size, numpoints=numpoints).scaling_coef
    return apod.to(torch.complex64).to(device)


def oversampled_fft(x: torch.Tensor, apod: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, H, W)`` images -> ``(B, C, gh, gw)`` unnormalised FFT of the apodised, zero-padded images."""
    h, w = x.shape[-2:]
    gh, gw = grid_size
    return torch.fft.fft2(torch.nn.functional.pad(x * apod, (0, gw - w, 0, gh - h)))


def cropped_ifft(grid: torch.Tensor, apod: torch.Tensor, im_size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, gh, gw)`` grid -> ``(B, C, H, W)``: the adjoint of :func:`oversampled_fft` (inverse FFT without
    1/N, crop, conj(apod))."""
    h, w = im_size
    return torch.fft.ifft2(grid, norm="forward")[..., :h, :w] * apod.conj()


class KbInterpolation(torch.nn.Module):
    """The Kaiser–Bessel interpolation of ``(frames, K)`` samples on an oversampled grid, built once per trajectory
    from :func:`kb_tables`; a subclass stores the tables in its own form (:meth:`store`) and defines ``forward``
    (``(B, C, H, W)`` coil images of frames ``frames`` -> ``(B, C, K)``) and its exact ``adjoint``.

    Parameters
    ----------
    omega:
        ``(frames, 2, K)`` radians/pixel ordered (rows, columns), as torchkbnufft takes them.
    im_size, grid_size:
        Image and oversampled grid sizes (rows, columns).
    numpoints:
        Kernel width per dimension.
    """

    def __init__(self, omega: torch.Tensor, im_size: tuple[int, int], grid_size: tuple[int, int],
                 numpoints: int = 6):
        super().__init__()
        self.im_size, self.grid_size = tuple(im_size), tuple(grid_size)
        self.register_buffer("apod", kb_apodisation(im_size, grid_size, numpoints, omega.device))
        self.store(*kb_tables(omega, im_size, grid_size, numpoints))

    def store(self, idx: torch.Tensor, weights: torch.Tensor) -> None:
        """Keep the ``(frames, K, J)`` grid neighbours and weights of :func:`kb_tables` as the subclass needs them."""
        raise NotImplementedError


class KbGather(KbInterpolation):
    """The interpolation as one gather of the neighbours' grid values (forward) and a scatter-add (adjoint)."""

    def store(self, idx: torch.Tensor, weights: torch.Tensor) -> None:
        self.register_buffer("idx", idx)
        self.register_buffer("weights", weights)

    def forward(self, x: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` coil images of frames ``frames`` -> ``(B, C, K)`` (unnormalised DFT convention)."""
        b, c = x.shape[:2]
        grid = oversampled_fft(x, self.apod, self.grid_size)
        idx = self.idx if frames is None else self.idx[frames]
        wts = self.weights if frames is None else self.weights[frames]
        k, j = idx.shape[1:]
        g = torch.gather(grid.reshape(b, c, -1), 2, idx.reshape(b, 1, k * j).expand(b, c, k * j))
        return (g.reshape(b, c, k, j) * wts[:, None]).sum(-1)

    def adjoint(self, y: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, K)`` -> ``(B, C, H, W)``: the exact adjoint of :meth:`forward`."""
        b, c = y.shape[:2]
        gh, gw = self.grid_size
        idx = self.idx if frames is None else self.idx[frames]
        wts = self.weights if frames is None else self.weights[frames]
        k, j = idx.shape[1:]
        contrib = (y[..., None] * wts.conj()[:, None]).reshape(b, c, k * j)
        grid = torch.zeros(b, c, gh * gw, dtype=y.dtype, device=y.device)
        grid.scatter_add_(2, idx.reshape(b, 1, k * j).expand(b, c, k * j), contrib)
        return cropped_ifft(grid.reshape(b, c, gh, gw), self.apod, self.im_size)
