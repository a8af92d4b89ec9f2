"""Tune DA-INR's temporal-TV weight on the separate tuning cases (phantom seed 11), then run the test cases with the
weight chosen per rate and noise level (the same protocol as BART's λ; the test cases never influence the choice).

    python benchmarks/tune_tv.py --cases CASES --device cuda --json out.json [--grid 0,0.003,0.01,0.03,0.1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import machine, run_methods  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cases", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--grid", default="0,0.003,0.01,0.03,0.1")
    p.add_argument("--json", type=Path, required=True)
    a = p.parse_args()
    tune: dict[tuple, list] = {}
    for lam in [float(v) for v in a.grid.split(",")]:
        for r in run_methods(a.cases, ["dainr:fast"], a.device, 0, {"tune"}, [f"dainr.tv_temporal={lam}"]):
            tune.setdefault((r["spokes"], r["snr"]), []).append((r["psnr"], lam))
    chosen = {k: max(v)[1] for k, v in tune.items()}
    print("chosen:", {f"{k[0]} spokes snr {k[1]:g}": v for k, v in chosen.items()}, flush=True)
    rows = []
    for (spokes, snr), lam in chosen.items():
        for r in run_methods(a.cases, ["dainr:fast"], a.device, 0, {"test"}, [f"dainr.tv_temporal={lam}"],
                             only=lambda c: (c["spokes"], c["snr"]) == (spokes, snr)):
            r["method"], r["tv_temporal"] = "dainr:fast+tv", lam
            rows.append(r)
    a.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": machine(),
                                  "command": " ".join(sys.argv),
                                  "tune": {f"{k[0]}/{k[1]:g}": v for k, v in tune.items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
