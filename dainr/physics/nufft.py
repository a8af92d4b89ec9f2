"""Multi-coil radial NUFFT, batched over frames (torchkbnufft underneath).

The operator is orthonormally scaled: for image x (H×W, pixel r = (y − H//2, x − W//2)) and sample k (cycles/pixel),

    (A x)_c(k) = 1/sqrt(H·W) · Σ_r S_c(r) x(r) exp(−2πi k·r),

with k·r = kx·(x − W//2) + ky·(y − H//2). ``Aᴴ`` is its exact adjoint (coil-combined with conj(S_c)).
Trajectories enter in cycles/pixel; the conversion to radians/pixel happens here only.
"""

from __future__ import annotations

import warnings

import torch

with warnings.catch_warnings():
    # torchkbnufft decorates its kernels with torch.jit.script, which recent PyTorch deprecates with a warning at
    # import (also for dainr.physics.kb_gather, imported after this). The filter is local so that ismrmrd's reset of
    # the global filters (ismrmrd.image calls warnings.simplefilter('default')) cannot let it through.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=DeprecationWarning)
    import torchkbnufft as tkbn

from dainr.physics.kb_csr import KbCsr
from dainr.physics.kb_gather import KbGather

#: The NUFFT backends (``dainr.nufft_backend``).
BACKENDS = ("gather", "csr", "table")


def traj_to_omega(traj: torch.Tensor) -> torch.Tensor:
    """``(..., K, 2)`` cycles/pixel (kx, ky) -> ``(..., 2, K)`` radians/pixel ordered (rows, columns) for torchkbnufft."""
    return 2.0 * torch.pi * traj.flip(-1).transpose(-1, -2)


class MultiCoilNufft(torch.nn.Module):
    """Forward and adjoint multi-coil NUFFT for a radial cine.

    Parameters
    ----------
    traj:
        ``(frames, spokes, samples, 2)`` float trajectory in cycles/pixel (column 0 kx ↔ image columns).
    smaps:
        ``(coils, H, W)`` complex coil sensitivities (use ones of shape ``(1, H, W)`` for single-coil data).
    numpoints, oversampling:
        Kaiser–Bessel kernel width and grid oversampling of torchkbnufft.
    backend:
        ``gather`` (precomputed interpolation tables, :class:`~dainr.physics.kb_gather.KbGather`; fast on GPUs),
        ``csr`` (the same tables as sparse matrix products, :class:`~dainr.physics.kb_csr.KbCsr`: no per-neighbour
        intermediate; not bit-identical run to run on a GPU) or ``table`` (torchkbnufft's table interpolation; less memory). ``gather`` and
        ``csr`` compute the same operator to float rounding; ``table`` approximates the kernel from a table.

    Sample weights (0 for padded or held-out spokes, density compensation) are never stored in the operator: callers
    multiply the k-space by them, or pass them to :meth:`normal`.
    """

    def __init__(self, traj: torch.Tensor, smaps: torch.Tensor, numpoints: int = 6, oversampling: float = 2.0,
                 backend: str = "gather"):
        super().__init__()
        if traj.ndim != 4 or traj.shape[-1] != 2:
            raise ValueError(f"traj must be (frames, spokes, samples, 2), got {tuple(traj.shape)}")
        if smaps.ndim != 3:
            raise ValueError(f"smaps must be (coils, H, W), got {tuple(smaps.shape)}")
        self.im_size = tuple(int(v) for v in smaps.shape[-2:])
        self.n_frames, self.n_spokes, self.n_samples = (int(v) for v in traj.shape[:3])
        grid = tuple(int(round(oversampling * n)) for n in self.im_size)
        dtype = smaps.dtype
        self.register_buffer("omega", traj_to_omega(traj.reshape(self.n_frames, -1, 2).to(torch.float32)))
        self.register_buffer("smaps", smaps)
        if backend not in BACKENDS:
            raise ValueError(f"unknown NUFFT backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.backend = backend
        if backend in ("gather", "csr"):
            self._interp = (KbGather if backend == "gather" else KbCsr)(self.omega, self.im_size, grid, numpoints)
        else:
            self._fwd = tkbn.KbNufft(im_size=self.im_size, grid_size=grid, numpoints=numpoints, dtype=dtype)
            self._adj = tkbn.KbNufftAdjoint(im_size=self.im_size, grid_size=grid, numpoints=numpoints, dtype=dtype)
            self._fwd.to(smaps.device)
            self._adj.to(smaps.device)
        # torchkbnufft's "ortho" divides by the oversampled grid size; we want 1/sqrt(H·W) on the exact pair.
        self.scale = float(self.im_size[0] * self.im_size[1]) ** -0.5

    @property
    def n_coils(self) -> int:
        return int(self.smaps.shape[0])

    def _omega(self, frames: torch.Tensor | None) -> torch.Tensor:
        return self.omega if frames is None else self.omega[frames]

    def forward(self, x: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, H, W)`` complex images of frames ``frames`` (B indices; None = all) -> ``(B, coils, spokes, samples)``."""
        coil_images = x[:, None] * self.smaps[None]
        if self.backend != "table":
            y = self._interp(coil_images, frames) * self.scale
        else:
            y = self._fwd(coil_images, self._omega(frames)) * self.scale
        return y.reshape(x.shape[0], self.n_coils, self.n_spokes, self.n_samples)

    def adjoint_coils(self, y: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, coils, spokes, samples)`` -> ``(B, coils, H, W)`` per-coil adjoint images (no coil combination)."""
        b = y.shape[0]
        if self.backend != "table":
            return self._interp.adjoint(y.reshape(b, y.shape[1], -1), frames) * self.scale
        return self._adj(y.reshape(b, y.shape[1], -1), self._omega(frames)) * self.scale

    def adjoint(self, y: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Exact adjoint ``Aᴴ``: ``(B, coils, spokes, samples)`` -> ``(B, H, W)`` combined with conj(smaps)."""
        return (self.adjoint_coils(y, frames) * self.smaps.conj()[None]).sum(1)

    def normal(self, x: torch.Tensor, weights: torch.Tensor | None = None,
               frames: torch.Tensor | None = None) -> torch.Tensor:
        """``Aᴴ W A x`` for ``(B, H, W)`` images; ``weights`` ``(B, spokes, samples)`` real, None = identity."""
        y = self.forward(x, frames)
        if weights is not None:
            y = y * weights[:, None]
        return self.adjoint(y, frames)
