"""Is ``dainr recon`` itself repeatable on a GPU? (not a test; run by hand on a GPU machine)

Runs the CLI twice per method (in one process, in the order given) on one simulated slice and reports the largest
pixel difference between the runs; ``--deterministic`` sets ``torch.use_deterministic_algorithms(True)`` first. This separates front-end differences (gadget,
server vs CLI) from the engine's own run-to-run variation on CUDA::

    python tests/gadget/gpu_determinism.py --out determinism.json [--methods dainr] [--deterministic]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dainr.cli import main as dainr_main  # noqa: E402
from dainr.mrd import read_images  # noqa: E402


def _rel(a: list, b: list) -> float:
    return max(float(np.abs(x.data - y.data).max() / max(np.abs(y.data).max(), 1e-30)) for x, y in zip(a, b))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("/tmp/dainr_gpu_det"))
    p.add_argument("--matrix", type=int, default=128)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--methods", default="adjoint,cgsense,dainr", help="run in this order, twice each, one process")
    p.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override for every run")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    raw = args.work / "raw.h5"
    dainr_main(["simulate", "--matrix", str(args.matrix), "--frames", str(args.frames), "--coils", "8", "--spokes",
                "13", "-o", str(raw), "-q"])
    report: dict = {}

    def run(tag: str, *extra: str) -> tuple[list, float]:
        out = args.work / f"{tag}.h5"
        t0 = time.perf_counter()
        sets = [x for o in args.overrides for x in ("--set", o)]
        rc = dainr_main(["recon", str(raw), "-o", str(out), "--device", "cuda", "-q", *sets, *extra])
        if rc:
            raise RuntimeError(f"dainr recon exited {rc}; its one-line reason is in the log")
        return read_images(out)[1], time.perf_counter() - t0

    if args.deterministic:
        import torch

        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        torch.use_deterministic_algorithms(True)
        report["deterministic_algorithms"] = True
    for method in args.methods.split(","):
        try:
            a, ta = run(f"{method}_a", "--method", method)
            b, tb = run(f"{method}_b", "--method", method)
            report[method] = {"identical": all(np.array_equal(x.data, y.data) for x, y in zip(a, b)),
                              "max_rel_diff": _rel(a, b), "seconds": [ta, tb]}
        except Exception as exc:  # noqa: BLE001 - recorded; the CLI's one-line reason is in the log
            report[method] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
