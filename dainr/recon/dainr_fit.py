"""The DA-INR optimisation loop for one prepared slice (DAINR_METHOD.md §3-4, with the reference code's flaws fixed).

:class:`DainrFit` is the loop (sigpy's ``App``): it sets the slice up (operator, held-out spokes, neighbour features,
model), runs :class:`~dainr.recon.dainr_step.DainrStep` (sigpy's ``Alg``: one step, its loss a list of
:mod:`~dainr.recon.dainr_terms`) and owns everything around the steps: the frame order, the learning-rate schedule,
weight averaging, self-supervised selection and stopping on held-out spokes, the out-of-memory fallback and the
CUDA-graph capture. It returns a :class:`FitResult` whose :class:`~dainr.recon.dainr_model.FittedDainr` renders the
slice again at any matrix. :func:`fit_dainr` is ``DainrFit(...).run()``.

Fixes relative to the reference code, by name:

* the undersampled images and their MDSR features are computed once per scan and cached (the reference re-simulated
  the whole data set every step);
* the random frame choice is seeded (frames are drawn without replacement, epoch by epoch);
* temporal interpolation never lets a held-out frame see its own data (features come from training frames only, and
  :func:`dainr.recon.reconstruct` prepares the data from the training frames only);
* spatial interpolation renders the full grid with continuous coordinates (no nearest-neighbour upsampling of the
  deformation, so no zeroed last row/column) and features resampled bilinearly with border replication;
* the output is chosen without a ground truth: with held-out spokes (``dainr.validation_fraction``), the (averaged)
  weights at the lowest held-out k-space loss; otherwise the weights after the last step (averaged when
  ``dainr.ema`` is on).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from dainr.config import Config, DainrConfig
from dainr.data import CineData
from dainr.errors import ConfigError, ResourceError
from dainr.model.features import FEATURE_CHANNELS, MDSRFeatures, neighbour_features
from dainr.prep import PreparedCine
from dainr.recon.baselines import adjoint_recon
from dainr.recon.concurrent import empty_cache, seeded
from dainr.recon.dainr_model import FittedDainr, build_model, load_weights
from dainr.recon.dainr_step import DainrStep, StepGraph, build_optimizer, capture_step, lr_factor
from dainr.recon.dainr_terms import DataTerm, loss_terms, radial_acceleration, sampling_tv
from dainr.recon.operators import SliceProblem, build_problem

log = logging.getLogger(__name__)
#: progress(step, total, message)
Progress = Callable[[int, int, str], None]
#: monitor(step, images (frames, H, W) complex on the device)
Monitor = Callable[[int, torch.Tensor], None]


def training_frames(n_frames: int, down_ratio: int) -> np.ndarray:
    """``(T,)`` int: the frames whose data the fit (and the preparation) may use: every ``down_ratio``-th from frame
    0 (temporal interpolation renders the others), and at least the first and the last of a multi-frame cine."""
    train = np.arange(0, n_frames, down_ratio)
    if len(train) < 2 and n_frames > 1:
        train = np.array([0, n_frames - 1])
    return train


def lowres_cine(cine: CineData, maps: np.ndarray, ratio: int) -> tuple[CineData, np.ndarray]:
    """The slice as seen at ``matrix/ratio``: samples with |k|·ratio < 0.5 (rescaled to the coarse grid's units),
    coil maps box-averaged. Used by spatial interpolation (train coarse, render fine)."""
    if ratio == 1:
        return cine, maps
    h, w = cine.matrix
    if h % ratio or w % ratio:
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
    seeded random position), as the temporal regulariser needs; the window never wraps past the last frame unless
    ``wrap`` (a periodic cine, whose last frame neighbours its first).
    """

    def __init__(self, frames: np.ndarray, seed: int, consecutive: bool = False, wrap: bool = False):
        self.frames = np.asarray(frames)
        self.rng = np.random.default_rng(seed)
        self.queue: list[int] = []
        self.consecutive, self.wrap = consecutive, wrap

    def take(self, k: int) -> list[int]:
        k = min(k, len(self.frames))
        if self.consecutive:
            n = len(self.frames)
            start = int(self.rng.integers(0, n if self.wrap else n - k + 1))
            return [int(self.frames[(start + i) % n]) for i in range(k)]
        out: list[int] = []
        while len(out) < k:
            if not self.queue:
                self.queue = list(self.rng.permutation(self.frames))
            f = self.queue.pop()
            if f not in out:
                out.append(int(f))
        return out


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


class HeldOutSelection:
    """Self-supervised selection and stopping on held-out spokes.

    :meth:`check` computes the held-out k-space loss of the model's current weights (the loop makes them the output
    weights first), keeps a copy of the weights when the loss is the lowest so far, and sets :attr:`stop` after
    ``patience`` checks in a row without improvement (0: never).

    Attributes
    ----------
    history:
        ``(step, loss)`` of every check.
    best:
        Copies of the parameters at the lowest loss, or None before the first finite one.
    best_step:
        The step of ``best``.
    stop:
        True once the patience is spent.
    """

    def __init__(self, fitted: FittedDainr, term: DataTerm, patience: int):
        self.fitted, self.term, self.patience = fitted, term, patience
        self.history: list[tuple[int, float]] = []
        self.best: list[torch.Tensor] | None = None
        self.best_value, self.best_step, self.since, self.stop = math.inf, 0, 0, False

    @torch.no_grad()
    def loss(self, chunk: int = 4) -> float:
        """Mean held-out loss over the training frames (per held-out sample), rendered ``chunk`` frames at a time."""
        train, f = self.fitted.train_frames, self.fitted
        total, count = 0.0, 0.0
        for s in range(0, len(train), chunk):
            idx = torch.tensor([int(t) for t in train[s:s + chunk]], device=f.device)
            m = self.term.mask[idx]
            total += float(self.term(f.render_batch(idx, f.train_matrix), idx)) * float(m.sum())
            count += float(m.sum())
        return total / max(count, 1.0)

    def check(self, step: int) -> None:
        """Validate the model's current weights after ``step`` steps."""
        self.record(step, self.loss(), self.fitted.model.parameters())

    def record(self, step: int, v: float, weights) -> None:
        """Record the held-out loss ``v`` of ``weights`` (the model's parameters in order) after ``step`` steps: a
        copy of them is kept when ``v`` is the lowest so far (a batched fit computes ``v`` itself)."""
        self.history.append((step, v))
        if v < self.best_value:
            self.best = [p.detach().clone() for p in weights]
            self.best_value, self.best_step, self.since = v, step, 0
        else:
            self.since += 1
            self.stop = bool(self.patience) and self.since >= self.patience


@dataclass
class FitResult:
    """What a DA-INR fit returns.

    Attributes
    ----------
    images:
        ``(frames, H, W)`` complex64 on the device: every frame rendered at the full matrix from the output weights,
        zero outside the coil-map support, in the prepared data's units.
    iterations:
        Optimisation steps run.
    loss:
        The training loss every ``dainr.log_every`` steps (and at the last step).
    validation:
        ``(step, held-out loss)`` of every check; empty without held-out spokes.
    selected_step:
        The step whose (averaged) weights were output; None when the final weights were (no held-out spokes).
    fitted:
        The model with the output weights, its config and its rendering inputs: renders the slice again
        (:meth:`~dainr.recon.dainr_model.FittedDainr.render`).
    seconds:
        Wall time of the optimisation loop (set-up and final rendering excluded), s.
    cuda_graph:
        Whether the steps ran as a captured CUDA graph.
    oom_frames_per_step:
        Frames per step after an out-of-memory fallback; None when there was none.
    setup_seconds:
        Wall time of the set-up before the first step (operator, held-out spokes, features, model), s.
    capture_seconds:
        Wall time of the CUDA-graph capture with its warm-up steps (part of ``seconds``), s; 0 without a graph.
    acceleration:
        The slice's radial acceleration (:func:`~dainr.recon.dainr_terms.radial_acceleration`), which set its TV
        weights (``fitted.config``).
    """

    images: torch.Tensor
    iterations: int
    loss: list[float]
    validation: list[tuple[int, float]]
    selected_step: int | None
    fitted: FittedDainr
    seconds: float
    cuda_graph: bool
    oom_frames_per_step: int | None = None
    setup_seconds: float = 0.0
    capture_seconds: float = 0.0
    acceleration: float = 0.0

    @property
    def info(self) -> dict[str, Any]:
        """The facts a reconstruction report carries (JSON-ready)."""
        out: dict[str, Any] = {"train_frames": int(len(self.fitted.train_frames)),
                               "train_matrix": list(self.fitted.train_matrix)}
        if self.oom_frames_per_step is not None:
            out["frames_per_step_after_oom"] = self.oom_frames_per_step
        if self.validation:
            out["validation"] = [[s, round(v, 6)] for s, v in self.validation]
        out["setup_seconds"] = round(self.setup_seconds, 3)
        out["fit_seconds"] = round(self.seconds, 3)
        out["capture_seconds"] = round(self.capture_seconds, 3)
        out["cuda_graph"] = self.cuda_graph
        c = self.fitted.config
        out["radial_acceleration"] = round(self.acceleration, 2)
        out["tv_weights"] = [c.tv_temporal, c.tv_spatial]
        if self.selected_step is not None:
            out["selected_step"] = self.selected_step
            out["steps_run"] = self.iterations
        return out


@torch.no_grad()
def _neighbour_features(extractor: MDSRFeatures | None, problem: SliceProblem, fit_mask: torch.Tensor,
                        c: DainrConfig, train: np.ndarray) -> torch.Tensor | None:
    """``(frames, C, h, w)`` MDSR features of every frame's training-frame neighbours, from the undersampled images
    of the fitted spokes only, on the extractor's device; None without an extractor (``dainr.features`` off)."""
    if extractor is None:
        return None
    under = adjoint_recon(problem, weights=fit_mask).abs().float()
    return neighbour_features(extractor, under, distance=c.down_ratio, allowed=set(int(f) for f in train))


class DainrFit:
    """The DA-INR optimisation of one prepared slice: set up on construction, :meth:`run` fits and renders.

    Parameters
    ----------
    prepared:
        The prepared slice (:func:`dainr.prep.prepare`).
    config:
        The whole config (``config.dainr`` and ``config.seed`` are read).
    device:
        Where to fit.
    progress:
        ``progress(step, total, message)`` every ``dainr.log_every`` steps.
    monitor, monitor_every:
        ``monitor(step, images)`` receives the rendered cine (output weights, prepared units) every
        ``monitor_every`` steps: a diagnostic for benchmarks that never influences the optimisation or the output.
    init_state:
        Start from these network weights (a ``state_dict`` of a model of the same settings: warm start) instead of
        the seeded initialisation.
    """

    def __init__(self, prepared: PreparedCine, config: Config, device: torch.device,
                 progress: Progress | None = None, monitor: Monitor | None = None, monitor_every: int = 0,
                 init_state: dict[str, torch.Tensor] | None = None):
        t0 = time.perf_counter()
        self.device, self.progress, self.monitor, self.monitor_every = device, progress, monitor, monitor_every
        if config.dainr.nufft_backend == "csr" and config.deterministic and device.type == "cuda":
            raise ConfigError("dainr.nufft_backend=csr is not bit-identical run to run on a GPU (cuSPARSE); set "
                              "deterministic=false to use it, or use the gather backend")
        cine, maps = lowres_cine(prepared.cine, prepared.coil_maps, config.dainr.sr_ratio)
        spoke_mask = cine.spoke_mask if cine.spoke_mask is not None else np.ones(cine.kspace.shape[::2][:2], bool)
        self.acceleration = radial_acceleration(spoke_mask, prepared.cine.matrix)
        c = self.c = sampling_tv(config.dainr, self.acceleration)  # the TV weights this acquisition gets
        problem = build_problem(cine, maps, device, backend=c.nufft_backend)
        held = torch.as_tensor(holdout_mask(spoke_mask, c.validation_fraction, config.seed), device=device)
        val_mask = problem.mask * held[..., None]
        fit_mask = problem.mask - val_mask  # the loss and the features never see held-out spokes
        train = training_frames(cine.n_frames, c.down_ratio)

        with seeded(config.seed):  # the random initialisation, never interleaved with another thread's
            extractor = (MDSRFeatures(seed=c.features.seed, weights=c.features.weights or None)
                         if c.features.enabled else None)
            model = build_model(c, FEATURE_CHANNELS if c.features.enabled else 0)
        feats = _neighbour_features(None if extractor is None else extractor.to(device), problem, fit_mask, c, train)
        model = model.to(device)
        if init_state is not None:
            load_weights(model, init_state, "the warm start's weights")
        # tiny-cuda-nn's kernels record events on their own streams, which fails inside a CUDA-graph capture
        self.use_graph = c.cuda_graph and device.type == "cuda" and c.steps > 10 and c.grid.backend != "tcnn"
        opt = build_optimizer(model, c, device, fused=c.fused and device.type == "cuda", capturable=self.use_graph)
        self.ema = AveragedWeights(model, c.ema) if c.ema > 0 else None
        # Where the coil maps vanish (outside the estimated signal support) the data do not constrain the network:
        # the image is kept at zero there, as SENSE does.
        support = torch.as_tensor(np.abs(prepared.coil_maps).sum(0) > 0, device=device)
        full = prepared.cine.matrix
        self.fitted = FittedDainr(model=model, config=c, n_frames=cine.n_frames, train_frames=train,
                                  matrix=(int(full[0]), int(full[1])),
                                  train_matrix=(int(cine.matrix[0]), int(cine.matrix[1])), features=feats,
                                  support=support, scale=float(prepared.scale))
        # Make the rendering inputs now, on the current stream: not lazily inside a CUDA graph's warm-up (a side
        # stream) or its capture.
        self.fitted.times()
        self.fitted.inputs(self.fitted.train_matrix)
        self.fitted.inputs(self.fitted.matrix)
        self.step = DainrStep(self.fitted, loss_terms(c, DataTerm(problem, fit_mask, c.loss,
                                                                  c.preconditioned_gradient)), opt)
        self.sampler = FrameSampler(train, config.seed, consecutive=self.step.consecutive_frames,
                                    wrap=c.periodic_time)
        self.per_step = min(c.frames_per_step, len(train))
        self.selection = (HeldOutSelection(self.fitted, DataTerm(problem, val_mask, c.loss), c.patience)
                          if c.validation_fraction > 0 else None)
        self.graph: StepGraph | None = None
        self.oom_frames_per_step: int | None = None
        self.setup_seconds = time.perf_counter() - t0
        self.capture_seconds = 0.0

    def output_weights(self) -> contextlib.AbstractContextManager:
        """Inside the block the model holds what would be output at this step: the averaged weights when
        averaging, its own otherwise."""
        return self.ema.applied() if self.ema is not None else contextlib.nullcontext()

    def run(self) -> FitResult:
        """Fit, load the output weights into the model and render every frame."""
        c = self.c
        losses: list[float] = []
        t_fit = time.perf_counter()
        step = 0
        while step < c.steps:
            frames = self.sampler.take(self.per_step)
            self.step.set_lr(c.lr * lr_factor(c, step))
            try:
                if self.use_graph and self.graph is None:
                    step += self._capture()
                loss = (self.graph.run(frames) if self.graph is not None
                        else self.step(torch.tensor(frames, device=self.device)))
            except torch.cuda.OutOfMemoryError:
                self._fewer_frames_per_step()
                continue
            step += 1
            if self.ema is not None:
                self.ema.update()
            if step % c.log_every == 0 or step == c.steps:
                lv = float(loss.detach())
                losses.append(lv)
                if self.progress is not None:
                    self.progress(step, c.steps, f"loss {lv:.3e}")
            if self.monitor is not None and self.monitor_every and step % self.monitor_every == 0:
                with self.output_weights():
                    self.monitor(step, self.fitted.render())
            if self.selection is not None and (step % c.validate_every == 0 or step == c.steps):
                with self.output_weights():  # validate (and keep) what would be output
                    self.selection.check(step)
                if self.selection.stop:
                    break

        seconds = time.perf_counter() - t_fit
        sel = self.selection
        best = sel.best if sel is not None else None
        final = best if best is not None else (self.ema.avg if self.ema is not None else None)
        if final is not None:
            with torch.no_grad():
                for e, p in zip(final, self.fitted.model.parameters()):
                    p.copy_(e)
        images = self.fitted.render()
        return FitResult(images=images, iterations=step, loss=losses,
                         validation=[] if sel is None else list(sel.history),
                         selected_step=None if best is None else sel.best_step, fitted=self.fitted,
                         seconds=seconds, cuda_graph=self.graph is not None,
                         oom_frames_per_step=self.oom_frames_per_step, setup_seconds=self.setup_seconds,
                         acceleration=self.acceleration,
                         capture_seconds=self.capture_seconds)

    def _capture(self) -> int:
        """Capture the step in a CUDA graph (or fall back to eager steps); returns the warm-up steps run."""
        t0 = time.perf_counter()
        warm = [self.sampler.take(self.per_step) for _ in range(2)]
        self.graph = capture_step(self.step, self.per_step, self.device, warm)
        self.use_graph = self.graph is not None
        self.capture_seconds = time.perf_counter() - t0
        return len(warm)

    def _fewer_frames_per_step(self) -> None:
        """After a CUDA out-of-memory error: halve the frames per step and run eagerly, or give up at one."""
        self.step.optimizer.zero_grad(set_to_none=True)
        self.graph, self.use_graph = None, False
        empty_cache()
        if self.per_step == 1:
            raise ResourceError("GPU out of memory even at one frame per step; use a smaller matrix, "
                                "dainr.sr_ratio=2, or another GPU") from None
        self.per_step = max(1, self.per_step // 2)
        log.warning("GPU out of memory: continuing with %d frame(s) per step", self.per_step)
        self.oom_frames_per_step = self.per_step


def fit_dainr(prepared: PreparedCine, config: Config, device: torch.device, progress: Progress | None = None,
              monitor: Monitor | None = None, monitor_every: int = 0,
              init_state: dict[str, torch.Tensor] | None = None) -> FitResult:
    """Fit DA-INR to one prepared slice and render every frame at the full matrix (see :class:`DainrFit`)."""
    return DainrFit(prepared, config, device, progress, monitor, monitor_every, init_state).run()
