"""Choose one DA-INR setting on the tuning cases only, then run the test cases with it: the same protocol as BART's
λ, except that the DA-INR choice is one setting for all rates and noise levels (a preset), where BART gets its λ per
rate and noise level. The test cases never influence the choice.

    python benchmarks/tune.py --cases CASES --tune-on B --test-on A --seeds 0,1,2,3 --device cuda --json out.json \
        --variant base= --variant tv=dainr.tv_temporal=0.1,dainr.tv_spatial=0.03 [--test]

Groups: ``--tune-on`` and ``--test-on`` name case groups of CASES/cases.json (the issue-22 set: A = ACDC + phantom,
B = rat + CMRxRecon; run both directions for cross-validation; the issue-8 set: ``tune`` and ``test``, the defaults).
Each ``--variant NAME=KEY=VALUE,KEY=VALUE`` is a set of overrides on top of ``--preset`` (default ``fast``). The
criterion is the mean PSNR over all tuning cases and all ``--seeds`` (``seed`` and ``dainr.features.seed`` both set
to each); ties go to the earlier variant. With ``--max-seconds S`` only variants whose mean wall time per tuning case
is at most S compete (the speed goal as a constraint; use ``--warmup`` so the first variant's time carries no CUDA
start-up).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchcases import name_filter  # noqa: E402
from quality import machine, parse_seeds, run_methods, write_json  # noqa: E402


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition("=")
    return name, [s for s in sets.split(",") if s]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--preset", default="fast")
    p.add_argument("--variant", action="append", required=True, help="NAME=KEY=VALUE,KEY=VALUE (repeatable)")
    p.add_argument("--tune-on", default="tune", help="case group(s) the choice is made on (comma-separated)")
    p.add_argument("--test-on", default="test", help="case group(s) --test runs the chosen variant on")
    p.add_argument("--seeds", default="", help="DA-INR seeds, e.g. 0,1,2,3 (default: the preset's)")
    p.add_argument("--only", default="", help="comma-separated case-name patterns (fnmatch) to restrict both sets")
    p.add_argument("--monitor", type=int, default=0, help="record the PSNR-vs-step curve every N steps (diagnostic)")
    p.add_argument("--max-seconds", type=float, default=0, help="only variants with mean seconds <= this compete")
    p.add_argument("--warmup", action="store_true", help="one untimed DA-INR run first (CUDA start-up)")
    p.add_argument("--test", action="store_true", help="then run the test cases with the chosen variant")
    p.add_argument("--json", type=Path, required=True)
    a = p.parse_args()
    variants = dict(parse_variant(v) for v in a.variant)
    only = name_filter(a.only)
    seeds = parse_seeds(a.seeds)
    tune_on, test_on = set(a.tune_on.split(",")), set(a.test_on.split(","))
    doc = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": " ".join(sys.argv),
           "variants": variants, "seeds": seeds, "tune": {}, "rows": []}

    def save() -> None:
        write_json(a.json, doc)

    for i, (name, sets) in enumerate(variants.items()):
        def partial(rows: list[dict], name: str = name) -> None:  # keep finished runs if the session stops
            doc["tune"][name] = {"rows": rows}
            save()

        rows = run_methods(a.cases, [f"dainr:{a.preset}"], a.device, a.monitor, tune_on, sets, save=partial,
                           only=only, warmup=a.warmup and i == 0, seeds=seeds)
        per_case: dict[str, list[float]] = {}
        for r in rows:
            per_case.setdefault(r["case"], []).append(r["psnr"])
        doc["tune"][name] = {"mean_psnr": round(sum(r["psnr"] for r in rows) / len(rows), 3),
                             "mean_ssim": round(sum(r["ssim"] for r in rows) / len(rows), 4),
                             "mean_seconds": round(sum(r["seconds"] for r in rows) / len(rows), 2),
                             "seed_spread_max": round(max(max(v) - min(v) for v in per_case.values()), 3),
                             "rows": rows}
        print(f"variant {name}: {doc['tune'][name]['mean_psnr']} dB mean over {len(per_case)} tuning cases × "
              f"{len(seeds)} seed(s), largest seed spread {doc['tune'][name]['seed_spread_max']} dB", flush=True)
        save()
    fast_enough = [n for n in variants if not a.max_seconds or doc["tune"][n]["mean_seconds"] <= a.max_seconds]
    if not fast_enough:
        print(f"no variant has a mean time <= {a.max_seconds} s", file=sys.stderr)
        return 1
    chosen = max(fast_enough, key=lambda n: (doc["tune"][n]["mean_psnr"], -list(variants).index(n)))
    doc["chosen"] = chosen
    print(f"chosen: {chosen} {variants[chosen]}", flush=True)
    if a.test:
        def tested(rows: list[dict]) -> None:
            for r in rows:
                r["method"] = f"dainr:{a.preset}+{chosen}"
            doc["rows"] = rows
            save()

        run_methods(a.cases, [f"dainr:{a.preset}"], a.device, a.monitor, test_on, variants[chosen], save=tested,
                    only=only, seeds=seeds)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
