"""One DA-INR optimisation step (:class:`DainrStep`, sigpy's ``Alg``) and its CUDA-graph replay (:class:`StepGraph`).

A step renders a batch of training frames, sums the loss terms (:mod:`dainr.recon.dainr_terms`), backpropagates and
updates the weights with AdamW. Everything around the steps (which frames, the learning-rate schedule, stopping,
selection, weight averaging, out-of-memory fallback, when to capture a graph) is the loop's
(:class:`~dainr.recon.dainr_fit.DainrFit`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from dainr.config import DainrConfig
from dainr.model.networks import DAINR
from dainr.recon.concurrent import device_wide
from dainr.recon.dainr_model import FittedDainr
from dainr.recon.dainr_terms import LossTerm

log = logging.getLogger(__name__)


def lr_factor(c: DainrConfig, step: int) -> float:
    """Learning-rate multiplier at ``step``: constant, cosine (to ``final_lr_ratio``) or ×0.5 every ``step_size``."""
    if c.schedule == "cosine":
        return c.final_lr_ratio + (1 - c.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(step, c.steps) / c.steps))
    if c.schedule == "step":
        return 0.5 ** (step // c.step_size)
    return 1.0


class FusedAdamW:
    """AdamW through PyTorch's fused kernel (``torch._fused_adamw_``, the kernel ``torch.optim.AdamW(fused=True)``
    runs) without ``torch.optim``: constructing or stepping any ``torch.optim`` optimiser imports TorchDynamo, seconds
    of every process's start-up (benchmarks/RESULTS.md, issue 16). Same state (``exp_avg``, ``exp_avg_sq`` and a
    float32 ``step`` on the parameter's device, made at the first step), same kernel, same arguments, so the same
    updates bit for bit; capturable in a CUDA graph with a tensor ``lr``.

    Parameters
    ----------
    groups:
        Parameter groups: dicts with ``params`` (tensors of one device and dtype), ``lr`` (float, or a 0-d tensor on
        the parameters' device that :func:`set_lr` fills in place) and any other keys (``lr_scale``), kept as given.
    weight_decay, betas, eps:
        AdamW's (``torch.optim.AdamW``'s defaults for ``betas`` and ``eps``).
    """

    def __init__(self, groups: list[dict], weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.param_groups = [dict(g, params=list(g["params"])) for g in groups]
        self.weight_decay, self.betas, self.eps = float(weight_decay), betas, float(eps)
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p not in self.state:
                    self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                     "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                     "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            st = [self.state[p] for p in params]
            steps = [s["step"] for s in st]
            torch._foreach_add_(steps, 1)
            torch._fused_adamw_(params, [p.grad for p in params], [s["exp_avg"] for s in st],
                                [s["exp_avg_sq"] for s in st], [], steps, amsgrad=False, lr=g["lr"],
                                beta1=self.betas[0], beta2=self.betas[1], weight_decay=self.weight_decay,
                                eps=self.eps, maximize=False, grad_scale=None, found_inf=None)


#: The optimiser of a fit: :class:`FusedAdamW` where fused (CUDA), ``torch.optim.AdamW`` otherwise.
Optimizer = FusedAdamW | torch.optim.AdamW


def build_optimizer(model: DAINR, c: DainrConfig, device: torch.device, fused: bool,
                    capturable: bool) -> Optimizer:
    """AdamW with two groups: the grid table at ``lr · grid_lr_scale``, the MLPs at ``lr`` (each group's
    ``lr_scale`` is applied by :func:`set_lr`). With ``capturable`` (a CUDA graph) the lr is a tensor updated in place."""
    grid = list(model.canonical.grid.parameters())
    in_grid = {id(p) for p in grid}
    return grouped_adamw(grid, [p for p in model.parameters() if id(p) not in in_grid], c, device, fused, capturable)


def grouped_adamw(grid: list[torch.Tensor], rest: list[torch.Tensor], c: DainrConfig, device: torch.device,
                  fused: bool, capturable: bool) -> Optimizer:
    """:func:`build_optimizer` from the two parameter lists: ``grid`` (the grid table) and ``rest`` (the MLPs); also
    used for the stacked parameters of a batched fit (:mod:`dainr.recon.batched_fit`). ``fused``: PyTorch's fused
    AdamW kernel through :class:`FusedAdamW` (no TorchDynamo import); otherwise ``torch.optim.AdamW``'s default
    (for-each) implementation."""
    groups = [{"params": grid, "lr_scale": c.grid_lr_scale}, {"params": rest, "lr_scale": 1.0}]
    for g in groups:
        lr = c.lr * g["lr_scale"]
        g["lr"] = torch.tensor(lr, device=device) if capturable else lr
    if fused:
        return FusedAdamW(groups, weight_decay=c.weight_decay)
    return torch.optim.AdamW(groups, lr=c.lr, weight_decay=c.weight_decay, capturable=capturable)


def set_lr(opt: Optimizer, lr: float) -> None:
    """Set the learning rate in place, times each group's ``lr_scale`` (a tensor lr stays the same tensor, as a
    captured CUDA graph needs)."""
    for g in opt.param_groups:
        v = lr * g.get("lr_scale", 1.0)
        if isinstance(g["lr"], torch.Tensor):
            g["lr"].fill_(v)
        else:
            g["lr"] = v


class OptimizerStep:
    """An optimisation step around a loss: :meth:`loss` (a subclass's) of a step's frames, backpropagate, update
    :attr:`optimizer`. :class:`DainrStep` for one slice, :class:`~dainr.recon.batched_fit.BatchedStep` for several."""

    optimizer: Optimizer

    def loss(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """Run one step on ``frames``; returns the loss before the update."""
        loss = self.loss(frames)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def set_lr(self, lr: float) -> None:
        """The learning rate of the next steps (see :func:`set_lr`)."""
        set_lr(self.optimizer, lr)


def capture_step(step: OptimizerStep, frames_shape: int | tuple[int, ...], device: torch.device,
                 warmup: Sequence, what: str = "the step") -> StepGraph | None:
    """``step`` captured in a CUDA graph after the ``warmup`` frame batches, or None (a warning; the step's gradients
    cleared and the device synchronised) when an op cannot be captured: the fit then runs eagerly. An out-of-memory
    error is raised (the caller lowers the frames per step)."""
    try:
        return StepGraph(step, frames_shape, device, warmup=warmup)
    except torch.cuda.OutOfMemoryError:
        raise
    except RuntimeError as e:  # an op that cannot be captured: run eagerly instead
        log.warning("CUDA graph capture of %s failed (%s); continuing without it", what, str(e).splitlines()[0])
        step.optimizer.zero_grad(set_to_none=True)
        with device_wide:
            torch.cuda.synchronize(device)
        return None


class DainrStep(OptimizerStep):
    """One optimisation step: render a batch of training frames, add up the loss terms, backpropagate, AdamW.

    Parameters
    ----------
    fitted:
        The model and its rendering inputs; the step renders at ``fitted.train_matrix``.
    terms:
        The loss terms (:func:`~dainr.recon.dainr_terms.loss_terms`): the first one's value plus the others'.
    optimizer:
        The optimiser of ``fitted.model``'s parameters (:func:`build_optimizer`).
    """

    def __init__(self, fitted: FittedDainr, terms: Sequence[LossTerm], optimizer: Optimizer):
        if not terms:
            raise ValueError("a DA-INR step needs at least one loss term")
        self.fitted = fitted
        self.terms = list(terms)
        self.optimizer = optimizer

    @property
    def consecutive_frames(self) -> bool:
        """Whether a step's frames must be neighbours in time (a term compares them)."""
        return any(t.consecutive_frames for t in self.terms)

    def loss(self, frames: torch.Tensor) -> torch.Tensor:
        """The loss of frames ``frames`` (``(B,)`` int64 on the device), with its graph for backward."""
        img = self.fitted.render_batch(frames, self.fitted.train_matrix)
        loss = self.terms[0](img, frames)
        for term in self.terms[1:]:
            loss = loss + term(img, frames)
        return loss


class StepGraph:
    """A :class:`DainrStep` (render, NUFFT, loss, backward, AdamW) captured whole in a CUDA graph.

    DA-INR's step is thousands of tiny kernels; replaying a graph removes the launch and Python overhead. The frame
    indices live in a static device tensor that is refilled before each replay. The warm-up steps that CUDA graphs
    need (on a side stream) are real optimisation steps on real frames. The optimiser must have been built with
    ``capturable=True``.

    Several threads may fit at once: each captures on its own side stream in ``thread_local`` mode, so the other
    threads' steps and allocations go on meanwhile, one capture at a time in the process
    (:data:`dainr.recon.concurrent.device_wide`).

    ``step`` may be anything with ``loss(idx) -> scalar`` and ``optimizer``: a batched step over slices
    (:class:`~dainr.recon.batched_fit.BatchedStep`) passes ``batch = (slices, frames)`` and nested frame lists.
    """

    def __init__(self, step: DainrStep, batch: int | tuple[int, ...], device: torch.device, warmup: list[list]):
        self.idx = torch.zeros(batch, dtype=torch.long, device=device)
        opt = step.optimizer
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for frames in warmup:
                self.idx.copy_(torch.tensor(frames))
                opt.zero_grad(set_to_none=True)
                step.loss(self.idx).backward()
                opt.step()
        torch.cuda.current_stream(device).wait_stream(side)
        self.warmup_steps = len(warmup)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with device_wide, torch.cuda.graph(self.graph, stream=side, capture_error_mode="thread_local"):
            self.loss = step.loss(self.idx)
            self.loss.backward()
            opt.step()

    def run(self, frames: list[int]) -> torch.Tensor:
        """Replay the step on ``frames``; returns the (static) loss tensor."""
        self.idx.copy_(torch.tensor(frames))
        self.graph.replay()
        return self.loss
