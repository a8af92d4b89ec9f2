"""Quality benchmark: adjoint, CG-SENSE, BART pics (TV + wavelets) and DA-INR presets on simulated radial cines.

Steps (each a sub-command, so that the GPU part and the CPU part (BART) can run on different machines):

    python benchmarks/quality.py cases  --out benchmarks/out/cases            # dainr simulate (ACDC + phantom)
    python benchmarks/quality.py run    --cases benchmarks/out/cases --methods adjoint,cgsense,dainr:fast \
                                        --device cuda --json benchmarks/out/gpu.json [--monitor 50]
    python benchmarks/quality.py bart   --cases benchmarks/out/cases --json benchmarks/out/bart.json  # CPU
    python benchmarks/quality.py table  benchmarks/out/*.json                  # markdown table

Metrics: PSNR/SSIM on per-frame max-normalised magnitude at the final iteration (``dainr.metrics``). ``--monitor N``
records DA-INR's PSNR against the truth every N steps as a diagnostic curve only (never used to pick an output).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dainr.cli import main as dainr_main  # noqa: E402
from dainr.config import DEFAULT_PRESET, load_config  # noqa: E402
from dainr.metrics import quality  # noqa: E402
from dainr.mrd import read_raw  # noqa: E402

RATES = (21, 13, 8, 5)


def case_list(cases_dir: Path) -> list[dict]:
    return json.loads((cases_dir / "cases.json").read_text())


def make_cases(out: Path, snrs: list[float], matrix: int, frames: int, coils: int, phantom: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for snr in snrs:
        for spokes in RATES:
            for source, seed, role in (("acdc", 0, "test"), ("phantom", 11, "tune")) + \
                                      ((("phantom", 0, "test"),) if phantom else ()):
                name = f"{source}_s{spokes}_snr{snr:g}_seed{seed}"
                # The truth depends only on the source and seed: one file for all rates keeps the folder small.
                raw, truth = out / f"{name}.h5", out / f"{source}_seed{seed}_f{frames}_truth.npy"
                f = frames if source == "acdc" else max(frames // 2, 8)
                rc = dainr_main(["simulate", "--source", source, "--matrix", str(matrix), "--frames", str(f),
                                 "--coils", str(coils), "--spokes", str(spokes), "--snr", str(snr), "--seed",
                                 str(seed), "-o", str(raw), "--truth", str(truth), "-q"])
                if rc:
                    raise SystemExit(rc)
                cases.append({"name": name, "source": source, "spokes": spokes, "snr": snr, "role": role,
                              "raw": raw.name, "truth": truth.name})
    (out / "cases.json").write_text(json.dumps(cases, indent=1))


def name_filter(patterns: str):
    """A case filter from comma-separated fnmatch patterns on the case name (None = every case)."""
    pats = [x for x in patterns.split(",") if x]
    return (lambda case: any(fnmatch.fnmatch(case["name"], x) for x in pats)) if pats else None


def method_config(method: str, device: str, overrides: list[str]):
    """The config of ``METHOD[:PRESET]`` (PRESET defaults to ``DEFAULT_PRESET``) on ``device`` with ``overrides``."""
    name, _, preset = method.partition(":")
    return load_config(preset or DEFAULT_PRESET, overrides=[f"method={name}", f"device={device}", *overrides])


def run_methods(cases_dir: Path, methods: list[str], device: str, monitor: int, roles: set[str],
                overrides: list[str], save=None, only=None, warmup: bool = False) -> list[dict]:
    """Run every method on every selected case; ``warmup`` first runs the first DA-INR method once on the first case,
    untimed, so that the process's CUDA start-up does not land in the first row's wall time."""
    from dainr.recon import reconstruct

    warm = next((m for m in methods if m.startswith("dainr")), None) if warmup else None
    rows = []
    for case in case_list(cases_dir):
        if case["role"] not in roles or (only is not None and not only(case)):
            continue
        cine = read_raw(cases_dir / case["raw"]).slices[0]
        truth = np.load(cases_dir / case["truth"])
        if warm is not None:
            reconstruct(cine, method_config(warm, device, overrides))
            warm = None
        for m in methods:
            cfg = method_config(m, device, overrides)
            curve: list[tuple[int, float]] = []
            spent = [0.0]  # seconds inside the monitor (metrics on the CPU), not part of the reconstruction

            def mon(step: int, imgs: np.ndarray) -> None:
                t = time.perf_counter()
                curve.append((step, round(quality(imgs, truth).psnr, 3)))
                spent[0] += time.perf_counter() - t

            t0 = time.perf_counter()
            res = reconstruct(cine, cfg, monitor=mon if monitor else None, monitor_every=monitor)
            wall = time.perf_counter() - t0 - spent[0]
            q = quality(res.images, truth)
            row = {"case": case["name"], "source": case["source"], "spokes": case["spokes"], "snr": case["snr"],
                   "method": m, "psnr": round(q.psnr, 3), "ssim": round(q.ssim, 4), "seconds": round(wall, 2),
                   "iterations": res.iterations, "device": res.info.get("device", device)}
            if "selected_step" in res.info:
                row["selected_step"] = res.info["selected_step"]
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


def table(files: list[Path]) -> str:
    rows = []
    for f in files:
        rows += json.loads(f.read_text())["rows"]
    methods = sorted({r["method"] for r in rows}, key=lambda m: (m != "adjoint", m != "cgsense", m))
    keys = sorted({(r["source"], r["snr"], r["spokes"]) for r in rows}, key=lambda k: (k[0], k[1], -k[2]))
    out = ["| case | spokes | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for src, snr, sp in keys:
        cells = []
        for m in methods:
            r = next((r for r in rows if (r["source"], r["snr"], r["spokes"], r["method"]) == (src, snr, sp, m)),
                     None)
            cells.append("–" if r is None else f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['seconds']:.1f}s")
        out.append(f"| {src} snr {snr:g} | {sp} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cases")
    c.add_argument("--out", type=Path, default=REPO / "benchmarks/out/cases")
    c.add_argument("--snr", type=float, action="append", help="max|k|/σ (repeatable; default 100 = 1%% noise)")
    c.add_argument("--matrix", type=int, default=128)
    c.add_argument("--frames", type=int, default=30)
    c.add_argument("--coils", type=int, default=8)
    c.add_argument("--phantom", action="store_true", help="also phantom test cases")
    r = sub.add_parser("run")
    r.add_argument("--cases", type=Path, default=REPO / "benchmarks/out/cases")
    r.add_argument("--methods", default="adjoint,cgsense,dainr:fast,dainr:paper")
    r.add_argument("--device", default="auto")
    r.add_argument("--monitor", type=int, default=0)
    r.add_argument("--roles", default="test")
    r.add_argument("--only", default="", help="comma-separated case-name patterns (fnmatch), e.g. 'phantom_s13_*'")
    r.add_argument("--set", dest="overrides", action="append", default=[])
    r.add_argument("--warmup", action="store_true", help="one untimed DA-INR run first (CUDA start-up)")
    r.add_argument("--json", type=Path, required=True)
    b = sub.add_parser("bart")
    b.add_argument("--cases", type=Path, default=REPO / "benchmarks/out/cases")
    b.add_argument("--json", type=Path, required=True)
    t = sub.add_parser("table")
    t.add_argument("files", type=Path, nargs="+")
    a = p.parse_args()
    if a.cmd == "cases":
        make_cases(a.out, a.snr or [100.0], a.matrix, a.frames, a.coils, a.phantom)
    elif a.cmd == "run":
        a.json.parent.mkdir(parents=True, exist_ok=True)

        def save(rows: list[dict]) -> None:
            a.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": machine(),
                                          "command": " ".join(sys.argv), "rows": rows}, indent=1))

        run_methods(a.cases, a.methods.split(","), a.device, a.monitor, set(a.roles.split(",")), a.overrides,
                    save, only=name_filter(a.only), warmup=a.warmup)
    elif a.cmd == "bart":
        from bart_pics import run_bart

        rows = run_bart(a.cases, case_list(a.cases))
        a.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": machine(),
                                      "command": " ".join(sys.argv), "rows": rows}, indent=1))
    else:
        print(table(a.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
