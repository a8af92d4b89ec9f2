"""The DA-INR networks: deformation net Ψ_t, canonical net Ψ_x, and their composition :class:`DAINR`.

Coordinate convention
---------------------
Images are ``[..., y, x]`` (rows, columns). A pixel is queried at ``p = (x, y)`` with ``x`` ↔ columns and ``y`` ↔ rows,
at the pixel centres of :func:`centred_coords`: pixel ``i`` of ``n`` sits at ``(i − n//2)·2/n`` ∈ [-1, 1), the NUFFT's
phase reference (pixel ``n//2``) at 0. A grid ``r`` times finer over the same field of view then contains the coarse
grid's points (coarse pixel ``i`` = fine pixel ``r·i``), which is what spatial interpolation renders on. (The reference
code queries ``linspace(-1, 1, n)`` and pairs its first coordinate with rows; with networks trained from scratch
either choice is immaterial, DAINR_METHOD.md §3.)
Time is ``t = frame / (n_frames − 1) ∈ [0, 1]``, or with a periodic time encoding (a cine that is one cycle)
``t = frame / n_frames ∈ [0, 1)``, encoded by the cycle's harmonics (:class:`~dainr.model.encodings.PeriodicEncoding`).

Layer order of construction follows the reference (deformation layers, grid table, sigma layers, colour layers), so
seeding the global RNG before :class:`DAINR` reproduces the reference initialisation (see
:func:`dainr.model.reference.build_reference_models`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dainr.errors import ConfigError
from dainr.model.encodings import FrequencyEncoding, GridEncoding, PeriodicEncoding

__all__ = ["centred_coords", "frame_times", "DeformationNet", "CanonicalNet", "DAINR"]


def centred_coords(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Query coordinates of an ``H×W`` image: ``(H·W, 2)`` float32 rows ``p = (x, y)`` of the pixel centres, row-major
    over ``(row, column)`` (point ``k = row·W + column``).

    Pixel ``i`` of ``n`` lies at ``(i − n//2)·2/n`` (the NUFFT's phase reference is pixel ``n//2``), so a coarse grid
    and a finer grid of the same field of view share coordinates: coarse pixel ``i`` and fine pixel ``2i`` coincide.
    """
    ys = (torch.arange(height, device=device) - height // 2) * (2.0 / height)
    xs = (torch.arange(width, device=device) - width // 2) * (2.0 / width)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def frame_times(n_frames: int, device: torch.device | str | None = None, periodic: bool = False) -> torch.Tensor:
    """``(n_frames,)`` normalised times ``t = f / (F − 1)`` in [0, 1] (``t = 0`` for a single frame), or with
    ``periodic`` (the frames are one cycle) ``t = f / F`` in [0, 1)."""
    span = n_frames if periodic else n_frames - 1
    return torch.arange(n_frames, device=device, dtype=torch.float32) / max(span, 1)


def time_encoding(degree: int, periodic: bool) -> FrequencyEncoding | PeriodicEncoding:
    """The encoding of ``t``: octaves ``γ(t)`` (``1 + 2·degree`` values), or the cycle's harmonics ``1..degree``
    (``2·degree``) when ``periodic``."""
    return PeriodicEncoding(degree) if periodic else FrequencyEncoding(1, degree)


def _mlp(dims: list[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))


def _run(layers: nn.ModuleList, h: torch.Tensor, relu_last: bool) -> torch.Tensor:
    for i, layer in enumerate(layers):
        h = layer(h)
        if i < len(layers) - 1 or relu_last:
            h = F.relu(h)
    return h


def _expand_t(t: torch.Tensor, n: int) -> torch.Tensor:
    if t.ndim == 1:
        t = t[:, None]
    if t.shape[0] == 1 and n != 1:
        t = t.expand(n, -1)
    return t


class DeformationNet(nn.Module):
    """Ψ_t: ``Δp = MLP(concat(γ(p), γ(t)))``; bias-free Linear layers, ReLU between, linear output.

    Defaults: ``55 → 128 → 128 → 128 → 128 → 2`` (``depth`` Linear layers).

    ``forward(p (N,2) in [-1,1], t (N,1) or (1,1) in [0,1]) -> Δp (N,2)``.
    """

    def __init__(self, space_degree: int = 10, time_degree: int = 6, width: int = 128, depth: int = 5,
                 periodic_time: bool = False):
        super().__init__()
        if depth < 1:
            raise ConfigError(f"DeformationNet depth must be >= 1, got {depth}")
        self.encode_p = FrequencyEncoding(2, space_degree)
        self.encode_t = time_encoding(time_degree, periodic_time)
        dims = [self.encode_p.output_dim + self.encode_t.output_dim] + [width] * (depth - 1) + [2]
        self.layers = _mlp(dims)

    def forward_encoded(self, enc_p: torch.Tensor, enc_t: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward` from precomputed ``γ(p) (N,42)`` and ``γ(t) (N,13)``."""
        return _run(self.layers, torch.cat([enc_p, enc_t], dim=-1), relu_last=False)

    def forward(self, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _expand_t(t, p.shape[0])
        return self.forward_encoded(self.encode_p(p), self.encode_t(t))


class CanonicalNet(nn.Module):
    """Ψ_x: complex value at the deformed point.

    Input (reference order): ``concat(grid((p'+1)/2) 32, γ(p) 42, γ(t) 13, features F)`` (215 for F = 128), where
    ``p'`` is the deformed and ``p`` the undeformed coordinate. ``sigma_net``: 215 → 64 → ReLU → 64 (no
    activation); ``color_net``: 64 → 64 → ReLU → 64 → ReLU → 2. All Linear layers bias-free; output ``(real, imag)``.

    Parameters
    ----------
    grid:
        The :class:`GridEncoding` (its ``input_dim`` must be 2); fed ``(p' + 1)/2``, so deformed points leaving
        ``[-1, 1]^2`` get zero grid features (torch-ngp behaviour).
    feature_dim:
        Channels of the per-pixel neighbour features (0: none, ``features`` must then be None).
    """

    def __init__(
        self, grid: GridEncoding, space_degree: int = 10, time_degree: int = 6, feature_dim: int = 128,
        hidden: int = 64, periodic_time: bool = False
    ):
        super().__init__()
        if grid.input_dim != 2:
            raise ConfigError(f"CanonicalNet needs a 2-D grid encoding, got input_dim={grid.input_dim}")
        self.grid = grid
        self.encode_p = FrequencyEncoding(2, space_degree)
        self.encode_t = time_encoding(time_degree, periodic_time)
        self.feature_dim = int(feature_dim)
        self.in_dim = grid.output_dim + self.encode_p.output_dim + self.encode_t.output_dim + self.feature_dim
        self.sigma_net = _mlp([self.in_dim, hidden, hidden])
        self.color_net = _mlp([hidden, hidden, hidden, 2])

    def forward_encoded(
        self, p_deformed: torch.Tensor, enc_p: torch.Tensor, enc_t: torch.Tensor, features: torch.Tensor | None
    ) -> torch.Tensor:
        parts = [self.grid((p_deformed + 1.0) * 0.5), enc_p, enc_t]
        if self.feature_dim:
            if features is None or features.shape[-1] != self.feature_dim:
                got = None if features is None else tuple(features.shape)
                raise ValueError(f"CanonicalNet expects features (N, {self.feature_dim}), got {got}")
            parts.append(features.to(enc_p.dtype))
        elif features is not None and features.shape[-1] != 0:
            raise ValueError("CanonicalNet was built with feature_dim=0 but features were given")
        h = torch.cat(parts, dim=-1)
        h = _run(self.sigma_net, h, relu_last=False)
        return _run(self.color_net, h, relu_last=False)

    def forward(
        self, p_deformed: torch.Tensor, p: torch.Tensor, t: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``p_deformed (N,2)``, ``p (N,2)``, ``t (N,1)`` or ``(1,1)``, ``features (N,F)`` → ``(N,2)``."""
        t = _expand_t(t, p.shape[0])
        return self.forward_encoded(p_deformed, self.encode_p(p), self.encode_t(t), features)



class DAINR(nn.Module):
    """DA-INR: ``f(p, t) = Ψ_x(p + Ψ_t(p, t), p, t, features)`` → ``(real, imag)``.

    Build it from parts, ``DAINR(DeformationNet(...), CanonicalNet(grid, ...))``, or from keywords (the reference
    defaults).

    Parameters
    ----------
    deformation, canonical:
        Ready-made parts (their frequency encodings must agree); when omitted they are built from the keywords below.
    space_degree, time_degree:
        Frequency-encoding octaves of ``p`` and ``t`` (10 and 6).
    deform_width, deform_depth:
        Deformation MLP width and number of Linear layers (128, 5).
    feature_dim:
        Neighbour-feature channels (128 = 2 × 64 MDSR channels; 0 for none).
    hidden:
        Width of the sigma/colour MLPs (64).
    grid:
        A :class:`GridEncoding`, or None to build the reference grid from ``grid_kwargs``.
    grid_kwargs:
        Keyword arguments of :class:`GridEncoding` (e.g. ``backend="torch"``).

    With the defaults there are 5,612,576 trainable parameters (grid 5,529,952; deformation 56,448; sigma 17,856;
    colour 8,320).
    """

    def __init__(
        self,
        deformation: DeformationNet | None = None,
        canonical: CanonicalNet | None = None,
        *,
        space_degree: int = 10,
        time_degree: int = 6,
        deform_width: int = 128,
        deform_depth: int = 5,
        feature_dim: int = 128,
        hidden: int = 64,
        grid: GridEncoding | None = None,
        **grid_kwargs,
    ):
        super().__init__()
        if (canonical is not None) and (grid is not None or grid_kwargs):
            raise ConfigError("pass either a canonical net or grid settings, not both")
        # Construction order = the reference's RNG consumption order (deform layers, grid table, sigma, colour).
        if deformation is None:
            deformation = DeformationNet(space_degree, time_degree, deform_width, deform_depth)
        self.deformation = deformation
        if canonical is None:
            if grid is None:
                grid = GridEncoding(input_dim=2, **grid_kwargs)
            elif grid_kwargs:
                raise ConfigError("pass either a grid or grid keyword arguments, not both")
            canonical = CanonicalNet(grid, space_degree, time_degree, feature_dim, hidden)
        if (deformation.encode_p.degree, deformation.encode_t.degree, type(deformation.encode_t)) != (
            canonical.encode_p.degree,
            canonical.encode_t.degree,
            type(canonical.encode_t),
        ):
            raise ConfigError("the deformation and canonical nets must use the same space/time encoding degrees")
        self.canonical = canonical

    @property
    def feature_dim(self) -> int:
        return self.canonical.feature_dim

    @property
    def grid(self) -> GridEncoding:
        return self.canonical.grid

    def forward(
        self,
        p: torch.Tensor,
        t: torch.Tensor,
        features: torch.Tensor | None = None,
        return_deformation: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Evaluate at points.

        Parameters
        ----------
        p:
            ``(N, 2)`` coordinates ``(x, y)`` in ``[-1, 1]``.
        t:
            ``(N, 1)``, ``(N,)`` or ``(1, 1)`` times in ``[0, 1]``.
        features:
            ``(N, F)`` per-point features, or None when ``feature_dim == 0``.
        return_deformation:
            Also return ``Δp (N, 2)``.

        Returns
        -------
        ``(N, 2)`` (real, imag), and ``Δp`` if requested.
        """
        t = _expand_t(t, p.shape[0])
        enc_p = self.deformation.encode_p(p)
        enc_t = self.deformation.encode_t(t)
        dp = self.deformation.forward_encoded(enc_p, enc_t)
        out = self.canonical.forward_encoded(p + dp, enc_p, enc_t, features)
        return (out, dp) if return_deformation else out

    def render(
        self,
        frames_t: torch.Tensor,
        coords: torch.Tensor,
        features: torch.Tensor | None = None,
        image_shape: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Render whole frames at once.

        Parameters
        ----------
        frames_t:
            ``(B,)`` frame times in ``[0, 1]``.
        coords:
            ``(H·W, 2)`` query points ``(x, y)`` (:func:`centred_coords`), row-major.
        features:
            ``(B, H·W, F)`` or ``(B, F, H, W)`` features, or None.
        image_shape:
            ``(H, W)``; inferred from ``features (B, F, H, W)`` or as a square when omitted.

        Returns
        -------
        ``(B, H, W)`` complex64 (complex128 for float64 models).
        """
        b = int(frames_t.shape[0])
        n = int(coords.shape[0])
        if image_shape is None:
            if features is not None and features.ndim == 4:
                image_shape = (int(features.shape[-2]), int(features.shape[-1]))
            else:
                side = int(round(n**0.5))
                if side * side != n:
                    raise ValueError(f"{n} points are not a square image; pass image_shape=(H, W)")
                image_shape = (side, side)
        h, w = image_shape
        if h * w != n:
            raise ValueError(f"image_shape {image_shape} does not match {n} coordinates")
        if features is not None:
            if features.ndim == 4:
                features = features.flatten(2).transpose(1, 2)  # (B, H·W, F)
            if features.shape[:2] != (b, n):
                raise ValueError(f"features must be (B={b}, {n}, F), got {tuple(features.shape)}")
            features = features.reshape(b * n, -1)
        p = coords[None].expand(b, n, 2).reshape(b * n, 2)
        t = frames_t.reshape(b, 1, 1).to(coords.dtype).expand(b, n, 1).reshape(b * n, 1)
        out = self.forward(p, t, features).reshape(b, h, w, 2)
        return torch.view_as_complex(out.contiguous())
