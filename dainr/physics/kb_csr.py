"""Kaiser–Bessel interpolation as sparse matrix products: deterministic, without atomics, without the gather path's
``(B, C, K, J)`` intermediate.

Frame ``f``'s interpolation is a ``K × G`` matrix ``M_f`` (G = gh·gw oversampled grid points) with exactly J =
numpoints² non-zeros per row: the neighbours and weights of :func:`~dainr.physics.kb_gather.kb_tables`. Both ``M_f``
and its conjugate transpose ``M_fᴴ`` are stored in CSR form, built once per trajectory, so that

    forward:  y = M · grid            its backward:  M ᴴ · dy
    adjoint:  grid = Mᴴ · y          its backward:  M · dgrid

are all non-transposed CSR × dense products (no transposed product, which is why ``Mᴴ`` is stored). On a CPU they
repeat bit for bit; on an H200 (torch 2.11, cuSPARSE) they do not (measured: the step's NUFFT differs run to run and
a fit's pixels by up to 22% of the maximum), so the fit refuses ``csr`` on a GPU with ``deterministic: true``. ``Mᴴ``'s rows have varying
numbers of entries, but every frame has K·J of them, so the matrix of any B frames (block-diagonal) is assembled with
fixed shapes from gathers of the per-frame pieces plus offsets: no host synchronisation, no data-dependent shape,
capturable in a CUDA graph.

Layout: the dense operand is ``(B·G, C)`` row-major (a row = one grid point of one frame, all coils), the layout
cuSPARSE's row-major SpMM algorithm reads; the FFT gives ``(B, C, G)``, so the operand is one permuted copy of the
grid (B·C·G values, a third of one gathered-neighbours tensor of the gather path at 128²).
"""

from __future__ import annotations

import warnings

import torch

from dainr.physics.kb_gather import KbInterpolation, cropped_ifft, oversampled_fft


class _CsrProduct(torch.autograd.Function):
    """``a @ x`` for a sparse CSR ``a`` (constant) and a dense ``(n, C)`` ``x``; the backward is ``a_h @ dy`` with
    ``a_h`` = aᴴ given explicitly (complex autograd's gradient of a linear map is its adjoint applied to the output
    gradient). Differentiable twice (the backward is the same function with the matrices swapped)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, a_h: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.a, ctx.a_h = a, a_h
        return a @ x.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return _CsrProduct.apply(grad, ctx.a_h, ctx.a), None, None


class KbCsr(KbInterpolation):
    """Per-frame interpolation matrices, as CSR; the same operator as :class:`~dainr.physics.kb_gather.KbGather` (same
    tables, same FFT), with the same ``forward``/``adjoint``.

    Buffers (F frames, K samples, J neighbours, G grid points; int32 indices)
    ------------------------------------------------------------------------
    cols, vals: ``(F, K·J)``: row k of ``M_f`` is entries ``k·J … k·J+J−1`` (columns ascending).
    cols_h, vals_h, crow_h: ``(F, K·J)``, ``(F, K·J)``, ``(F, G+1)``: ``M_fᴴ`` (column = sample k, value conj(w)).
    """

    def store(self, idx: torch.Tensor, weights: torch.Tensor) -> None:
        n_frames, k, j = idx.shape
        n_grid = self.grid_size[0] * self.grid_size[1]
        cols, order = idx.sort(dim=-1)  # ascending columns within a row
        self.register_buffer("cols", cols.reshape(n_frames, k * j).to(torch.int32))
        self.register_buffer("vals", weights.gather(-1, order).reshape(n_frames, k * j))
        del cols, order
        # Mᴴ: the same entries ordered by grid point (stable: by sample within a grid point).
        grid_of_entry, order_h = idx.reshape(n_frames, k * j).sort(dim=-1, stable=True)
        self.register_buffer("cols_h", torch.div(order_h, j, rounding_mode="floor").to(torch.int32))
        self.register_buffer("vals_h", weights.reshape(n_frames, k * j).gather(-1, order_h).conj().resolve_conj())
        del order_h
        edges = torch.arange(n_grid + 1, device=idx.device).expand(n_frames, -1).contiguous()
        self.register_buffer("crow_h", torch.searchsorted(grid_of_entry, edges).to(torch.int32))
        self.n_samples, self.n_neighbours, self.n_grid = k, j, n_grid

    def matrices(self, frames: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The block-diagonal ``(B·K, B·G)`` matrix of frames ``frames`` (None = all, in order) and its ``(B·G, B·K)``
        conjugate transpose, as sparse CSR tensors (fixed shapes for a given B; no host synchronisation)."""
        pick = (lambda t: t) if frames is None else (lambda t: t[frames])
        cols, vals, cols_h, vals_h, crow_h = (pick(t) for t in (self.cols, self.vals, self.cols_h, self.vals_h,
                                                                 self.crow_h))
        b = cols.shape[0]
        k, j, g = self.n_samples, self.n_neighbours, self.n_grid
        dev, it = cols.device, torch.int32
        block = torch.arange(b, device=dev, dtype=it)[:, None]
        nnz = b * k * j
        rows = torch.arange(0, nnz + 1, j, device=dev, dtype=it)  # J entries a row
        end = torch.full((1,), nnz, device=dev, dtype=it)
        rows_h = torch.cat([(crow_h[:, :-1] + block * (k * j)).reshape(-1), end])  # frame b's entries after b·K·J
        with warnings.catch_warnings():  # torch warns once that CSR support is "in beta"; CSR @ dense is all we use
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support", category=UserWarning)
            a = torch.sparse_csr_tensor(rows, (cols + block * g).reshape(-1), vals.reshape(-1), size=(b * k, b * g),
                                        check_invariants=False)
            a_h = torch.sparse_csr_tensor(rows_h, (cols_h + block * k).reshape(-1), vals_h.reshape(-1),
                                          size=(b * g, b * k), check_invariants=False)
        return a, a_h

    def forward(self, x: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` coil images of frames ``frames`` -> ``(B, C, K)`` (unnormalised DFT convention)."""
        b, c = x.shape[:2]
        grid = oversampled_fft(x, self.apod, self.grid_size)  # (B, C, gh, gw)
        a, a_h = self.matrices(frames)
        y = _CsrProduct.apply(grid.reshape(b, c, self.n_grid).transpose(1, 2).reshape(b * self.n_grid, c), a, a_h)
        return y.reshape(b, self.n_samples, c).transpose(1, 2)

    def adjoint(self, y: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, K)`` -> ``(B, C, H, W)``: the exact adjoint of :meth:`forward`."""
        b, c = y.shape[:2]
        a, a_h = self.matrices(frames)
        grid = _CsrProduct.apply(y.transpose(1, 2).reshape(b * self.n_samples, c), a_h, a)  # (B·G, C)
        gh, gw = self.grid_size
        return cropped_ifft(grid.reshape(b, gh, gw, c).permute(0, 3, 1, 2), self.apod, self.im_size)
