"""GPU memory budget of a reconstruction, checked before the optimisation starts (INPUT_POLICY.md §9).

:func:`estimate_memory` predicts the peak GPU memory of one slice for a config: the data on the device (k-space,
masks, density, trajectory, coil maps), the NUFFT interpolation tables, the model with its AdamW state, the cached
MDSR features, and the activations of one optimisation step (proportional to frames per step × matrix × network
widths, plus the step's NUFFT buffers). :func:`plan_memory` compares it with the device's free memory and lowers
``dainr.frames_per_step`` until it fits (a warning), or refuses with :class:`~dainr.errors.ResourceError` when even
one frame per step does not. On the CPU nothing is checked.

The estimate is deliberately conservative (the pure-torch grid backend's activations, a safety margin); the
optimisation still catches CUDA out-of-memory and halves the frames per step, so the check never needs to be exact.
All sizes are bytes.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from dainr.config import Config
from dainr.data import CineData
from dainr.errors import ResourceError
from dainr.model.features import FEATURE_CHANNELS
from dainr.recon.baselines import FRAME_COIL_PAIRS
from dainr.recon.concurrent import device_wide
from dainr.recon.dainr_model import build_model

log = logging.getLogger(__name__)

#: Kaiser–Bessel neighbours per sample of the gather NUFFT (numpoints² = 6²).
KB_NEIGHBOURS = 36
#: Oversampled NUFFT grid size relative to the image (2× per dimension).
GRID_FACTOR = 4
#: Multiplier on the estimate: allocator fragmentation, cuFFT plans and workspaces, small tensors.
SAFETY = 1.25
#: Fixed allowance for the CUDA/cuBLAS/cuFFT workspaces the estimate does not model, bytes.
FIXED_OVERHEAD = 256 * 2**20
#: Share of the free memory the reconstruction may plan to use.
USABLE_FRACTION = 0.9
#: Measured over modelled activations of one step. Calibrated on an H100 (PyTorch 2.11, eager steps, torch grid
#: backend, 2026-11-22): peak allocated minus the persistent parts was 0.45-0.57 of the modelled step for matrices
#: 128-256, 8-16 coils, 1-8 frames per step; with this factor and SAFETY the total is about 1.4x the measured peak.
STEP_CALIBRATION = 0.5


@dataclass(frozen=True)
class SeriesShape:
    """The sizes of one slice that drive memory: ``(frames, coils, spokes, samples)`` and the ``(H, W)`` matrix."""

    frames: int
    coils: int
    spokes: int
    samples: int
    matrix: tuple[int, int]

    @classmethod
    def of(cls, cine: CineData, coils: int | None = None) -> SeriesShape:
        """The shape of ``cine``; ``coils`` replaces its coil count (e.g. after coil compression)."""
        return cls(frames=cine.n_frames, coils=int(coils or cine.n_coils), spokes=cine.n_spokes,
                   samples=cine.n_samples, matrix=(int(cine.matrix[0]), int(cine.matrix[1])))


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted GPU memory of one slice, by part (bytes).

    Attributes
    ----------
    data: k-space, masks, density, trajectory and coil maps on the device.
    nufft_tables: the gather or csr NUFFT's per-sample neighbour indices and weights.
    model: network parameters with their gradients and AdamW state (and the averaged and best copies).
    features: the cached MDSR features of every frame.
    step: activations and NUFFT buffers of one step (grows with frames per step).
    setup: transient peak before the optimisation (table construction, undersampled images, feature extraction).
    """

    data: int
    nufft_tables: int
    model: int
    features: int
    step: int
    setup: int

    @property
    def persistent(self) -> int:
        return self.data + self.nufft_tables + self.model + self.features

    @property
    def total(self) -> int:
        """The predicted peak, margins included."""
        peak = max(self.persistent + self.step, self.data + self.nufft_tables + self.setup)
        return int(peak * SAFETY) + FIXED_OVERHEAD


@dataclass(frozen=True)
class MemoryPlan:
    """The outcome of :func:`plan_memory`.

    Attributes
    ----------
    frames_per_step: frames per step to run with (the requested number when it fits).
    requested: frames per step the config asks for.
    estimate: the estimate at ``frames_per_step``.
    free: free device memory the plan was made against; None on the CPU (nothing checked).
    """

    frames_per_step: int
    requested: int
    estimate: MemoryEstimate | None
    free: int | None

    @property
    def reduced(self) -> bool:
        return self.frames_per_step < self.requested


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:.1f} GiB"


def _train_shape(shape: SeriesShape, config: Config) -> SeriesShape:
    """The problem DA-INR optimises: spatial interpolation trains at matrix/sr_ratio on the inner samples."""
    r = max(1, config.dainr.sr_ratio)
    if r == 1:
        return shape
    return dataclasses.replace(shape, samples=max(1, shape.samples // r),
                               matrix=(max(1, shape.matrix[0] // r), max(1, shape.matrix[1] // r)))


def model_parameters(config: Config) -> int:
    """Parameters of the DA-INR model of ``config`` (grid table and both MLPs), counted on the model itself built on
    PyTorch's ``meta`` device (no memory, no initialisation cost), with the torch grid backend's table layout (the
    tcnn backend's differs slightly)."""
    c = dataclasses.replace(config.dainr, grid=dataclasses.replace(config.dainr.grid, backend="torch"))
    with torch.device("meta"):
        model = build_model(c, FEATURE_CHANNELS if c.features.enabled else 0)
    return sum(p.numel() for p in model.parameters())


def bytes_per_point(config: Config) -> int:
    """Activation bytes of one rendered pixel of one frame in a training step (forward saved for backward, and the
    gradients), for the pure-torch grid backend (the largest)."""
    c = config.dainr
    g = c.grid
    enc = 2 * (1 + 2 * c.space_degree) + (0 if c.periodic_time else 1) + 2 * c.time_degree
    feature_dim = FEATURE_CHANNELS if c.features.enabled else 0
    floats = 0
    floats += 3 * enc  # encodings (sin/cos, both nets)
    floats += 3 * c.deformation_width * c.deformation_depth  # pre-activation, ReLU output, gradient per layer
    # grid: per level 4 corners × (int64 index = 2 floats, weight, features), output, and its gradient
    floats += g.levels * (4 * (2 + 1 + 2 * g.features_per_level) + 2 * g.features_per_level)
    floats += 2 * feature_dim  # the gathered features and the concatenated input
    floats += 2 * (g.levels * g.features_per_level + enc)  # rest of the concatenated input, its gradient
    floats += 3 * c.hidden * 4  # four hidden layers
    return 4 * floats


def estimate_memory(shape: SeriesShape, config: Config, frames_per_step: int | None = None) -> MemoryEstimate:
    """Predicted GPU memory of one slice of ``shape`` under ``config``.

    Parameters
    ----------
    shape:
        The slice's sizes (after coil compression, when known).
    config:
        The config; ``config.method`` selects the DA-INR or the baseline model of memory.
    frames_per_step:
        Frames per DA-INR step; default ``config.dainr.frames_per_step``.

    Returns
    -------
    :class:`MemoryEstimate`; non-decreasing in frames per step, frames, coils, spokes, samples, matrix and widths.
    """
    c = config.dainr
    full = shape
    t = _train_shape(shape, config) if config.method == "dainr" else shape
    f, coils = t.frames, t.coils
    k = t.spokes * t.samples  # samples per frame
    hw = t.matrix[0] * t.matrix[1]
    grid = GRID_FACTOR * hw
    j = KB_NEIGHBOURS

    # k-space (complex64), mask / density / fit and validation masks (4 float32), traj + omega (2×2 float32)
    data = f * coils * k * 8 + f * k * 4 * 4 + f * k * 2 * 4 * 2 + coils * hw * 8
    backend = "gather" if config.method != "dainr" else c.nufft_backend
    # gather: int64 index + complex64 weight; csr: int32 column + complex64 value, twice (M and Mᴴ), Mᴴ's row pointers
    tables = {"gather": f * k * j * 16, "csr": f * k * j * 24 + f * (grid + 1) * 4}.get(backend, 0)
    # building the tables: float64/complex128 intermediates of all frames at once (csr: and the int64 sorts)
    table_build = {"gather": f * k * j * 48, "csr": f * k * j * 64}.get(backend, 0)
    # the interpolation of one frame and coil: gather's neighbour values (and the adjoint's sort keys), csr's
    # row-major copy of the grid; the table NUFFT's buffers
    interp = {"gather": k * j * 8 * 2, "csr": grid * 8}.get(backend, k * 8 * 16)
    # frame × coil pairs of one adjoint call (an upper bound of adjoint_chunk(coils) · coils, monotonic in both)
    adjoint_pairs = min(f * coils, max(FRAME_COIL_PAIRS, coils))

    if config.method != "dainr":
        adjoint = adjoint_pairs * (grid * 8 * 2 + interp)
        cg = 6 * f * hw * 8 + f * coils * (grid * 8 * 2 + interp) if config.method == "cgsense" else 0
        return MemoryEstimate(data=data, nufft_tables=tables, model=0, features=0, step=max(adjoint, cg),
                              setup=table_build)

    b = max(1, min(c.frames_per_step if frames_per_step is None else frames_per_step, f))
    # weights, gradients, two AdamW moments (float32), plus the averaged weights (dainr.ema) and the kept best
    # model (self-supervised selection)
    copies = 4 + (c.ema > 0) + (c.validation_fraction > 0)
    model = 4 * copies * model_parameters(config)
    full_hw = full.matrix[0] * full.matrix[1]
    feats = f * FEATURE_CHANNELS * hw * 4 if c.features.enabled else 0
    if c.features.enabled and full_hw != hw:
        feats += f * FEATURE_CHANNELS * full_hw * 4  # resampled to the render matrix
    # one step: network activations, then the NUFFT of B frames (coil images, padded grid + FFT and their
    # gradients, gathered neighbours, predictions and residuals)
    step = b * hw * bytes_per_point(config)
    step_interp = {"gather": k * j * 8 * 3, "csr": grid * 8 * 2}.get(backend, k * 8 * 16)
    step += b * coils * (hw * 8 * 2 + grid * 8 * 4 + step_interp + k * 8 * 4)
    # setup: undersampled adjoint (chunks of adjoint_chunk(coils) frames), MDSR on 8 frames (64-channel 5×5
    # convs), the feature stack
    setup = adjoint_pairs * (grid * 8 * 2 + interp)
    if c.features.enabled:
        setup = max(setup, min(8, f) * 64 * hw * 4 * 6 + 2 * feats)
    # rendering all frames at the end: 4 frames at a time, without gradients
    setup = max(setup, model + feats + min(4, full.frames) * full_hw * bytes_per_point(config) // 3)
    return MemoryEstimate(data=data, nufft_tables=tables, model=model, features=feats,
                          step=int(step * STEP_CALIBRATION), setup=max(setup, table_build))


def device_free_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device (``torch.cuda.mem_get_info``), after handing the blocks PyTorch's caching
    allocator holds unused (an earlier slice's) back to the driver; None for the CPU."""
    if device.type != "cuda":
        return None
    with device_wide, torch.cuda.device(device):  # never during another thread's CUDA-graph capture
        torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def plan_memory(shape: SeriesShape, config: Config, free_bytes: int | None) -> MemoryPlan:
    """Decide the frames per step for ``free_bytes`` of free device memory (None: CPU, nothing checked).

    Keeps ``config.dainr.frames_per_step`` when the estimate fits in ``USABLE_FRACTION`` of the free memory;
    otherwise the largest smaller number that fits. Baselines have nothing to reduce.

    Raises
    ------
    ResourceError
        When the series does not fit even at one frame per step (or a baseline does not fit at all).
    """
    requested = max(1, min(config.dainr.frames_per_step, shape.frames)) if config.method == "dainr" else 1
    if free_bytes is None:
        return MemoryPlan(frames_per_step=requested, requested=requested, estimate=None, free=None)
    budget = int(free_bytes * USABLE_FRACTION)
    h, w = shape.matrix
    what = (f"slice of {shape.frames} frames × {shape.coils} coils × {shape.spokes} spokes × {shape.samples} "
            f"samples at {h}×{w}")
    if config.method != "dainr":
        est = estimate_memory(shape, config)
        if est.total > budget:
            raise ResourceError(f"the {what} needs about {_mib(est.total)} of GPU memory for {config.method}, more "
                                f"than the {_mib(budget)} usable ({_mib(free_bytes)} free): use --device cpu, fewer "
                                "coils (prep.virtual_coils=8), or a GPU with more free memory")
        return MemoryPlan(frames_per_step=1, requested=1, estimate=est, free=free_bytes)
    for b in range(requested, 0, -1):
        est = estimate_memory(shape, config, b)
        if est.total <= budget:
            return MemoryPlan(frames_per_step=b, requested=requested, estimate=est, free=free_bytes)
    est = estimate_memory(shape, config, 1)
    raise ResourceError(f"the {what} needs about {_mib(est.total)} of GPU memory even at one frame per step, "
                        f"more than the {_mib(budget)} usable ({_mib(free_bytes)} free): use fewer coils "
                        "(prep.virtual_coils=8), dainr.sr_ratio=2, a smaller grid (dainr.grid.log2_table_size), or a "
                        "GPU with more free memory")


def fit_to_device(cine: CineData, config: Config, device: torch.device, free_bytes: int | None = None,
                  coils: int | None = None) -> Config:
    """``config`` adjusted to the device's free memory before the optimisation of ``cine`` starts.

    Parameters
    ----------
    cine:
        The slice (prepared or raw).
    config:
        The validated config; it is not modified.
    device:
        The reconstruction device; on the CPU ``config`` is returned unchanged.
    free_bytes:
        Free device memory; default ``torch.cuda.mem_get_info``.
    coils:
        Coils after compression, when ``cine`` is not yet prepared; default ``prep.virtual_coils`` or the data's.

    Returns
    -------
    ``config`` itself when it fits, else a copy with fewer ``dainr.frames_per_step`` (and a logged warning).

    Raises
    ------
    ResourceError
        When even one frame per step does not fit.
    """
    if device.type != "cuda" and free_bytes is None:
        return config
    free = device_free_bytes(device) if free_bytes is None else int(free_bytes)
    n_coils = coils or (min(config.prep.virtual_coils, cine.n_coils) if config.prep.virtual_coils else None)
    plan = plan_memory(SeriesShape.of(cine, n_coils), config, free)
    if plan.estimate is not None:
        log.debug("slice %d: estimated GPU memory %s of %s free", cine.slice_index, _mib(plan.estimate.total),
                  _mib(free))
    if not plan.reduced:
        return config
    log.warning("slice %d: the series needs about %s of GPU memory at %d frames per step, more than the %s usable "
                "(%s free): running with %d frame(s) per step", cine.slice_index,
                _mib(estimate_memory(SeriesShape.of(cine, n_coils), config).total), plan.requested,
                _mib(free * USABLE_FRACTION), _mib(free), plan.frames_per_step)
    return dataclasses.replace(config, dainr=dataclasses.replace(config.dainr, frames_per_step=plan.frames_per_step))
