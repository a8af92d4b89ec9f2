"""Several independent DA-INR fits in one batched optimisation step (issue 16 goal 1).

One 128² slice leaves a GPU mostly idle: its step is thousands of tiny kernels. :class:`BatchedFit` fits ``S``
slices (or, equally, ``S`` seeds of one slice) of the same shape and settings together: their networks' parameters
are stacked along a leading slice axis (``torch.func.stack_module_state``) and one step evaluates all ``S`` networks
and all ``S`` loss terms with the same kernels, each ``S`` times larger (``torch.func.vmap`` of the slice's render
and loss through ``torch.func.functional_call``), backpropagates once and runs one AdamW over the stacked
parameters. Nothing couples the slices: AdamW (with weight decay) is per element, the loss of the batch is the sum of
the slices' losses (each slice's gradient is its own loss's), the averaged weights are per element, and the
learning-rate schedule is the same for all. The step is captured in a CUDA graph like one slice's
(:class:`~dainr.recon.dainr_step.StepGraph`).

What stays per slice:

* the set-up: every slice is set up by its own :class:`~dainr.recon.dainr_fit.DainrFit` (operator, held-out spokes,
  features, seeded initialisation), so a batched slice starts exactly where it starts alone;
* the frame order: each slice draws its frames from its own seeded
  :class:`~dainr.recon.dainr_fit.FrameSampler` (a copy of its fit's), as it does alone. (Slices of one exam share
  ``config.seed``, so in practice they draw the same order; seeds of one slice draw different ones.);
* held-out selection and early stopping: the held-out losses of all slices are computed in one batched pass, and
  each slice's :class:`~dainr.recon.dainr_fit.HeldOutSelection` keeps its own history, best weights and patience.
  A slice that stops keeps the weights it had selected (or, without a finite held-out loss, those it would output
  at that step) and its step count; it stays in the batch (its further updates are discarded) until every slice has
  stopped or the last step is reached;
* the output: each slice's weights are copied back into its own network, which renders its cine
  (:class:`~dainr.recon.dainr_fit.FitResult` per slice, as alone).

Equality with one slice alone: on the CPU the batched step gives bit-identical gradients here (vmap's batched
matrix products and gathers add in the same order); on a GPU, batched matrix products may add in another order, so
the images agree to float tolerance only (``tests/recon/test_batched_fit.py`` states the tolerance), and
``benchmarks/exam.py --batch-slices`` reports the per-slice PSNR difference.

Not batched (each slice then runs alone, :func:`fit_batch` decides): the reference's preconditioned gradient (a
custom autograd function, which vmap cannot batch), the ``table`` NUFFT, the tiny-cuda-nn grid, and slices whose
shapes or settings differ (:func:`batch_key`). A CUDA out-of-memory error in a batched step falls back to one slice
at a time.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from dainr.recon.concurrent import empty_cache
from dainr.recon.dainr_fit import AveragedWeights, DainrFit, FitResult, HeldOutSelection
from dainr.recon.dainr_step import OptimizerStep, StepGraph, capture_step, grouped_adamw, lr_factor
from dainr.recon.dainr_terms import data_loss

log = logging.getLogger(__name__)


def batch_key(fit: DainrFit) -> tuple | None:
    """What must agree for set-up fits to share a batched step (the DA-INR settings, the shapes of the data, the
    frames, the matrices, the step's options), or None when the fit cannot be batched at all (preconditioned
    gradient, a NUFFT other than ``gather``, tiny-cuda-nn grid)."""
    c, f = fit.c, fit.fitted
    if c.preconditioned_gradient or c.nufft_backend != "gather" or f.model.canonical.grid.backend != "torch":
        return None
    data = fit.step.terms[0]
    return (repr(c), f.n_frames, tuple(int(t) for t in f.train_frames), f.matrix, f.train_matrix,
            tuple(data.problem.kspace.shape), f.features is None, fit.per_step, fit.use_graph,
            fit.selection is None, fit.ema is None, str(fit.device))


class _Renderer(nn.Module):
    """``forward`` = the network's :meth:`~dainr.model.networks.DAINR.render`, so that ``functional_call`` can run
    it with a slice's parameters."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, times: torch.Tensor, coords: torch.Tensor, features: torch.Tensor | None,
                matrix: tuple[int, int]) -> torch.Tensor:
        return self.model.render(times, coords, features, image_shape=matrix)


def _shell(module: nn.Module) -> nn.Module:
    """A copy of ``module`` on the meta device: its code and settings without memory (every tensor it uses is passed
    to ``functional_call``)."""
    return copy.deepcopy(module).to("meta")


def _share(modules: Sequence[nn.Module], stacked: dict[str, torch.Tensor]) -> None:
    """Make each module's buffers views of the stacked ones (no second copy of NUFFT tables on the device)."""
    for s, m in enumerate(modules):
        for name, t in stacked.items():
            owner, _, leaf = name.rpartition(".")
            setattr(m.get_submodule(owner) if owner else m, leaf, t[s])


class BatchedStep(OptimizerStep):
    """One optimisation step of ``S`` slices: render each slice's frames, add up its loss terms, backpropagate the sum
    over slices, AdamW over the stacked parameters; every kernel runs once for all slices.

    Parameters
    ----------
    fits:
        The slices' set-up fits, all with the same :func:`batch_key`.
    capturable:
        Build the optimiser for a CUDA graph (tensor learning rate).

    Attributes
    ----------
    stacked:
        The slices' parameters, each ``(S, *shape)`` (one network's ``parameters()`` order), the optimiser's leaves.
    losses:
        ``(S,)`` each slice's loss of the last step (the captured graph's output tensor once captured).
    """

    def __init__(self, fits: Sequence[DainrFit], capturable: bool):
        first = fits[0]
        c = self.c = first.c
        self.n = len(fits)
        self.matrix = first.fitted.train_matrix
        models = [f.fitted.model for f in fits]
        params, _ = stack_module_state(models)
        self.names = list(params)
        self.stacked = nn.ParameterList([nn.Parameter(params[n].detach()) for n in self.names])
        self.buffers = {f"model.{k}": v for k, v in first.fitted.model.named_buffers()}  # the same for every slice
        self.renderer = _shell(_Renderer(first.fitted.model))
        ops = [f.step.terms[0].problem.op for f in fits]
        self.op = _shell(ops[0])  # before the buffers become views (a copy of a view would copy the whole stack)
        _, self.op_buffers = stack_module_state(ops)
        _share(ops, self.op_buffers)
        problems = [f.step.terms[0].problem for f in fits]
        self.kspace = torch.stack([p.kspace for p in problems])
        self.fit_mask = torch.stack([f.step.terms[0].mask for f in fits])
        self.val_mask = (torch.stack([f.selection.term.mask for f in fits]) if first.selection is not None
                         else None)
        self.kind, self.val_kind = c.loss, (first.selection.term.kind if first.selection is not None else c.loss)
        self.regularisers = first.step.terms[1:]  # pure functions of the rendered frames, the same for every slice
        self.times = first.fitted.times()
        self.coords = {m: first.fitted.inputs(m)[0] for m in {first.fitted.train_matrix, first.fitted.matrix}}
        self.features = None
        if first.fitted.features is not None:
            self.features = torch.stack([f.fitted.inputs(self.matrix)[1] for f in fits])  # (S, F, h·w, C) half
            for s, f in enumerate(fits):  # the slices' own caches become views of the stack
                f.fitted._inputs[self.matrix] = (f.fitted._inputs[self.matrix][0], self.features[s])
        grid = [p for n, p in zip(self.names, self.stacked) if n.startswith("canonical.grid.")]
        rest = [p for n, p in zip(self.names, self.stacked) if not n.startswith("canonical.grid.")]
        self.optimizer = grouped_adamw(grid, rest, c, first.device, fused=c.fused and first.device.type == "cuda",
                                       capturable=capturable)
        self.losses: torch.Tensor | None = None

    def _render(self, params: list[torch.Tensor], features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """One slice (inside vmap): frames ``(B,)`` at the training matrix -> ``(B, h, w)`` complex."""
        state = {f"model.{n}": p for n, p in zip(self.names, params)} | self.buffers
        feats = None if self.features is None else features[frames].float()
        return functional_call(self.renderer, state, (self.times[frames], self.coords[self.matrix], feats,
                                                      self.matrix))

    def _data(self, op_buffers: dict, images: torch.Tensor, frames: torch.Tensor, kspace: torch.Tensor,
              mask: torch.Tensor, kind: str) -> torch.Tensor:
        pred = functional_call(self.op, op_buffers, (images, frames))
        return data_loss(pred, kspace[frames], mask[frames], kind)

    def _slice_loss(self, params, op_buffers, features, kspace, mask, frames) -> torch.Tensor:
        """One slice's training loss (inside vmap), as :meth:`~dainr.recon.dainr_step.DainrStep.loss`."""
        img = self._render(params, features, frames)
        loss = self._data(op_buffers, img, frames, kspace, mask, self.kind)
        for term in self.regularisers:
            loss = loss + term(img, frames)
        return loss

    def _features(self) -> torch.Tensor:
        # vmap needs a tensor to map over; without features a placeholder stands in (never read).
        return self.features if self.features is not None else self.kspace.new_zeros(self.n, 1).real

    def loss(self, frames: torch.Tensor) -> torch.Tensor:
        """The sum over slices of each slice's loss of its frames ``frames`` (``(S, B)`` int64 on the device), with
        its graph for backward; each slice's own value is kept in :attr:`losses`."""
        self.losses = vmap(self._slice_loss)(list(self.stacked), self.op_buffers, self._features(), self.kspace,
                                             self.fit_mask, frames)
        return self.losses.sum()

    @torch.no_grad()
    def held_out(self, train: Sequence[int], chunk: int = 4) -> list[float]:
        """Every slice's mean held-out loss over the training frames (per held-out sample), rendered ``chunk`` frames
        at a time, as :meth:`~dainr.recon.dainr_fit.HeldOutSelection.loss` computes it for one slice."""

        def one(params, op_buffers, features, kspace, mask, frames):
            img = self._render(params, features, frames)
            return self._data(op_buffers, img, frames, kspace, mask, self.val_kind), mask[frames].sum()

        total, count = [0.0] * self.n, [0.0] * self.n
        device = self.kspace.device
        for s in range(0, len(train), chunk):
            idx = torch.tensor([int(t) for t in train[s:s + chunk]], device=device).expand(self.n, -1)
            values, counts = vmap(one)(list(self.stacked), self.op_buffers, self._features(), self.kspace,
                                       self.val_mask, idx)
            for i, (v, m) in enumerate(zip(values.tolist(), counts.tolist())):
                total[i] += v * m
                count[i] += m
        return [t / max(n, 1.0) for t, n in zip(total, count)]


class BatchedFit:
    """The optimisation loop of :class:`~dainr.recon.dainr_fit.DainrFit` over ``S`` slices at once.

    Parameters
    ----------
    fits:
        Set-up fits (not run) with the same :func:`batch_key`; they are not changed until :meth:`run` succeeds
        (then each one's network holds its output weights), so after an out-of-memory error each can still
        :meth:`~dainr.recon.dainr_fit.DainrFit.run` alone.
    """

    def __init__(self, fits: Sequence[DainrFit]):
        keys = {batch_key(f) for f in fits}
        if len(keys) != 1 or None in keys:
            raise ValueError("a batched fit needs fits of one shape and one setting that can be batched")
        self.fits = list(fits)
        first = self.fits[0]
        self.c, self.device, self.use_graph = first.c, first.device, first.use_graph
        self.samplers = [copy.deepcopy(f.sampler) for f in self.fits]
        self.per_step = first.per_step
        self.step = BatchedStep(self.fits, capturable=self.use_graph)
        self.ema = AveragedWeights(self.step.stacked, self.c.ema) if self.c.ema > 0 else None
        self.selections = ([HeldOutSelection(f.fitted, f.selection.term, f.selection.patience) for f in self.fits]
                           if first.selection is not None else None)
        self.graph: StepGraph | None = None
        self.capture_seconds = 0.0

    def _take(self) -> list[list[int]]:
        return [s.take(self.per_step) for s in self.samplers]

    def _output_weights(self) -> contextlib.AbstractContextManager:
        return self.ema.applied() if self.ema is not None else contextlib.nullcontext()

    def _slice(self, tensors: Sequence[torch.Tensor], s: int) -> list[torch.Tensor]:
        return [t[s].detach().clone() for t in tensors]

    def run(self) -> list[FitResult]:
        """Fit every slice, load each one's output weights into its network and render its cine."""
        c, n = self.c, len(self.fits)
        losses: list[list[float]] = [[] for _ in range(n)]
        active, iterations = [True] * n, [c.steps] * n
        frozen: list[list[torch.Tensor] | None] = [None] * n  # a stopped slice's output without a selected best
        t_fit = time.perf_counter()
        step = 0
        while step < c.steps and any(active):
            frames = self._take()
            self.step.set_lr(c.lr * lr_factor(c, step))
            if self.use_graph and self.graph is None:
                step += self._capture()
            if self.graph is not None:
                self.graph.run(frames)
            else:
                self.step(torch.tensor(frames, device=self.device))
            step += 1
            if self.ema is not None:
                self.ema.update()
            if step % c.log_every == 0 or step == c.steps:
                values = self.step.losses.detach().tolist()
                for s, f in enumerate(self.fits):
                    if active[s]:
                        losses[s].append(values[s])
                        if f.progress is not None:
                            f.progress(step, c.steps, f"loss {values[s]:.3e}")
            if self.selections is not None and (step % c.validate_every == 0 or step == c.steps):
                with self._output_weights():  # validate (and keep) what would be output
                    values = self.step.held_out(self.fits[0].fitted.train_frames)
                    for s, sel in enumerate(self.selections):
                        if not active[s]:
                            continue
                        sel.record(step, values[s], [p[s] for p in self.step.stacked])
                        if sel.stop:
                            active[s], iterations[s] = False, step
                            if sel.best is None:
                                frozen[s] = self._slice(self.step.stacked, s)
        for s in range(n):
            if active[s]:
                iterations[s] = step
        seconds = time.perf_counter() - t_fit
        return [self._result(s, iterations[s], losses[s], frozen[s], seconds) for s in range(n)]

    @torch.no_grad()
    def _result(self, s: int, iterations: int, losses: list[float], frozen: list[torch.Tensor] | None,
                seconds: float) -> FitResult:
        fit = self.fits[s]
        sel = None if self.selections is None else self.selections[s]
        best = sel.best if sel is not None else None
        if best is not None:
            final = best
        elif frozen is not None:
            final = frozen
        else:
            final = self._slice(self.ema.avg if self.ema is not None else list(self.step.stacked), s)
        for e, p in zip(final, fit.fitted.model.parameters()):
            p.copy_(e)
        return FitResult(images=fit.fitted.render(), iterations=iterations, loss=losses,
                         validation=[] if sel is None else list(sel.history),
                         selected_step=None if best is None else sel.best_step, fitted=fit.fitted, seconds=seconds,
                         cuda_graph=self.graph is not None, setup_seconds=fit.setup_seconds,
                         capture_seconds=self.capture_seconds, acceleration=fit.acceleration)

    def _capture(self) -> int:
        """Capture the batched step in a CUDA graph (or fall back to eager steps); returns the warm-up steps run."""
        t0 = time.perf_counter()
        warm = [self._take() for _ in range(2)]
        self.graph = capture_step(self.step, (len(self.fits), self.per_step), self.device, warm, "the batched step")
        self.use_graph = self.graph is not None
        self.capture_seconds = time.perf_counter() - t0
        return len(warm)


def fit_batch(fits: Sequence[DainrFit]) -> tuple[list[FitResult], list[int]]:
    """Run set-up fits: those with the same :func:`batch_key` together in one :class:`BatchedFit` (in their order),
    the others alone; after a CUDA out-of-memory error in a batched fit, its slices one at a time.

    Returns
    -------
    The results in the order of ``fits``, and for each the number of slices it was fitted with (1: alone).
    """
    groups: dict[tuple, list[int]] = {}
    alone: list[int] = []
    for i, f in enumerate(fits):
        key = batch_key(f)
        (alone.append(i) if key is None else groups.setdefault(key, []).append(i))
    results: dict[int, FitResult] = {}
    sizes = [1] * len(fits)
    for idx in groups.values():
        if len(idx) == 1:
            alone.extend(idx)
            continue
        try:
            results.update(zip(idx, BatchedFit([fits[i] for i in idx]).run()))
            for i in idx:
                sizes[i] = len(idx)
            continue
        except torch.cuda.OutOfMemoryError:
            pass
        empty_cache()  # out of the handler: the batch's tensors (held by the traceback there) are free now
        log.warning("GPU out of memory fitting %d slices in one batch; fitting them one at a time", len(idx))
        alone.extend(idx)
    for i in sorted(alone):
        results[i] = fits[i].run()
    return [results[i] for i in range(len(fits))], sizes
