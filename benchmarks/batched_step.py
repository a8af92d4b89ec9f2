"""One batched DA-INR step over S slices against one slice's step (issue 16 goal 1; :mod:`dainr.recon.batched_fit`).

    python benchmarks/batched_step.py --out /tmp/bstep [--device cuda] [--sizes 1,4,6,12] [--steps 100]

In one process, on the issue's exam (128², 30 frames, 8 coils, 13 spokes, ``fast``; ``--matrix`` etc. shrink it):

1. every slice simulated and prepared once;
2. per S in ``--sizes``: the first S slices set up (:class:`~dainr.recon.dainr_fit.DainrFit`), their step captured
   (S = 1: the single-slice :class:`~dainr.recon.dainr_step.StepGraph`; S > 1: the batched step) and timed over
   ``--steps`` replays (ms per step, ms per slice-step), with the peak device memory from the set-up on; with
   ``--eager`` the same without a CUDA graph;
3. the whole fit (``reconstruct`` alone, then ``reconstruct_batch`` of the same S slices): seconds, each slice's
   PSNR against the truth and its difference to the slice alone, the largest pixel difference (relative to the
   slice's maximum).

Writes ``batched_step.json`` in ``--out`` and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402

from dainr.config import load_config  # noqa: E402
from dainr.metrics import quality  # noqa: E402
from dainr.prep import prepare  # noqa: E402
from dainr.recon import reconstruct, reconstruct_batch  # noqa: E402
from dainr.recon.batched_fit import BatchedFit  # noqa: E402
from dainr.recon.concurrent import deterministic  # noqa: E402
from dainr.recon.dainr_fit import DainrFit  # noqa: E402
from dainr.recon.dainr_step import StepGraph  # noqa: E402
from dainr.simulate import simulate  # noqa: E402
from benchcases import add_size_arguments  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_timing(prepared: list, config, device: torch.device, steps: int, graph: bool) -> dict:
    """Set up the slices, capture (or not) their step, time ``steps`` steps; ms per step and peak memory."""
    cfg = dataclasses.replace(config, dainr=dataclasses.replace(config.dainr, cuda_graph=graph))
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    fits = [DainrFit(p, cfg, device) for p in prepared]
    sync(device)
    setup = time.perf_counter() - t0
    use_graph = fits[0].use_graph
    if len(fits) == 1:
        fit = fits[0]
        runner, take = fit.step, (lambda: fit.sampler.take(fit.per_step))
        shape: int | tuple = fit.per_step
    else:
        batch = BatchedFit(fits)
        runner, take = batch.step, batch._take
        shape = (len(fits), batch.per_step)
    t0 = time.perf_counter()
    if use_graph:
        g = StepGraph(runner, shape, device, warmup=[take() for _ in range(2)])
        run = g.run
    else:
        def run(frames):
            return runner(torch.tensor(frames, device=device))
    run(take())
    sync(device)
    capture = time.perf_counter() - t0
    frames = [take() for _ in range(steps)]
    t0 = time.perf_counter()
    for f in frames:
        run(f)
    sync(device)
    ms = (time.perf_counter() - t0) / steps * 1e3
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"slices": len(fits), "cuda_graph": use_graph, "ms_per_step": round(ms, 3),
            "ms_per_slice_step": round(ms / len(fits), 3), "setup_seconds": round(setup, 3),
            "capture_seconds": round(capture, 3), "peak_gib": None if peak is None else round(peak, 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--preset", default="fast")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--sizes", default="1,4,6,12", help="slices per step to time (1 = one slice's own step)")
    p.add_argument("--steps", type=int, default=100, help="timed steps per size")
    p.add_argument("--eager", action="store_true", help="also time the steps without a CUDA graph")
    p.add_argument("--no-fits", action="store_true", help="skip the whole-fit comparison (step 3)")
    add_size_arguments(p)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(a.device)
    sizes = [int(s) for s in a.sizes.split(",")]
    config = load_config(a.preset, overrides=[f"device={a.device}", *a.overrides])
    series = simulate("phantom", matrix=a.matrix, frames=a.frames, coils=a.coils, spokes=a.spokes,
                      slices=max(sizes), seed=0)
    cines, truths = series.slices, series.truth
    result: dict = {"command": " ".join(sys.argv), "preset": a.preset, "overrides": a.overrides,
                    "case": {k: getattr(a, k) for k in ("matrix", "frames", "coils", "spokes")},
                    "machine": (torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
                    + f", torch {torch.__version__}"}
    t0 = time.perf_counter()
    prepared = [prepare(c, prewhiten=config.prep.prewhiten) for c in cines]
    result["prepare_seconds_per_slice"] = round((time.perf_counter() - t0) / len(cines), 3)

    with deterministic(config.deterministic):
        # Warm-up (CUDA kernels, cuFFT plans, the first capture), not reported.
        step_timing(prepared[:1], config, device, 3, graph=True)
        timings = []
        for graph in ([True, False] if a.eager else [True]):
            for s in sizes:
                row = step_timing(prepared[:s], config, device, a.steps, graph)
                timings.append(row)
                print(f"S={s:>2} graph={row['cuda_graph']!s:>5}: {row['ms_per_step']:8.2f} ms/step "
                      f"({row['ms_per_slice_step']:.2f} ms/slice-step), set-up {row['setup_seconds']:.2f} s, "
                      f"capture {row['capture_seconds']:.2f} s, peak {row['peak_gib']} GiB", flush=True)
        result["steps"] = timings

    if not a.no_fits:
        fits = []
        alone: dict[int, np.ndarray] = {}
        t0 = time.perf_counter()
        for i in range(max(sizes)):
            alone[i] = reconstruct(cines[i], config).images
        alone_seconds = time.perf_counter() - t0
        psnr_alone = {i: quality(alone[i], truths[i]).psnr for i in alone}
        for s in (s for s in sizes if s > 1):
            t0 = time.perf_counter()
            out = reconstruct_batch(cines[:s], config)
            seconds = time.perf_counter() - t0
            rows = []
            for i, r in enumerate(out):
                q = quality(r.images, truths[i]).psnr
                rel = float(np.abs(r.images - alone[i]).max() / np.abs(alone[i]).max())
                rows.append({"slice": i, "psnr": round(q, 3), "psnr_alone": round(psnr_alone[i], 3),
                             "psnr_delta": round(q - psnr_alone[i], 3), "max_rel_pixel_diff": rel,
                             "iterations": r.iterations, "batch_slices": r.info.get("batch_slices")})
            worst = max(abs(r["psnr_delta"]) for r in rows)
            fits.append({"slices": s, "seconds": round(seconds, 3),
                         "alone_seconds_same_slices": round(alone_seconds * s / max(sizes), 3),
                         "max_abs_psnr_delta": worst, "slices_detail": rows})
            print(f"fit S={s:>2}: {seconds:6.2f} s batched vs {alone_seconds * s / max(sizes):6.2f} s alone; "
                  f"max |PSNR delta| {worst:.3f} dB, max rel pixel diff "
                  f"{max(r['max_rel_pixel_diff'] for r in rows):.2e}", flush=True)
        result["fits"] = fits
        result["alone_seconds"] = round(alone_seconds, 3)
    (a.out / "batched_step.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {a.out / 'batched_step.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
