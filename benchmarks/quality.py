"""Quality benchmark: adjoint, CG-SENSE, BART pics (TV + wavelets) and DA-INR presets on simulated radial cines.

Steps (each a sub-command, so that the GPU part and the CPU part (BART) can run on different machines):

    python benchmarks/quality.py cases  --out benchmarks/out/cases22 --snr 100 --snr 33   # dainr simulate
    python benchmarks/quality.py run    --cases benchmarks/out/cases22 --methods dainr:fast --seeds 0,1,2,3 \
                                        --device cuda --json benchmarks/out/gpu.json [--monitor 50]
    python benchmarks/quality.py bart   --cases benchmarks/out/cases22 --json benchmarks/out/bart.json  # CPU
    python benchmarks/quality.py table  benchmarks/out/gpu.json benchmarks/out/bart.json    # markdown table

Cases (``benchcases.py``): groups of anatomies; by default A = ACDC + phantom, B = rat + moving CMRxRecon frame.
BART's weights are chosen per cell against the truth (``bart-oracle``) and on each group for the other group's cases
(``bart-tuned``: two-fold cross-validation, both directions). DA-INR presets are never tuned per case; ``--seeds``
runs each with ``seed`` and ``dainr.features.seed`` set to every listed value, and the table gives the mean over
seeds with the spread (min–max).

Metrics: PSNR/SSIM on per-frame max-normalised magnitude at the final iteration, every method's output masked by the
same data-derived support (``benchcases.score``). ``--monitor N`` records DA-INR's PSNR against the truth every N
steps as a diagnostic curve only (never used to pick an output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchcases import CV_SOURCES, REPO, case_list, load_case, make_cases, name_filter, score  # noqa: E402
from dainr.config import DEFAULT_PRESET, load_config  # noqa: E402


def method_config(method: str, device: str, overrides: list[str], seed: int | None = None):
    """The config of a ``METHOD[:PRESET]`` spec (preset default ``DEFAULT_PRESET``) on ``device`` with ``overrides``; ``seed``
    sets both DA-INR seeds (``seed``: initialisation and frame order; ``dainr.features.seed``: the frozen features)."""
    name, _, preset = method.partition(":")
    seeds = [] if seed is None else [f"seed={seed}", f"dainr.features.seed={seed}"]
    return load_config(preset or DEFAULT_PRESET, overrides=[f"method={name}", f"device={device}", *overrides, *seeds])


def parse_seeds(text: str) -> list[int | None]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; ``""`` -> ``[None]`` (the preset's own seeds)."""
    try:
        return [int(s) for s in text.split(",") if s] or [None]
    except ValueError:
        raise SystemExit(f"--seeds takes comma-separated integers, e.g. 0,1,2,3; got {text!r}") from None


def write_json(path: Path, doc: dict) -> None:
    """Write ``doc`` atomically (a run stopped mid-write leaves the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def run_methods(cases_dir: Path, methods: list[str], device: str, monitor: int, groups: set[str] | None,
                overrides: list[str], save=None, only=None, warmup: bool = False, seeds: list[int | None] = (None,),
                budget: float = 0.0) -> list[dict]:
    """Run every method on every selected case, seed after seed (every case gets the first seed before any gets the
    second); methods other than DA-INR are deterministic and run with the first seed only. ``warmup`` first runs the
    first DA-INR method once on the first case, untimed, so that the process's CUDA start-up does not land in the
    first row's wall time. ``budget`` > 0: start no run after that many seconds (the rows so far are returned)."""
    from dainr.recon import reconstruct

    start = time.perf_counter()
    metas = case_list(cases_dir, groups, only)
    loaded: dict[str, object] = {}
    warm = next((m for m in methods if m.startswith("dainr")), None) if warmup else None
    rows = []
    for k, seed in enumerate(seeds):
        for meta in metas:
            if meta["name"] not in loaded:
                loaded[meta["name"]] = load_case(cases_dir, meta)
            case = loaded[meta["name"]]
            if warm is not None:
                reconstruct(case.cine, method_config(warm, device, overrides))
                warm = None
            for m in methods:
                if k and not m.startswith("dainr"):
                    continue
                if budget and time.perf_counter() - start > budget:
                    print(f"budget of {budget:g} s spent: stopping before {meta['name']} {m} seed {seed}", flush=True)
                    return rows
                cfg = method_config(m, device, overrides, seed if m.startswith("dainr") else None)
                curve: list[tuple[int, float]] = []
                spent = [0.0]  # seconds inside the monitor (metrics on the CPU), not part of the reconstruction

                def mon(step: int, imgs: np.ndarray) -> None:
                    t = time.perf_counter()
                    curve.append((step, round(score(imgs, case).psnr, 3)))
                    spent[0] += time.perf_counter() - t

                t0 = time.perf_counter()
                res = reconstruct(case.cine, cfg, monitor=mon if monitor else None, monitor_every=monitor)
                wall = time.perf_counter() - t0 - spent[0]
                q = score(res.images, case)
                row = {"case": meta["name"], "source": meta["source"], "spokes": meta["spokes"], "snr": meta["snr"],
                       "group": meta["group"], "method": m, "psnr": round(q.psnr, 3), "ssim": round(q.ssim, 4),
                       "seconds": round(wall, 2), "iterations": res.iterations,
                       "device": res.info.get("device", device)}
                if m.startswith("dainr"):
                    row["seed"] = cfg.seed
                    row["features_seed"] = cfg.dainr.features.seed
                if "selected_step" in res.info:
                    row["selected_step"] = res.info["selected_step"]
                if res.validation:  # held-out k-space loss at the selected step (truth-free; for choosing among fits)
                    row["heldout_loss"] = round(min(v for _, v in res.validation), 6)
                if res.loss:
                    row["final_loss"] = round(res.loss[-1], 6)
                if curve:
                    row["curve"] = curve
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
                if save is not None:
                    save(rows)
    return rows


def machine() -> dict:
    info = {"host": platform.node(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def document(rows: list[dict], **extra) -> dict:
    return {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": " ".join(sys.argv), **extra,
            "rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cases")
    c.add_argument("--out", type=Path, default=REPO / "benchmarks/out/cases22")
    c.add_argument("--snr", type=float, action="append", help="max|k|/σ (repeatable; default 100 = 1%% noise)")
    c.add_argument("--matrix", type=int, default=128)
    c.add_argument("--frames", type=int, default=30, help="frames (the phantom gets half, at least 8)")
    c.add_argument("--coils", type=int, default=8)
    c.add_argument("--sources", default=CV_SOURCES, help=f"SOURCE:SEED:GROUP,... (default {CV_SOURCES})")
    c.add_argument("--jobs", type=int, default=1, help="simulations run at a time (processes)")
    r = sub.add_parser("run")
    r.add_argument("--cases", type=Path, default=REPO / "benchmarks/out/cases22")
    r.add_argument("--methods", default="adjoint,cgsense,dainr:fast,dainr:paper")
    r.add_argument("--device", default="auto")
    r.add_argument("--monitor", type=int, default=0)
    r.add_argument("--groups", default="", help="comma-separated case groups (default: all)")
    r.add_argument("--only", default="", help="comma-separated case-name patterns (fnmatch), e.g. 'phantom_s13_*'")
    r.add_argument("--set", dest="overrides", action="append", default=[])
    r.add_argument("--seeds", default="", help="DA-INR seeds, e.g. 0,1,2,3 (default: the preset's)")
    r.add_argument("--budget", type=float, default=0, help="start no run after this many seconds")
    r.add_argument("--warmup", action="store_true", help="one untimed DA-INR run first (CUDA start-up)")
    r.add_argument("--json", type=Path, required=True)
    b = sub.add_parser("bart")
    b.add_argument("--cases", type=Path, default=REPO / "benchmarks/out/cases22")
    b.add_argument("--tune-on", default="", help="groups to tune on, each in turn (default: every group)")
    b.add_argument("--no-oracle", action="store_true", help="skip the per-case oracle search")
    b.add_argument("--only", default="", help="comma-separated case-name patterns (fnmatch)")
    b.add_argument("--cache", type=Path, help="pics results cache folder (default CASES/bart_runs)")
    b.add_argument("--jobs", type=int, default=1, help="pics runs at a time (each single-threaded: OMP_NUM_THREADS=1)")
    b.add_argument("--budget", type=float, default=0, help="start no pics run after this many seconds (resume later)")
    b.add_argument("--json", type=Path, required=True)
    bc = sub.add_parser("bart-cached", help="BART's rows from the pics cache alone (a search that ran out of time)")
    bc.add_argument("--cases", type=Path, default=REPO / "benchmarks/out/cases22")
    bc.add_argument("--cache", type=Path, help="pics results cache folder (default CASES/bart_runs)")
    bc.add_argument("--tune-on", default="", help="groups to tune on (default: every group)")
    bc.add_argument("--json", type=Path, required=True)
    t = sub.add_parser("table")
    t.add_argument("files", type=Path, nargs="+", help="JSON of `run` and `bart` (and tune.py --test)")
    t.add_argument("--main", default="dainr:fast", help="the method compared with BART (default dainr:fast)")
    a = p.parse_args()
    if a.cmd == "cases":
        make_cases(a.out, a.snr or [100.0], a.matrix, a.frames, a.coils, a.sources, a.jobs)
    elif a.cmd == "run":
        def save(rows: list[dict]) -> None:
            write_json(a.json, document(rows))

        save(run_methods(a.cases, a.methods.split(","), a.device, a.monitor, set(filter(None, a.groups.split(",")))
                         or None, a.overrides, save, only=name_filter(a.only), warmup=a.warmup,
                         seeds=parse_seeds(a.seeds), budget=a.budget))
    elif a.cmd == "bart":
        from bart_pics import run_bart

        groups = [g for g in a.tune_on.split(",") if g] or sorted({c["group"] for c in case_list(a.cases)})
        with tempfile.TemporaryDirectory() as work:
            out = run_bart(a.cases, a.cache or a.cases / "bart_runs", Path(work), groups, not a.no_oracle,
                           name_filter(a.only), jobs=a.jobs, budget=a.budget)
        write_json(a.json, document(out.pop("rows"), **out))
    elif a.cmd == "bart-cached":
        from bart_pics import cached_doc

        out = cached_doc(a.cases, a.cache or a.cases / "bart_runs", [g for g in a.tune_on.split(",") if g] or None)
        write_json(a.json, document(out.pop("rows"), **out))
    else:
        from table import cv_table

        print(cv_table([json.loads(f.read_text()) for f in a.files], a.main))
    return 0


if __name__ == "__main__":
    sys.exit(main())
