"""``reconstruct(cine, config)``: preparation, then the chosen method, for one slice."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch

from dainr.config import Config
from dainr.data import CineData, ReconResult
from dainr.errors import ConfigError
from dainr.prep import PreparedCine, prepare
from dainr.recon.baselines import adjoint_recon, cgsense_recon
from dainr.recon.budget import fit_to_device
from dainr.recon.concurrent import deterministic
from dainr.recon.dainr_fit import FitResult, fit_dainr, training_frames
from dainr.recon.device import resolve_device
from dainr.recon.operators import build_problem
from dainr.recon.rendering import RenderRequest, render_slice

log = logging.getLogger(__name__)
# cuBLAS needs this before CUDA starts to be deterministic (ignored on CPU).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


#: progress(step, total, message) callback type; front ends draw bars with it.
Progress = Callable[[int, int, str], None]


def reconstruct(cine: CineData, config: Config, progress: Progress | None = None,
                monitor: Callable[[int, np.ndarray], None] | None = None, monitor_every: int = 0,
                keep_model: bool = False, render: RenderRequest | None = None,
                init_state: dict[str, torch.Tensor] | None = None) -> ReconResult:
    """Reconstruct one slice of a radial cine.

    Parameters
    ----------
    cine:
        The slice as read from the raw data (not yet prewhitened or compressed).
    config:
        A validated :class:`~dainr.config.Config`; ``config.method`` selects ``dainr``, ``adjoint`` or ``cgsense``.
    progress:
        Optional callback ``(step, total, message)``.
    monitor, monitor_every:
        Diagnostics for benchmarks: ``monitor(step, images)`` gets the DA-INR cine (scaled like the output) every
        ``monitor_every`` steps; it never influences the result.
    keep_model:
        DA-INR only: return the fitted model in ``ReconResult.fitted`` (a
        :class:`~dainr.recon.dainr_model.FittedDainr`, which renders the slice again, e.g. at another matrix). It
        keeps the model and its features in the device's memory for as long as the result lives, so it is off by
        default.
    render:
        DA-INR only: render another frame count or matrix, and/or the motion fields, from the fitted model
        (:class:`~dainr.recon.rendering.RenderRequest`); ``images`` are then the rendered cine and ``motion``,
        ``jacobian``, ``frame_positions`` are filled in.
    init_state:
        DA-INR only: start the networks from these weights (a ``state_dict`` of a fit with the same network
        settings, e.g. the previous slice's: warm start) instead of the seeded initialisation.

    Returns
    -------
    :class:`~dainr.data.ReconResult` with ``images`` ``(frames, H, W)`` complex64 in the intensity units of the
    prewhitened (and coil-compressed) data.

    Several threads may reconstruct at once (:mod:`dainr.recon.concurrent`); each slice's images are those it gets
    alone.
    """
    with deterministic(config.deterministic):
        return _reconstruct(cine, config, progress, monitor, monitor_every, keep_model, render, init_state)


def reconstruct_batch(cines: Sequence[CineData], config: Config,
                      progress: Sequence[Progress | None] | None = None, keep_model: bool = False,
                      render: RenderRequest | None = None) -> list[ReconResult]:
    """Reconstruct several slices with one config, their DA-INR fits batched: the slices whose prepared shapes and
    fitted settings agree share one optimisation step (:mod:`dainr.recon.batched_fit`), the others run alone.

    Each slice's result is what :func:`reconstruct` gives it alone (bit for bit on the CPU, to float tolerance on a
    GPU, where batched matrix products may add in another order), except ``seconds``: the wall time of the whole
    call (every slice's images are ready only at its end); ``info["batch_slices"]`` is the number of slices its fit
    shared a step with (1: alone). The slices are prepared in parallel threads (CPU work). Other methods than
    ``dainr`` run slice after slice.

    Parameters
    ----------
    cines:
        The slices, raw.
    config:
        One validated config for all of them.
    progress:
        One optional ``(step, total, message)`` callback per slice.
    keep_model, render:
        As :func:`reconstruct`, for every slice.
    """
    progress = list(progress) if progress is not None else [None] * len(cines)
    if config.method != "dainr" or len(cines) < 2:
        return [reconstruct(c, config, p, keep_model=keep_model, render=render) for c, p in zip(cines, progress)]
    from dainr.recon.batched_fit import fit_batch
    from dainr.recon.dainr_fit import DainrFit

    with deterministic(config.deterministic):
        t0 = time.perf_counter()
        _check_request(config, render, None)
        device = resolve_device(config.device)
        with concurrent.futures.ThreadPoolExecutor(min(len(cines), os.cpu_count() or 1)) as pool:
            preps = list(pool.map(lambda c: _prepare(c, config, device), cines))
        # Every slice's memory plan against the memory free before any of them is set up, as alone.
        configs = [fit_to_device(prepared.cine, config, device) for prepared, _ in preps]
        fits = []
        for (prepared, info), slice_config, prog in zip(preps, configs, progress):
            info["frames_per_step"] = slice_config.dainr.frames_per_step
            fits.append(DainrFit(prepared, slice_config, device, prog))
        results, sizes = fit_batch(fits)
        out = []
        for cine, (prepared, info), fit, size in zip(cines, preps, results, sizes):
            info["batch_slices"] = size
            out.append(_result(cine, config, prepared, info, fit, fit.images, fit.iterations, fit.loss, keep_model,
                               render, t0))
        return out


def _check_request(config: Config, render: RenderRequest | None, init_state: dict | None) -> None:
    if config.method != "dainr" and ((render is not None and render.needs_model) or init_state is not None):
        raise ConfigError(f"rendered frames/matrix, motion fields and warm starts need method dainr, not "
                          f"{config.method}")


def _prepare(cine: CineData, config: Config, device: torch.device) -> tuple[PreparedCine, dict]:
    """The prepared slice and the first facts of its report (device, coils, scale, preparation time)."""
    t0 = time.perf_counter()
    # Temporal interpolation: the held-out frames' data inform nothing, the preparation included.
    seen = (training_frames(cine.n_frames, config.dainr.down_ratio)
            if config.method == "dainr" and config.dainr.down_ratio > 1 else None)
    prepared = prepare(cine, prewhiten=config.prep.prewhiten, n_virtual=config.prep.virtual_coils or None,
                       coil_maps_method=config.prep.coil_maps, frames=seen)
    info: dict = {"device": str(device), "coils": int(prepared.cine.n_coils), "scale": float(prepared.scale),
                  "prep_seconds": round(time.perf_counter() - t0, 3)}
    return prepared, info


def _reconstruct(cine: CineData, config: Config, progress: Progress | None,
                 monitor: Callable[[int, np.ndarray], None] | None, monitor_every: int,
                 keep_model: bool, render: RenderRequest | None, init_state: dict | None) -> ReconResult:
    t0 = time.perf_counter()
    _check_request(config, render, init_state)
    device = resolve_device(config.device)
    prepared, info = _prepare(cine, config, device)
    fit = None
    if config.method == "dainr":
        config = fit_to_device(prepared.cine, config, device)  # fewer frames per step, or refuse, before fitting
        info["frames_per_step"] = config.dainr.frames_per_step

        def scaled_monitor(step: int, imgs: torch.Tensor) -> None:
            monitor(step, imgs.cpu().numpy().astype(np.complex64) * np.float32(prepared.scale))

        fit = fit_dainr(prepared, config, device, progress, scaled_monitor if monitor is not None else None,
                        monitor_every, init_state=init_state)
        images, iterations, loss = fit.images, fit.iterations, fit.loss
    else:
        problem = build_problem(prepared.cine, prepared.coil_maps, device)
        if config.method == "adjoint":
            images, iterations, loss = adjoint_recon(problem), 0, []
        else:
            total = config.cgsense.iterations
            cb = (lambda i, r: progress(i, total, f"residual {r:.2e}")) if progress else None
            images, iterations, loss = cgsense_recon(problem, config.cgsense, cb)
    return _result(cine, config, prepared, info, fit, images, iterations, loss, keep_model, render, t0)


def _result(cine: CineData, config: Config, prepared: PreparedCine, info: dict, fit: FitResult | None,
            images: torch.Tensor, iterations: int, loss: list, keep_model: bool, render: RenderRequest | None,
            t0: float) -> ReconResult:
    """The slice's :class:`ReconResult` from its images on the device (and its DA-INR fit, rendered again when
    ``render`` asks)."""
    if fit is not None:
        info.update(fit.info)
    out = images.detach().cpu().numpy().astype(np.complex64) * np.float32(prepared.scale)
    rendered = None
    if fit is not None and render is not None and render.needs_model:
        rendered = render_slice(fit.fitted, render, cine.geometry.fov_mm[:2], images=images)
        out = rendered.images
    seconds = time.perf_counter() - t0
    log.info("slice %d: %s on %s, %d iterations, %.2f s", cine.slice_index, config.method, info["device"],
             iterations, seconds)
    return ReconResult(images=out, method=config.method, seconds=seconds, iterations=iterations,
                       loss=[float(v) for v in loss], info=info,
                       validation=[] if fit is None else list(fit.validation),
                       selected_step=None if fit is None else fit.selected_step,
                       fitted=fit.fitted if fit is not None and keep_model else None,
                       motion=None if rendered is None else rendered.motion,
                       jacobian=None if rendered is None else rendered.jacobian,
                       frame_positions=None if rendered is None or not render.frames else rendered.positions)
