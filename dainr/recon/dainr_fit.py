"""DA-INR optimisation for one prepared slice (DAINR_METHOD.md §3-4, with the reference code's flaws fixed).

Fixes relative to the reference code, by name:

* the undersampled images and their MDSR features are computed once per scan and cached (the reference re-simulated
  the whole data set every step);
* the random frame choice is seeded (frames are drawn without replacement, epoch by epoch);
* temporal interpolation never lets a held-out frame see its own data (features come from training frames only);
* spatial interpolation renders the full grid with continuous coordinates (no nearest-neighbour upsampling of the
  deformation, so no zeroed last row/column) and features resampled bilinearly with border replication;
* the output is the final model's frames: nothing is chosen by looking at a ground truth.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np
import torch

from dainr.config import Config, DainrConfig
from dainr.data import CineData
from dainr.errors import ResourceError
from dainr.model.encodings import GridEncoding
from dainr.model.features import MDSRFeatures, neighbour_features
from dainr.model.networks import DAINR, CanonicalNet, DeformationNet
from dainr.prep import PreparedCine
from dainr.recon.baselines import adjoint_recon
from dainr.recon.operators import SliceProblem, build_problem

log = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]
Monitor = Callable[[int, torch.Tensor], None]


def centred_coords(h: int, w: int, device: torch.device) -> torch.Tensor:
    """``(h·w, 2)`` coordinates p = (x, y) of pixel centres, row-major.

    Pixel i of n lies at ``(i − n//2)·2/n`` (the NUFFT's phase reference is pixel n//2), so a coarse grid and a fine
    grid of the same field of view share coordinates: coarse pixel i and fine pixel 2i coincide.
    """
    ys = (torch.arange(h, device=device) - h // 2) * (2.0 / h)
    xs = (torch.arange(w, device=device) - w // 2) * (2.0 / w)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def frame_times(n_frames: int, device: torch.device) -> torch.Tensor:
    """``(frames,)`` normalised time t = f / (F − 1) in [0, 1] (0 for a single frame)."""
    return torch.arange(n_frames, device=device, dtype=torch.float32) / max(n_frames - 1, 1)


def lowres_cine(cine: CineData, maps: np.ndarray, ratio: int) -> tuple[CineData, np.ndarray]:
    """The slice as seen at ``matrix/ratio``: samples with |k|·ratio < 0.5 (rescaled to the coarse grid's units),
    coil maps box-averaged. Used by spatial interpolation (train coarse, render fine)."""
    if ratio == 1:
        return cine, maps
    h, w = cine.matrix
    if h % ratio or w % ratio:
        from dainr.errors import ConfigError

        raise ConfigError(f"dainr.sr_ratio {ratio} must divide the matrix {h}×{w}")
    radius = np.abs(cine.traj).max(axis=(0, 1, 3))  # per sample index along the readout
    keep = np.nonzero(radius * ratio < 0.5)[0]
    traj = cine.traj[:, :, keep] * ratio
    ks = cine.kspace[..., keep]
    dcw = cine.dcw[..., keep] if cine.dcw is not None else None
    # Same object on a grid r times coarser: the orthonormal samples shrink by r (Σ over r² fewer pixels, each
    # standing for r² fine ones, and (HW)^-1/2 grows by r), so the coarse data are y / r at equal image intensity.
    ks = ks / np.float32(ratio)
    m = maps.reshape(maps.shape[0], h // ratio, ratio, w // ratio, ratio).mean(axis=(2, 4))
    m = m / np.sqrt((np.abs(m) ** 2).sum(0, keepdims=True)).clip(1e-8)
    low = CineData(kspace=ks, traj=traj, matrix=(h // ratio, w // ratio), spoke_mask=cine.spoke_mask, dcw=dcw,
                   slice_index=cine.slice_index, geometry=cine.geometry)
    return low, m.astype(np.complex64)


class _PreconditionedForward(torch.autograd.Function):
    """Forward NUFFT whose backward is the reference code's preconditioned gradient: the density-weighted,
    SENSE-combined adjoint instead of the true adjoint (DAINR_METHOD.md §4)."""

    @staticmethod
    def forward(ctx, x, problem: SliceProblem, frames: torch.Tensor):  # type: ignore[override]
        ctx.problem, ctx.frames = problem, frames
        return problem.op(x, frames)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        p = ctx.problem
        return p.op.adjoint(grad * p.density[ctx.frames][:, None], ctx.frames), None, None


def build_model(c: DainrConfig, feature_dim: int) -> DAINR:
    """The DA-INR network of a :class:`DainrConfig`."""
    g = c.grid
    grid = GridEncoding(input_dim=2, n_levels=g.levels, n_features=g.features_per_level,
                        base_resolution=g.base_resolution, desired_resolution=g.finest_resolution,
                        log2_hashmap_size=g.log2_table_size, gridtype=g.gridtype, init_scale=g.init_scale,
                        backend=g.backend)
    deform = DeformationNet(space_degree=c.space_degree, time_degree=c.time_degree, width=c.deformation_width,
                            depth=c.deformation_depth)
    canon = CanonicalNet(grid, space_degree=c.space_degree, time_degree=c.time_degree, feature_dim=feature_dim,
                         hidden=c.hidden)
    return DAINR(deform, canon)


def _schedule(opt: torch.optim.Optimizer, c: DainrConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if c.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: c.final_lr_ratio + (1 - c.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * s / c.steps)))
    if c.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=0.5)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


class FrameSampler:
    """Seeded frame order: each epoch is a permutation of the training frames, consumed ``k`` at a time."""

    def __init__(self, frames: np.ndarray, seed: int):
        self.frames = np.asarray(frames)
        self.rng = np.random.default_rng(seed)
        self.queue: list[int] = []

    def take(self, k: int) -> list[int]:
        k = min(k, len(self.frames))
        out: list[int] = []
        while len(out) < k:
            if not self.queue:
                self.queue = list(self.rng.permutation(self.frames))
            f = self.queue.pop()
            if f not in out:
                out.append(int(f))
        return out


def fit_dainr(prepared: PreparedCine, config: Config, device: torch.device,
              progress: Progress | None = None, monitor: Monitor | None = None,
              monitor_every: int = 0) -> tuple[torch.Tensor, int, list[float], dict]:
    """Fit DA-INR to one prepared slice and render every frame at the full matrix.

    ``monitor(step, images)``, when given, receives the rendered cine every ``monitor_every`` steps (a diagnostic
    for benchmarks: it never influences the optimisation or the output).

    Returns
    -------
    images ``(frames, H, W)`` complex64 (on ``device``), steps run, logged losses, facts for the report.
    """
    c = config.dainr
    cine, maps = lowres_cine(prepared.cine, prepared.coil_maps, c.sr_ratio)
    problem = build_problem(cine, maps, device)
    n_frames = cine.n_frames
    train = np.arange(0, n_frames, c.down_ratio) if c.down_ratio > 1 else np.arange(n_frames)
    if c.down_ratio > 1 and n_frames > 1 and train[-1] != n_frames - 1 and len(train) < 2:
        train = np.array([0, n_frames - 1])
    h, w = cine.matrix
    full_h, full_w = prepared.cine.matrix

    torch.manual_seed(config.seed)
    feats = None
    if c.features.enabled:
        with torch.no_grad():
            under = adjoint_recon(problem).abs().float()
            extractor = MDSRFeatures(seed=c.features.seed, weights=c.features.weights or None).to(device)
            feats = neighbour_features(extractor, under, distance=c.down_ratio, allowed=set(int(f) for f in train))
            del extractor
    feature_dim = 0 if feats is None else int(feats.shape[1])
    model = build_model(c, feature_dim).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    sched = _schedule(opt, c)
    ema = [p.detach().clone() for p in model.parameters()] if c.ema > 0 else None

    coords = centred_coords(h, w, device)
    times = frame_times(n_frames, device)
    feats_flat = None if feats is None else feats.flatten(2).transpose(1, 2)  # (F, h·w, C)
    sampler = FrameSampler(train, config.seed)
    per_step = min(c.frames_per_step, len(train))
    losses: list[float] = []
    info: dict = {"train_frames": int(len(train)), "train_matrix": [h, w]}

    def render(frames: list[int], xy: torch.Tensor, ff: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor:
        idx = torch.tensor(frames, device=device)
        return model.render(times[idx], xy, None if ff is None else ff[idx], image_shape=shape)

    coords_full = centred_coords(full_h, full_w, device)
    feats_full = None
    if feats is not None:
        ff = feats
        if (full_h, full_w) != (h, w):
            ff = torch.nn.functional.interpolate(feats, size=(full_h, full_w), mode="bilinear", align_corners=False)
        feats_full = ff.flatten(2).transpose(1, 2)

    @torch.no_grad()
    def render_all(chunk: int = 4) -> torch.Tensor:
        return torch.cat([render(list(range(s, min(s + chunk, n_frames))), coords_full, feats_full,
                                 (full_h, full_w)) for s in range(0, n_frames, chunk)])

    step = 0
    while step < c.steps:
        frames = sampler.take(per_step)
        idx = torch.tensor(frames, device=device)
        try:
            img = render(frames, coords, feats_flat, (h, w))
            pred = (_PreconditionedForward.apply(img, problem, idx) if c.preconditioned_gradient
                    else problem.op(img, idx))
            diff = (pred - problem.kspace[idx]) * problem.mask[idx][:, None]
            n_meas = problem.mask[idx].sum() * problem.kspace.shape[1]
            if c.loss == "l1":
                loss = (diff.real.abs().sum() + diff.imag.abs().sum()) / n_meas
            else:
                loss = (diff.abs() ** 2).sum() / n_meas
            opt.zero_grad(set_to_none=True)
            loss.backward()
        except torch.cuda.OutOfMemoryError:
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            if per_step == 1:
                raise ResourceError("GPU out of memory even at one frame per step; use a smaller matrix, "
                                    "dainr.sr_ratio=2, or another GPU") from None
            per_step = max(1, per_step // 2)
            log.warning("GPU out of memory: continuing with %d frame(s) per step", per_step)
            info["frames_per_step_after_oom"] = per_step
            continue
        opt.step()
        sched.step()
        step += 1
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema, model.parameters()):
                    e.lerp_(p.detach(), 1.0 - c.ema)
        if step % c.log_every == 0 or step == c.steps:
            lv = float(loss.detach())
            losses.append(lv)
            if progress is not None:
                progress(step, c.steps, f"loss {lv:.3e}")
        if monitor is not None and monitor_every and step % monitor_every == 0:
            monitor(step, render_all())

    if ema is not None:
        with torch.no_grad():
            for e, p in zip(ema, model.parameters()):
                p.copy_(e)
    out = render_all()
    # Where the coil maps vanish (outside the estimated signal support) the data do not constrain the network:
    # keep the image there at zero, as SENSE does.
    support = torch.as_tensor(np.abs(prepared.coil_maps).sum(0) > 0, device=device)
    out = out * support
    return out, step, losses, info
