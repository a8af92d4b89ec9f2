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

import contextlib
import logging
import math
import time
from typing import Callable

import numpy as np
import torch

from dainr.config import Config, DainrConfig
from dainr.data import CineData
from dainr.errors import ResourceError
from dainr.model.encodings import GridEncoding
from dainr.model.features import MDSRFeatures, neighbour_features
from dainr.model.networks import DAINR, CanonicalNet, DeformationNet, frame_times
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


def lowres_cine(cine: CineData, maps: np.ndarray, ratio: int) -> tuple[CineData, np.ndarray]:
    """The slice as seen at ``matrix/ratio``: samples with |k|·ratio < 0.5 (rescaled to the coarse grid's units),
    coil maps box-averaged. Used by spatial interpolation (train coarse, render fine)."""
    if ratio == 1:
        return cine, maps
    h, w = cine.matrix
    if h % ratio or w % ratio:
        from dainr.errors import ConfigError

        raise ConfigError(f"dainr.sr_ratio {ratio} must divide the matrix {h}×{w}")
    radius = np.linalg.norm(cine.traj, axis=-1).max(axis=(0, 1))  # |k| per sample index along the readout
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


def data_loss(pred: torch.Tensor, data: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean k-space loss over the samples where ``mask`` (``(B, spokes, samples)``) is 1, all coils.

    ``l1``: |Re| + |Im| of the residual (the reference's L1 on real and imaginary parts); ``l2``: |residual|².
    """
    diff = (pred - data) * mask[:, None]
    n = mask.sum().clamp_min(1.0) * data.shape[1]
    if kind == "l1":
        return (diff.real.abs().sum() + diff.imag.abs().sum()) / n
    return (diff.abs() ** 2).sum() / n


def temporal_tv(img: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean magnitude of the difference between consecutive frames of ``(B, H, W)`` complex images (smoothed at 0)."""
    d = img[1:] - img[:-1]
    return torch.sqrt(d.real.square() + d.imag.square() + eps).mean()


def spatial_tv(img: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean isotropic total variation of ``(B, H, W)`` complex images: |∇x| with forward differences (smoothed at 0)."""
    dx = img[:, :-1, 1:] - img[:, :-1, :-1]
    dy = img[:, 1:, :-1] - img[:, :-1, :-1]
    return torch.sqrt(dx.real.square() + dx.imag.square() + dy.real.square() + dy.imag.square() + eps).mean()


class AveragedWeights:
    """Exponentially weighted mean of the iterates so far (weight ``decay**age``), used for the output and, with
    self-supervised validation, for the held-out loss (the averaged iterate is what gets selected).

    Bias-corrected as in Adam: after ``t`` updates the average is ``Σ_s decay**(t-s) θ_s / Σ_s decay**(t-s)`` over
    the iterates ``θ_1 … θ_t`` only, so the random initial weights never pull it back (a plain EMA started from them
    lags the fit by about ``1/(1-decay)`` steps)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.live = [p.detach() for p in model.parameters()]  # views sharing the parameters' storage
        self.avg = [p.clone() for p in self.live]
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        torch._foreach_lerp_(self.avg, self.live, (1.0 - self.decay) / (1.0 - self.decay ** self.updates))

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the model's parameters and the averages in place (twice restores the model)."""
        for a, p in zip(self.avg, self.live):
            tmp = p.clone()
            p.copy_(a)
            a.copy_(tmp)

    @contextlib.contextmanager
    def applied(self):
        """The model holds the averaged weights inside the block, its own weights again after it."""
        self.swap()
        try:
            yield
        finally:
            self.swap()


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


def lr_factor(c: DainrConfig, step: int) -> float:
    """Learning-rate multiplier at ``step``: constant, cosine (to ``final_lr_ratio``) or ×0.5 every ``step_size``."""
    if c.schedule == "cosine":
        return c.final_lr_ratio + (1 - c.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(step, c.steps) / c.steps))
    if c.schedule == "step":
        return 0.5 ** (step // c.step_size)
    return 1.0


def build_optimizer(model: DAINR, c: DainrConfig, device: torch.device, fused: bool,
                    capturable: bool) -> torch.optim.AdamW:
    """AdamW with two groups: the grid table at ``lr · grid_lr_scale``, the MLPs at ``lr`` (each group's
    ``lr_scale`` is applied by :func:`set_lr`). With ``capturable`` (a CUDA graph) the lr is a tensor updated in place."""
    grid = list(model.canonical.grid.parameters())
    in_grid = {id(p) for p in grid}
    groups = [{"params": grid, "lr_scale": c.grid_lr_scale},
              {"params": [p for p in model.parameters() if id(p) not in in_grid], "lr_scale": 1.0}]
    for g in groups:
        lr = c.lr * g["lr_scale"]
        g["lr"] = torch.tensor(lr, device=device) if capturable else lr
    return torch.optim.AdamW(groups, lr=c.lr, weight_decay=c.weight_decay, fused=fused or None,
                             capturable=capturable)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate in place, times each group's ``lr_scale`` (a tensor lr stays the same tensor, as a
    captured CUDA graph needs)."""
    for g in opt.param_groups:
        v = lr * g.get("lr_scale", 1.0)
        if isinstance(g["lr"], torch.Tensor):
            g["lr"].fill_(v)
        else:
            g["lr"] = v


class StepGraph:
    """One whole optimisation step (render, NUFFT, loss, backward, AdamW) captured in a CUDA graph.

    DA-INR's step is thousands of tiny kernels; replaying a graph removes the launch and Python overhead. The frame
    indices live in a static device tensor that is refilled before each replay. The warm-up steps that CUDA graphs
    need (on a side stream) are real optimisation steps on real frames.
    """

    def __init__(self, loss_fn: Callable[[torch.Tensor], torch.Tensor], opt: torch.optim.Optimizer, batch: int,
                 device: torch.device, warmup: list[list[int]]):
        self.idx = torch.zeros(batch, dtype=torch.long, device=device)
        self.opt = opt
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for frames in warmup:
                self.idx.copy_(torch.tensor(frames))
                opt.zero_grad(set_to_none=True)
                loss_fn(self.idx).backward()
                opt.step()
        torch.cuda.current_stream(device).wait_stream(side)
        self.warmup_steps = len(warmup)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.loss = loss_fn(self.idx)
            self.loss.backward()
            opt.step()

    def run(self, frames: list[int]) -> torch.Tensor:
        self.idx.copy_(torch.tensor(frames))
        self.graph.replay()
        return self.loss


def holdout_mask(spoke_mask: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``(frames, spokes)`` bool: the measured spokes held out for validation, ``round(fraction·S_f)`` per frame
    (at least one when ``fraction > 0``, never all of a frame's spokes)."""
    rng = np.random.default_rng(seed + 31337)
    out = np.zeros_like(spoke_mask, dtype=bool)
    if fraction <= 0:
        return out
    for f in range(spoke_mask.shape[0]):
        measured = np.flatnonzero(spoke_mask[f])
        n = min(max(1, int(round(fraction * len(measured)))), len(measured) - 1)
        if n > 0:
            out[f, rng.choice(measured, n, replace=False)] = True
    return out


class FrameSampler:
    """Seeded frame order: each epoch is a permutation of the training frames, consumed ``k`` at a time.

    With ``consecutive=True`` a step gets ``k`` neighbouring training frames in time order (a window starting at a
    seeded random position, never wrapping), as the temporal regulariser needs.
    """

    def __init__(self, frames: np.ndarray, seed: int, consecutive: bool = False):
        self.frames = np.asarray(frames)
        self.rng = np.random.default_rng(seed)
        self.queue: list[int] = []
        self.consecutive = consecutive

    def take(self, k: int) -> list[int]:
        k = min(k, len(self.frames))
        if self.consecutive:
            start = int(self.rng.integers(0, len(self.frames) - k + 1))
            return [int(f) for f in self.frames[start:start + k]]
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
    problem = build_problem(cine, maps, device, backend=c.nufft_backend)
    n_frames = cine.n_frames
    spoke_mask = cine.spoke_mask if cine.spoke_mask is not None else np.ones(cine.kspace.shape[::2][:2], bool)
    held = torch.as_tensor(holdout_mask(spoke_mask, c.validation_fraction, config.seed), device=device)
    val_mask = problem.mask * held[..., None]
    fit_mask = problem.mask - val_mask  # the loss and the features never see held-out spokes
    train = np.arange(0, n_frames, c.down_ratio) if c.down_ratio > 1 else np.arange(n_frames)
    if c.down_ratio > 1 and n_frames > 1 and train[-1] != n_frames - 1 and len(train) < 2:
        train = np.array([0, n_frames - 1])
    h, w = cine.matrix
    full_h, full_w = prepared.cine.matrix

    torch.manual_seed(config.seed)
    feats = None
    if c.features.enabled:
        with torch.no_grad():
            under = adjoint_recon(problem, weights=fit_mask).abs().float()
            extractor = MDSRFeatures(seed=c.features.seed, weights=c.features.weights or None).to(device)
            feats = neighbour_features(extractor, under, distance=c.down_ratio, allowed=set(int(f) for f in train))
            del extractor
    feature_dim = 0 if feats is None else int(feats.shape[1])
    model = build_model(c, feature_dim).to(device)
    use_graph = c.cuda_graph and device.type == "cuda" and c.steps > 10
    fused = c.fused and device.type == "cuda"
    opt = build_optimizer(model, c, device, fused=fused, capturable=use_graph)
    ema = AveragedWeights(model, c.ema) if c.ema > 0 else None
    # What would be output at this step: the averaged weights when averaging, the model's own otherwise.
    as_output = ema.applied if ema is not None else contextlib.nullcontext

    coords = centred_coords(h, w, device)
    times = frame_times(n_frames, device)
    # (F, h·w, C) cached in half precision (the features of a random frozen CNN need no more); the B frames of a
    # step are cast back to float32 when gathered.
    feats_flat = None if feats is None else feats.flatten(2).transpose(1, 2).contiguous().half()
    sampler = FrameSampler(train, config.seed, consecutive=c.tv_temporal > 0)
    per_step = min(c.frames_per_step, len(train))
    losses: list[float] = []
    info: dict = {"train_frames": int(len(train)), "train_matrix": [h, w]}

    def render(frames: list[int], xy: torch.Tensor, ff: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor:
        """Frames ``frames`` at coordinates ``xy`` -> ``(B, H, W)`` complex (no gradient bookkeeping needed)."""
        idx = torch.tensor(frames, device=device)
        return model.render(times[idx], xy, None if ff is None else ff[idx].float(), image_shape=shape)

    coords_full = centred_coords(full_h, full_w, device)
    feats_full = None
    if feats is not None:
        ff = feats
        if (full_h, full_w) != (h, w):
            ff = torch.nn.functional.interpolate(feats, size=(full_h, full_w), mode="bilinear", align_corners=False)
        feats_full = ff.flatten(2).transpose(1, 2).contiguous().half()

    # Where the coil maps vanish (outside the estimated signal support) the data do not constrain the network:
    # the image is kept at zero there, as SENSE does.
    support = torch.as_tensor(np.abs(prepared.coil_maps).sum(0) > 0, device=device)

    @torch.no_grad()
    def render_all(chunk: int = 4) -> torch.Tensor:
        return torch.cat([render(list(range(s, min(s + chunk, n_frames))), coords_full, feats_full,
                                 (full_h, full_w)) for s in range(0, n_frames, chunk)]) * support

    @torch.no_grad()
    def validation_loss(chunk: int = 4) -> float:
        total, count = 0.0, 0.0
        for s in range(0, len(train), chunk):
            fr = [int(f) for f in train[s:s + chunk]]
            i = torch.tensor(fr, device=device)
            pred = problem.op(render(fr, coords, feats_flat, (h, w)), i)
            m = val_mask[i]
            total += float(data_loss(pred, problem.kspace[i], m, c.loss)) * float(m.sum())
            count += float(m.sum())
        return total / max(count, 1.0)

    best, best_val, best_step, since = None, math.inf, 0, 0
    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        ff = None if feats_flat is None else feats_flat[idx].float()
        img = model.render(times[idx], coords, ff, image_shape=(h, w))
        pred = (_PreconditionedForward.apply(img, problem, idx) if c.preconditioned_gradient
                else problem.op(img, idx))
        loss = data_loss(pred, problem.kspace[idx], fit_mask[idx], c.loss)
        if c.tv_temporal > 0 and img.shape[0] > 1:
            loss = loss + c.tv_temporal * temporal_tv(img)
        if c.tv_spatial > 0:
            loss = loss + c.tv_spatial * spatial_tv(img)
        return loss

    graph: StepGraph | None = None
    t_fit = time.perf_counter()
    step = 0
    while step < c.steps:
        frames = sampler.take(per_step)
        set_lr(opt, c.lr * lr_factor(c, step))
        try:
            if use_graph and graph is None:
                warm = [sampler.take(per_step) for _ in range(2)]
                try:
                    graph = StepGraph(step_loss, opt, per_step, device, warmup=warm)
                except torch.cuda.OutOfMemoryError:
                    raise
                except RuntimeError as e:  # an op that cannot be captured: run eagerly instead
                    log.warning("CUDA graph capture failed (%s); continuing without it", str(e).splitlines()[0])
                    use_graph = False
                    opt.zero_grad(set_to_none=True)
                    torch.cuda.synchronize(device)
                step += len(warm)
            if graph is not None:
                loss = graph.run(frames)
            else:
                loss = step_loss(torch.tensor(frames, device=device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        except torch.cuda.OutOfMemoryError:
            opt.zero_grad(set_to_none=True)
            graph, use_graph = None, False
            torch.cuda.empty_cache()
            if per_step == 1:
                raise ResourceError("GPU out of memory even at one frame per step; use a smaller matrix, "
                                    "dainr.sr_ratio=2, or another GPU") from None
            per_step = max(1, per_step // 2)
            log.warning("GPU out of memory: continuing with %d frame(s) per step", per_step)
            info["frames_per_step_after_oom"] = per_step
            continue
        step += 1
        if ema is not None:
            ema.update()
        if step % c.log_every == 0 or step == c.steps:
            lv = float(loss.detach())
            losses.append(lv)
            if progress is not None:
                progress(step, c.steps, f"loss {lv:.3e}")
        if monitor is not None and monitor_every and step % monitor_every == 0:
            with as_output():
                monitor(step, render_all())
        if c.validation_fraction > 0 and (step % c.validate_every == 0 or step == c.steps):
            with as_output():  # validate (and keep) what would be output
                v = validation_loss()
                improved = v < best_val
                if improved:
                    best = [p.detach().clone() for p in model.parameters()]
            info.setdefault("validation", []).append([step, round(v, 6)])
            if improved:
                best_val, best_step, since = v, step, 0
            else:
                since += 1
                if c.patience and since >= c.patience:
                    break

    info["fit_seconds"] = round(time.perf_counter() - t_fit, 3)
    info["cuda_graph"] = graph is not None
    final = best if best is not None else (ema.avg if ema is not None else None)
    if final is not None:
        with torch.no_grad():
            for e, p in zip(final, model.parameters()):
                p.copy_(e)
    if best is not None:
        info["selected_step"] = best_step
        info["steps_run"] = step
    return render_all(), step, losses, info
