"""GPU speed of one DA-INR slice: time per optimisation step, whole-slice wall time and peak memory, for the
eager baseline and the optimised path, measured in the same run (ratios, not only absolute times).

    python benchmarks/speed.py --device cuda [--matrix 128 --frames 30 --spokes 13 --coils 8] [--profile]

Variants (each a list of config overrides; see --variants):
  eager-baseline  torchkbnufft table NUFFT, unfused AdamW, no CUDA graph (a plain eager PyTorch step)
  gather          precomputed-table (gather) NUFFT
  fast-nondet...   the `fast` preset with PyTorch's non-deterministic (atomic) scatter-adds
  fast            the `fast` preset as shipped (deterministic algorithms)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from dainr.config import load_config  # noqa: E402
from dainr.metrics import quality  # noqa: E402
from dainr.recon import reconstruct  # noqa: E402
from dainr.simulate import simulate  # noqa: E402
from benchcases import add_size_arguments  # noqa: E402

VARIANTS = {
    "eager-baseline": ["dainr.nufft_backend=table", "dainr.fused=false", "dainr.cuda_graph=false",
                       "dainr.grid.backend=torch", "deterministic=false"],
    "gather": ["dainr.nufft_backend=gather", "dainr.fused=false", "dainr.cuda_graph=false",
               "dainr.grid.backend=torch", "deterministic=false"],
    "fast-nondeterministic": ["deterministic=false"],
    "fast": [],
}
# Issue-7 comparison: each preset as shipped vs the eager reference implementation of the `paper` preset; the -csr
# variants run the preset on the CSR interpolation (issue 16).
PRESET_VARIANTS = {
    "paper-eager": ("paper", VARIANTS["eager-baseline"]),
    "paper-fastpath": ("paper", []),
    "paper-csr": ("paper", ["dainr.nufft_backend=csr", "deterministic=false"]),
    "fast-preset": ("fast", []),
    "fast-csr": ("fast", ["dainr.nufft_backend=csr", "deterministic=false"]),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    add_size_arguments(p)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--frames-per-step", type=int, default=4)
    p.add_argument("--variants", default="eager-baseline,gather,fast-nondeterministic,fast")
    p.add_argument("--repeat", action="store_true", help="run each variant twice and report the largest difference")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of the fast variant")
    p.add_argument("--json", type=Path)
    p.add_argument("--presets", action="store_true",
                   help="compare whole presets instead (--variants from paper-eager, paper-fastpath, paper-csr, "
                        "fast-preset, fast-csr: each with its own steps and frames per step; default the first, third "
                        "and fourth); --steps caps the eager reference, which is then extrapolated; a variant's own "
                        "settings win over --set (the eager reference stays eager)")
    a = p.parse_args()
    if a.presets:
        if a.variants == p.get_default("variants"):
            a.variants = "paper-eager,paper-fastpath,fast-preset"
        return compare_presets(a)
    series = simulate("phantom", matrix=a.matrix, frames=a.frames, coils=a.coils, spokes=a.spokes, snr=100, seed=0)
    cine, truth = series.slices[0], series.truth[0]
    rows = []
    for name in a.variants.split(","):
        cfg = load_config("fast", overrides=[f"device={a.device}", f"dainr.steps={a.steps}",
                                             f"dainr.frames_per_step={a.frames_per_step}", *VARIANTS[name],
                                             *a.overrides])
        reconstruct(cine, load_config("fast", overrides=[f"device={a.device}", "dainr.steps=3", *VARIANTS[name]]))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        res = reconstruct(cine, cfg)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        repeat_diff = None
        if a.repeat:
            again = reconstruct(cine, cfg).images
            repeat_diff = float(abs(again - res.images).max() / abs(res.images).max())
        fit = res.info.get("fit_seconds", wall)
        row = {"variant": name, "wall_s": round(wall, 3), "fit_s": round(fit, 3),
               "ms_per_step": round(1000 * fit / max(res.iterations, 1), 2), "steps": res.iterations,
               "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None,
               "psnr": round(quality(res.images, truth).psnr, 2), "cuda_graph": res.info.get("cuda_graph"),
               "repeat_max_rel_diff": repeat_diff}
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]
    for r in rows[1:]:
        print(f"{r['variant']}: {base['ms_per_step'] / r['ms_per_step']:.1f}x faster per step, "
              f"{base['wall_s'] / r['wall_s']:.1f}x faster per slice than {base['variant']}")
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        cfg = load_config("fast", overrides=[f"device={a.device}", "dainr.steps=20", "dainr.cuda_graph=false",
                                             *a.overrides])
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            reconstruct(cine, cfg)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25))
    if a.json:
        a.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(0)
                                      if torch.cuda.is_available() else "cpu", "command": " ".join(sys.argv),
                                      "rows": rows}, indent=1))
    return 0


def compare_presets(a: argparse.Namespace) -> int:
    """Wall time of whole presets on one case; the eager `paper` reference runs ``--steps`` steps when fewer than
    its 1001, and its full time is extrapolated from the measured time per step (stated in the output)."""
    series = simulate("phantom", matrix=a.matrix, frames=a.frames, coils=a.coils, spokes=a.spokes, snr=100, seed=0)
    cine, truth = series.slices[0], series.truth[0]
    cuda = torch.device(a.device).type == "cuda"
    rows = []
    for name in a.variants.split(","):
        preset, extra = PRESET_VARIANTS[name]
        base = [f"device={a.device}", *a.overrides, *extra]
        full = load_config(preset, overrides=base)
        capped = name == "paper-eager" and a.steps < full.dainr.steps
        cfg = load_config(preset, overrides=base + ([f"dainr.steps={a.steps}"] if capped else []))
        reconstruct(cine, load_config(preset, overrides=base + ["dainr.steps=3"]))
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        res = reconstruct(cine, cfg)
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        peak = round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None
        repeat_diff = None
        if a.repeat and not capped:  # deterministic algorithms: a second run must give the same pixels
            again = reconstruct(cine, cfg).images
            repeat_diff = float(abs(again - res.images).max() / abs(res.images).max())
        fit = res.info.get("fit_seconds", wall)
        per_step = fit / max(res.iterations, 1)
        est = wall - fit + per_step * full.dainr.steps if capped else wall
        rows.append({"variant": name, "matrix": a.matrix, "frames": a.frames, "coils": a.coils, "spokes": a.spokes,
                     "steps_run": res.iterations, "wall_s": round(wall, 3), "slice_s": round(est, 3),
                     "extrapolated": capped, "ms_per_step": round(1000 * per_step, 2),
                     "peak_gib": peak, "psnr": None if capped else round(quality(res.images, truth).psnr, 2),
                     "nufft_backend": cfg.dainr.nufft_backend, "cuda_graph": res.info.get("cuda_graph"),
                     "repeat_max_rel_diff": repeat_diff})
        print(json.dumps(rows[-1]), flush=True)
        if cuda and cfg.dainr.cuda_graph and not res.info.get("cuda_graph"):
            # the fit falls back to eager steps when a capture fails (a warning in the log): say so where it is read
            print(f"WARNING {name}: the CUDA graph was not captured; this variant ran eagerly", flush=True)
    ref = rows[0]
    for r in rows[1:]:
        print(f"{r['variant']}: {ref['slice_s'] / r['slice_s']:.1f}x faster per slice than {ref['variant']}")
    if a.json:
        a.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"),
                                      "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                                      "command": " ".join(sys.argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
