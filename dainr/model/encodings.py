"""Input encodings of the DA-INR networks: frequency (positional) encoding and the multiresolution grid encoding.

Both reproduce torch-ngp (``freqencoder`` and ``gridencoder``), which the reference DA-INR code uses.

Grid backends
-------------
:class:`GridEncoding` stores its table in torch-ngp's layout (``embeddings`` of shape ``(total_entries, C)``, level
``l`` at rows ``offsets[l]:offsets[l+1]``) and evaluates it with :func:`torch_grid_kernel` (pure PyTorch,
``backend="torch"``). ``backend="tcnn"`` instead wraps ``tinycudann.Encoding``, which owns its own parameters in
tiny-cuda-nn's layout; see :class:`GridEncoding` for what differs. ``backend="auto"`` picks ``tcnn`` when
:func:`tcnn_available`, ``torch`` otherwise.
"""

from __future__ import annotations

import functools

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dainr.errors import ConfigError

__all__ = [
    "FrequencyEncoding",
    "GridEncoding",
    "GridLayout",
    "grid_layout",
    "tcnn_available",
    "torch_grid_kernel",
]


class FrequencyEncoding(nn.Module):
    """torch-ngp ``FreqEncoder``: ``[x, sin(2^0 x), cos(2^0 x), ..., sin(2^(K-1) x), cos(2^(K-1) x)]``, no π.

    Output layout (as torch-ngp's CUDA kernel writes it): the ``D`` input values first, then for each
    ``k = 0..degree-1`` the sines of all ``D`` dims followed by the cosines of all ``D`` dims. torch-ngp evaluates
    ``cos`` as ``__sinf(x·2^k + π/2)`` with fast-math sine; here ``torch.sin``/``torch.cos`` are exact.

    Parameters
    ----------
    input_dim:
        ``D``, number of input coordinates.
    degree:
        ``K``, number of octaves. Output dim is ``D·(1 + 2K)`` (space: D=2, K=10 → 42; time: D=1, K=6 → 13).
    """

    def __init__(self, input_dim: int, degree: int):
        super().__init__()
        if input_dim < 1 or degree < 0:
            raise ConfigError(f"FrequencyEncoding needs input_dim >= 1 and degree >= 0, got {input_dim}, {degree}")
        self.input_dim = int(input_dim)
        self.degree = int(degree)
        self.output_dim = self.input_dim * (1 + 2 * self.degree)
        # Exact powers of two from Python (not ``2 ** arange``, whose first use on the meta device, where the memory
        # planner builds the model, imports PyTorch's reference ops for seconds).
        freqs = torch.tensor([2.0**k for k in range(self.degree)], dtype=torch.float32)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (..., D)`` → ``(..., D·(1+2K))``."""
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"FrequencyEncoding expects (..., {self.input_dim}), got {tuple(x.shape)}")
        if self.degree == 0:
            return x
        xf = x[..., None, :] * self.freqs.to(x.dtype)[:, None]  # (..., K, D)
        sc = torch.stack([torch.sin(xf), torch.cos(xf)], dim=-2)  # (..., K, 2, D)
        return torch.cat([x, sc.flatten(-3)], dim=-1)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, degree={self.degree}, output_dim={self.output_dim}"


class PeriodicEncoding(nn.Module):
    """Harmonics of one cycle: ``t (..., 1) in [0, 1)`` → ``[sin(2πkt), cos(2πkt)]`` for ``k = 1..degree``
    (``(..., 2·degree)``), so ``t`` and ``t + 1`` encode alike: a cine that is one cardiac cycle has no first or last
    frame (its frame ``f`` of ``F`` sits at ``t = f / F``; :func:`dainr.model.networks.frame_times`).

    Parameters
    ----------
    degree:
        Highest harmonic (≥ 1); output dim ``2·degree``.
    """

    def __init__(self, degree: int):
        super().__init__()
        if degree < 1:
            raise ConfigError(f"PeriodicEncoding needs degree >= 1, got {degree}")
        self.input_dim = 1
        self.degree = int(degree)
        self.output_dim = 2 * self.degree
        harmonics = torch.tensor([2.0 * math.pi * k for k in range(1, self.degree + 1)], dtype=torch.float32)
        self.register_buffer("harmonics", harmonics, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t (..., 1)`` → ``(..., 2·degree)``: the sines of every harmonic, then their cosines."""
        if t.shape[-1] != 1:
            raise ValueError(f"PeriodicEncoding expects (..., 1), got {tuple(t.shape)}")
        phase = t * self.harmonics.to(t.dtype)
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)

    def extra_repr(self) -> str:
        return f"degree={self.degree}, output_dim={self.output_dim}"


# ----------------------------------------------------------------------------------------------------------------------
# grid layout (torch-ngp GridEncoder.__init__ and gridencoder.cu: get_grid_index, fast_hash)

_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
_U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class GridLayout:
    """Everything a kernel needs to evaluate a torch-ngp grid table; all per-level tuples have length ``L``.

    Attributes
    ----------
    input_dim, n_levels, n_features:
        ``D``, ``L``, ``C``.
    resolutions:
        Python-side level resolutions ``ceil(base·s^l)`` (used to size the table).
    scales:
        Kernel-side ``scale_l = exp2(l·log2 s)·base − 1`` emulated in float32, as the CUDA kernel computes it;
        a point ``x ∈ [0, 1]`` sits at grid position ``x·scale_l + shift``.
    kernel_resolutions:
        ``ceil(scale_l) + 1`` (the CUDA kernel's ``resolution``; equal to ``resolutions`` for sane settings).
    shift:
        0.5 for ``align_corners=False``, 0 otherwise.
    offsets:
        ``L+1`` row offsets of each level in the table.
    sizes:
        Rows of each level (``offsets[l+1] − offsets[l]``), the modulus of the index ("hashmap_size").
    strides:
        ``(L, D)`` dense strides; a dimension the CUDA loop never reaches (its stride would exceed the level size)
        has stride 0.
    use_hash:
        Per level: index by ``fast_hash`` (only with ``gridtype="hash"`` and a dense grid larger than the level).
    """

    input_dim: int
    n_levels: int
    n_features: int
    resolutions: tuple[int, ...]
    scales: tuple[float, ...]
    kernel_resolutions: tuple[int, ...]
    shift: float
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    use_hash: tuple[bool, ...]
    gridtype: str
    align_corners: bool

    @property
    def n_entries(self) -> int:
        return self.offsets[-1]


def grid_layout(
    input_dim: int = 2,
    n_levels: int = 16,
    n_features: int = 2,
    base_resolution: int = 16,
    desired_resolution: int | None = 2048,
    log2_hashmap_size: int = 19,
    per_level_scale: float = 2.0,
    gridtype: str = "tiled",
    align_corners: bool = False,
    convention: str = "torch-ngp",
) -> GridLayout:
    """Compute the table layout (offsets, level sizes, strides, scales).

    ``desired_resolution`` (when given) overrides ``per_level_scale`` with ``2^(log2(desired/base)/(L−1))``. Level
    ``l`` has ``R_l = ceil(base·s^l)`` and holds ``min(2^log2_hashmap_size, (R_l + (0 if align_corners else 1))^D)``
    entries rounded up to a multiple of 8 (the defaults give 2,764,976 entries).

    ``convention="tcnn"`` is tiny-cuda-nn's ``Grid`` of type ``Hash`` instead (``gridtype`` must be ``"hash"``): level
    sizes ``min(2^log2_hashmap_size, r_l^D)`` rounded up to 8 and dense strides ``r_l`` with ``r_l = ceil(scale_l) + 1``
    (no ``+1`` on top), always the ``+0.5`` shift. A torch table in this layout and ``tinycudann.Encoding`` hold the same
    numbers in the same order (``tests/model/test_model_encodings.py`` checks it on CUDA).
    """
    if convention not in ("torch-ngp", "tcnn"):
        raise ConfigError(f"grid convention must be 'torch-ngp' or 'tcnn', got {convention!r}")
    tcnn = convention == "tcnn"
    if tcnn and (gridtype != "hash" or align_corners):
        raise ConfigError("tiny-cuda-nn's grid convention exists for gridtype='hash' without align_corners only")
    if gridtype not in ("tiled", "hash"):
        raise ConfigError(f"gridtype must be 'tiled' or 'hash', got {gridtype!r}")
    if n_levels < 1 or n_features < 1 or input_dim < 1 or input_dim > len(_PRIMES):
        raise ConfigError(f"invalid grid shape: input_dim={input_dim}, n_levels={n_levels}, n_features={n_features}")
    if desired_resolution is not None:
        per_level_scale = float(np.exp2(np.log2(desired_resolution / base_resolution) / max(n_levels - 1, 1)))
    max_params = 2**log2_hashmap_size
    # The CUDA kernels: S = log2(per_level_scale) passed as float; scale = exp2f(level * S) * H - 1.0f.
    s32 = np.float32(np.log2(per_level_scale))
    scales = [np.float32(np.exp2(np.float32(lvl) * s32)) * np.float32(base_resolution) - np.float32(1.0)
              for lvl in range(n_levels)]
    kres = [int(np.ceil(sc)) + 1 for sc in scales]
    vertices = kres if tcnn else None  # vertices per dimension of a level: tcnn r_l; torch-ngp R_l (+1)
    resolutions, offsets, sizes = [], [0], []
    for lvl in range(n_levels):
        res = int(np.ceil(base_resolution * per_level_scale**lvl))
        per_dim = vertices[lvl] if tcnn else (res if align_corners else res + 1)
        n = min(max_params, per_dim**input_dim)
        n = int(np.ceil(n / 8) * 8)
        resolutions.append(res)
        sizes.append(n)
        offsets.append(offsets[-1] + n)
    strides, use_hash = [], []
    for lvl, kr in enumerate(kres):
        # get_grid_index: for (d = 0; d < D && stride <= hashmap_size; d++) { index += pos[d]*stride; stride *= R; }
        stride, st = 1, []
        for _ in range(input_dim):
            if stride <= sizes[lvl]:
                st.append(stride)
                stride = (stride * (kr if align_corners or tcnn else kr + 1)) & _U32
            else:
                st.append(0)
        strides.append(tuple(st))
        use_hash.append(gridtype == "hash" and stride > sizes[lvl])
    return GridLayout(
        input_dim=input_dim,
        n_levels=n_levels,
        n_features=n_features,
        resolutions=tuple(resolutions),
        scales=tuple(float(sc) for sc in scales),
        kernel_resolutions=tuple(kres),
        shift=0.0 if align_corners and not tcnn else 0.5,
        offsets=tuple(offsets),
        sizes=tuple(sizes),
        strides=tuple(strides),
        use_hash=tuple(use_hash),
        gridtype=gridtype,
        align_corners=align_corners,
    )


@functools.lru_cache(maxsize=64)
def _layout_tensors(layout: GridLayout, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Per-level constants on ``device``, made once: kernels then do no host-to-device copies (which also keeps
    them capturable in a CUDA graph)."""
    d = layout.input_dim
    return {
        "strides": torch.tensor(layout.strides, dtype=torch.int64, device=device),
        "use_hash": torch.tensor(layout.use_hash, dtype=torch.bool, device=device),
        "sizes": torch.tensor(layout.sizes, dtype=torch.int64, device=device),
        "offsets": torch.tensor(layout.offsets[:-1], dtype=torch.int64, device=device),
        "scales": torch.tensor(layout.scales, dtype=dtype, device=device),
        "bits": torch.tensor([[(k >> j) & 1 for j in range(d)] for k in range(1 << d)], dtype=torch.int64,
                             device=device),
    }


def grid_index(corner: torch.Tensor, layout: GridLayout) -> torch.Tensor:
    """Table rows of integer grid vertices, as torch-ngp's ``get_grid_index`` (plus the level offset).

    Parameters
    ----------
    corner:
        ``(..., L, D)`` int64 vertex coordinates (non-negative), one per level.

    Returns
    -------
    ``(..., L)`` int64 row in the full table.
    """
    t = _layout_tensors(layout, corner.device, torch.float32)
    dense = ((corner * t["strides"]).sum(-1)) & _U32  # strides (L, D)
    if any(layout.use_hash):
        h = torch.zeros_like(dense)
        for d in range(layout.input_dim):
            h = h ^ ((corner[..., d] * _PRIMES[d]) & _U32)
        dense = torch.where(t["use_hash"], h, dense)
    return dense % t["sizes"] + t["offsets"]


def _inside_unit_cube(x: torch.Tensor) -> torch.Tensor:
    return ((x >= 0) & (x <= 1)).all(dim=-1)


def torch_grid_kernel(x: torch.Tensor, table: torch.Tensor, layout: GridLayout) -> torch.Tensor:
    """Pure-PyTorch multilinear grid lookup, vectorised over levels; differentiable in ``table`` and ``x``.

    Parameters
    ----------
    x:
        ``(N, D)`` positions in ``[0, 1]^D``; a point with any coordinate outside gets all-zero features and zero
        gradient (torch-ngp's behaviour).
    table:
        ``(total_entries, C)``.

    Returns
    -------
    ``(N, L·C)``, level-major (``[:, l*C:(l+1)*C]`` is level ``l``).
    """
    n, d = x.shape
    inside = _inside_unit_cube(x)
    xs = torch.where(inside[:, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    consts = _layout_tensors(layout, x.device, x.dtype)
    pos = xs[:, None, :] * consts["scales"][None, :, None] + layout.shift  # (N, L, D)
    base = torch.floor(pos)
    frac = pos - base  # d frac / d pos = 1, like the kernel's analytic input gradient
    base = base.to(torch.int64)
    bits = consts["bits"]  # (K, D), corner k picks +1 in dim j when bit j is set (same corner order as the CUDA loop)
    corner = base[:, :, None, :] + bits  # (N, L, K, D)
    per_dim = torch.where(bits.bool(), frac[:, :, None, :], 1 - frac[:, :, None, :])  # (N, L, K, D)
    # An explicit product: Tensor.prod's backward scans with cumprod and checks for zeros (a host sync), which was
    # 92% of a step's GPU time and made the step uncapturable in a CUDA graph.
    w = per_dim[..., 0]
    for j in range(1, d):
        w = w * per_dim[..., j]  # (N, L, K)
    rows = grid_index(corner.transpose(1, 2), layout).transpose(1, 2)  # (N, L, K)
    # index_select (backward: index_add) rather than table[rows] (backward: a sorting index_put that synchronises,
    # which a CUDA graph cannot capture).
    vals = table.index_select(0, rows.reshape(-1)).reshape(*rows.shape, table.shape[1])  # (N, L, K, C)
    out = (w[..., None].to(table.dtype) * vals).sum(2)  # (N, L, C)
    out = out * inside[:, None, None].to(out.dtype)
    return out.reshape(n, layout.n_levels * layout.n_features)


def tcnn_available() -> bool:
    """True when ``import tinycudann`` works and CUDA is available."""
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except Exception:  # ImportError, or a CUDA/ABI mismatch at import
        return False
    return True


class _TcnnGrid(nn.Module):
    """tiny-cuda-nn grid encoding on CUDA; owns its parameters (``params``) in tiny-cuda-nn's layout."""

    def __init__(self, input_dim: int, config: dict):
        super().__init__()
        import tinycudann as tcnn

        try:
            self.enc = tcnn.Encoding(n_input_dims=input_dim, encoding_config=config, dtype=torch.float32)
        except TypeError:  # older bindings without dtype
            self.enc = tcnn.Encoding(n_input_dims=input_dim, encoding_config=config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = _inside_unit_cube(x)
        xs = torch.where(inside[:, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        out = self.enc(xs.float()).float()
        return out * inside[:, None].to(out.dtype)


class GridEncoding(nn.Module):
    """Multiresolution grid encoding with torch-ngp ``GridEncoder`` semantics (D-dimensional, multilinear).

    Per level ``l``: ``pos = x·scale_l + (0 if align_corners else 0.5)`` with ``scale_l = base·s^l − 1``, the
    ``2^D`` surrounding vertices are looked up and blended multilinearly. Vertex ``(c_0, .., c_{D-1})`` is stored at row
    ``(Σ_d c_d·stride_d) mod size_l`` (``stride_0 = 1``, ``stride_{d+1} = stride_d·(R_l + 1)``; "tiled": dense,
    wrapping modulo the level size when the dense grid is larger than ``2^log2_hashmap_size``) or, for ``gridtype="hash"`` when
    the dense grid does not fit, at ``(xor_d c_d·π_d) mod size_l`` with ``π = (1, 2654435761, 805459861, ...)`` in
    uint32 arithmetic. Input dimension 0 has stride 1.

    Parameters
    ----------
    input_dim, n_levels, n_features, base_resolution, desired_resolution, log2_hashmap_size, per_level_scale:
        As torch-ngp; ``desired_resolution`` overrides ``per_level_scale`` (defaults: s = 2^(7/15), resolutions
        16, 23, 31, ..., 1483, 2048; 2,764,976 table entries × 2 features).
    gridtype:
        ``"tiled"`` (the reference) or ``"hash"``.
    align_corners:
        torch-ngp's flag (the reference uses False).
    init_scale:
        Table initialised ``U(−init_scale, init_scale)`` from the global RNG (as torch-ngp, so seeding before
        construction reproduces the reference table).
    backend:
        ``"torch"`` (:func:`torch_grid_kernel`), ``"tcnn"`` or ``"auto"`` (``"torch"``: on the H200 the torch grid
        captured in a CUDA graph was faster than tiny-cuda-nn's, which cannot be captured; ``benchmarks/RESULTS.md``).
    convention:
        ``"torch-ngp"`` (the reference) or ``"tcnn"`` (tiny-cuda-nn's hash-grid layout, see :func:`grid_layout`).

    Notes
    -----
    With ``backend="tcnn"`` the table lives in ``tinycudann.Encoding`` (CUDA only) as tiny-cuda-nn's ``Hash`` grid,
    whatever ``gridtype`` says (tiny-cuda-nn has no torch-ngp ``tiled`` grid: its own ``Tiled`` type caps every level
    at ``base^D`` entries): the model is the torch backend's with ``gridtype="hash"``, ``convention="tcnn"``, value for
    value, not the torch-ngp grid of the reference. ``embeddings`` does not exist there. Out-of-range inputs are zeroed
    by this wrapper for both backends.

    Input ``x``: ``(N, D)`` in ``[0, 1]^D``. Output: ``(N, n_levels·n_features)``, level-major.
    """

    def __init__(
        self,
        input_dim: int = 2,
        n_levels: int = 16,
        n_features: int = 2,
        base_resolution: int = 16,
        desired_resolution: int | None = 2048,
        log2_hashmap_size: int = 19,
        gridtype: str = "tiled",
        align_corners: bool = False,
        init_scale: float = 1e-4,
        per_level_scale: float = 2.0,
        backend: str = "auto",
        convention: str = "torch-ngp",
    ):
        super().__init__()
        if backend == "auto":
            backend = "torch"
        if backend == "tcnn":
            if align_corners:
                raise ConfigError("the tcnn grid backend does not support align_corners=True; use backend='torch'")
            gridtype, convention = "hash", "tcnn"
        self.layout = grid_layout(
            input_dim=input_dim,
            n_levels=n_levels,
            n_features=n_features,
            base_resolution=base_resolution,
            desired_resolution=desired_resolution,
            log2_hashmap_size=log2_hashmap_size,
            per_level_scale=per_level_scale,
            gridtype=gridtype,
            align_corners=align_corners,
            convention=convention,
        )
        self.input_dim = input_dim
        self.n_levels = n_levels
        self.n_features = n_features
        self.base_resolution = base_resolution
        self.log2_hashmap_size = log2_hashmap_size
        self.per_level_scale = (
            float(np.exp2(np.log2(desired_resolution / base_resolution) / max(n_levels - 1, 1)))
            if desired_resolution is not None
            else float(per_level_scale)
        )
        self.gridtype = gridtype
        self.align_corners = align_corners
        self.init_scale = init_scale
        self.output_dim = n_levels * n_features

        self.convention = convention
        if backend == "tcnn":
            if not tcnn_available():
                raise ConfigError("grid backend 'tcnn' needs tinycudann and CUDA; use backend='torch' or install it")
            self.backend = "tcnn"
            self.tcnn = _TcnnGrid(input_dim, self.tcnn_config())
        elif backend == "torch":
            self.backend = backend
            self.embeddings = nn.Parameter(torch.empty(self.layout.n_entries, n_features))
            self.register_buffer("offsets", torch.tensor(self.layout.offsets, dtype=torch.int32))
            self.reset_parameters()
        else:
            raise ConfigError(f"unknown grid backend {backend!r}; choose one of auto, torch, tcnn")

    @property
    def resolutions(self) -> tuple[int, ...]:
        return self.layout.resolutions

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def tcnn_config(self) -> dict:
        """The tiny-cuda-nn encoding config of this grid (its ``Hash`` type: see the class notes)."""
        return {
            "otype": "Grid",
            "type": "Hash",
            "n_levels": self.n_levels,
            "n_features_per_level": self.n_features,
            "log2_hashmap_size": self.log2_hashmap_size,
            "base_resolution": self.base_resolution,
            "per_level_scale": self.per_level_scale,
            "interpolation": "Linear",
        }

    def reset_parameters(self) -> None:
        if self.backend != "tcnn":
            with torch.no_grad():
                self.embeddings.uniform_(-self.init_scale, self.init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (..., D)`` in ``[0,1]^D`` → ``(..., L·C)``."""
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"GridEncoding expects (..., {self.input_dim}), got {tuple(x.shape)}")
        prefix = x.shape[:-1]
        flat = x.reshape(-1, self.input_dim)
        if self.backend == "tcnn":
            out = self.tcnn(flat)
        else:
            out = torch_grid_kernel(flat, self.embeddings, self.layout)
        return out.reshape(*prefix, self.output_dim)

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, n_levels={self.n_levels}, n_features={self.n_features}, "
            f"base_resolution={self.base_resolution}, per_level_scale={self.per_level_scale:.6f}, "
            f"log2_hashmap_size={self.log2_hashmap_size}, gridtype={self.gridtype!r}, convention={self.convention!r}, "
            f"align_corners={self.align_corners}, backend={self.backend!r}"
        )
