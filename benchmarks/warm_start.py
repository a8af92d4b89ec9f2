"""Warm start across the slices of a stack (issue 18): each slice's networks start from the previous slice's fit.

    python benchmarks/warm_start.py [--slices 4 --matrix 64 --frames 12 --preset cpu --device cpu]
                                    [--stack same|simulated] [--json out.json]

Every slice is fitted twice, cold (the seeded initialisation, as ``dainr recon``) and warm (``dainr recon
--warm-start``: from the previous slice's warm fit; slice 0 is the same in both), with the preset's self-supervised
validation (held-out spokes; the config must have ``dainr.validation_fraction > 0``). Per stack it reports

* **steps to the same held-out loss**: for each slice after the first, the cold fit's lowest held-out loss is the
  target; the cold fit needs the step where it reached it, the warm fit the first validation step at or below it
  (or all its steps, marked, when it never gets there); summed over the slices;
* the steps actually run (patience stops a fit whose held-out loss no longer improves);
* PSNR against the truth (mean over the slices; never used to choose anything) and wall time per stack.

Stacks: ``same`` (default) repeats one phantom anatomy on every slice, each with its own golden-angle spokes (the
global counter runs on) and noise, like neighbouring slices of one heart; ``simulated`` is ``dainr simulate
--slices N``, a different phantom anatomy per slice (the unfavourable case).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dainr.config import load_config  # noqa: E402
from dainr.metrics import quality  # noqa: E402
from dainr.phantom import cardiac_phantom  # noqa: E402
from dainr.physics import MultiCoilNufft  # noqa: E402
from dainr.recon import reconstruct  # noqa: E402
from dainr.recon.model_file import FittedStack  # noqa: E402
from dainr.simulate import simulate  # noqa: E402


def stack(kind: str, slices: int, matrix: int, frames: int, coils: int, spokes: int, snr: float, seed: int):
    """``(cines, truths)`` of a stack (module docstring)."""
    ser = simulate("phantom", matrix=matrix, frames=frames, coils=coils, spokes=spokes, snr=snr, seed=seed,
                   slices=slices)
    if kind == "simulated":
        return ser.slices, list(ser.truth)
    ph = cardiac_phantom(matrix=matrix, frames=frames, coils=coils, seed=seed)
    cines, truths = [], []
    for s, cine in enumerate(ser.slices):
        own = cardiac_phantom(matrix=matrix, frames=frames, coils=coils, seed=seed + 1000 * s)
        with torch.no_grad():
            noise = cine.kspace - MultiCoilNufft(torch.from_numpy(cine.traj), torch.from_numpy(own.coil_maps))(
                torch.from_numpy(own.images)).numpy()
            clean = MultiCoilNufft(torch.from_numpy(cine.traj), torch.from_numpy(ph.coil_maps))(
                torch.from_numpy(ph.images)).numpy()
        cines.append(dataclasses.replace(cine, kspace=(clean + noise).astype(np.complex64)))
        truths.append(ph.images)
    return cines, truths


def steps_to_reach(history: list[tuple[int, float]], target: float) -> tuple[int, bool]:
    """The first validation step whose held-out loss is at or below ``target`` (and True), or the last step run
    (and False) when none is."""
    for step, loss in history:
        if loss <= target:
            return step, True
    return (history[-1][0] if history else 0), False


def run_stack(cines, truths, cfg, warm: bool) -> list[dict]:
    models = FittedStack(warm_start=warm)
    rows = []
    for cine, truth in zip(cines, truths):
        t0 = time.perf_counter()
        res = reconstruct(cine, cfg, keep_model=warm, init_state=models.init_state())
        seconds = time.perf_counter() - t0
        if warm:
            models.add(res, cfg, cine, 1)
        rows.append({"slice": cine.slice_index, "validation": res.validation, "steps_run": res.iterations,
                     "psnr": quality(res.images, truth).psnr, "seconds": seconds})
    return rows


def compare(cold: list[dict], warm: list[dict]) -> dict:
    """Per-stack figures of a cold and a warm pass (module docstring)."""
    cold_steps = warm_steps = 0
    reached = True
    for c, w in zip(cold[1:], warm[1:]):
        target = min(v for _, v in c["validation"])
        cold_steps += steps_to_reach(c["validation"], target)[0]
        step, ok = steps_to_reach(w["validation"], target)
        warm_steps += step
        reached &= ok
    return {"steps_to_cold_best_cold": cold_steps, "steps_to_cold_best_warm": warm_steps,
            "warm_reached_every_target": reached,
            "steps_run_cold": sum(r["steps_run"] for r in cold), "steps_run_warm": sum(r["steps_run"] for r in warm),
            "psnr_cold": float(np.mean([r["psnr"] for r in cold])),
            "psnr_warm": float(np.mean([r["psnr"] for r in warm])),
            "seconds_cold": sum(r["seconds"] for r in cold), "seconds_warm": sum(r["seconds"] for r in warm)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", choices=("same", "simulated"), default="same")
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--matrix", type=int, default=64)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--spokes", type=int, default=13)
    p.add_argument("--snr", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--json", type=Path, help="write the numbers here")
    args = p.parse_args()
    cfg = load_config(args.preset, overrides=[f"device={args.device}", *args.set])
    if cfg.dainr.validation_fraction <= 0:
        raise SystemExit("warm_start.py: the config needs dainr.validation_fraction > 0 (held-out spokes)")
    machine = f"{platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, " + (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} CPU threads")
    print(f"# {' '.join(sys.argv)}\n# {machine}")
    cines, truths = stack(args.stack, args.slices, args.matrix, args.frames, args.coils, args.spokes, args.snr,
                          args.seed)
    reconstruct(cines[0], load_config(args.preset, overrides=[f"device={args.device}", *args.set,
                                                              "dainr.steps=2"]))  # untimed: process start-up
    cold = run_stack(cines, truths, cfg, warm=False)
    warm = run_stack(cines, truths, cfg, warm=True)
    for name, rows in (("cold", cold), ("warm", warm)):
        for r in rows:
            best = min(r["validation"], key=lambda sv: sv[1])
            print(f"{name} slice {r['slice']}: {r['steps_run']} steps, best held-out {best[1]:.4g} at step "
                  f"{best[0]}, PSNR {r['psnr']:.2f} dB, {r['seconds']:.1f} s")
    figures = compare(cold, warm)
    print("stack: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": machine, "stack": figures,
                                         "cold": cold, "warm": warm}, indent=1))


if __name__ == "__main__":
    main()
