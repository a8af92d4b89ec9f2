"""A fingerprint of every case's k-space in a ``quality.py cases`` folder (its norm and 64 samples at a fixed
stride), as JSON on stdout; with ``--check FILE`` exit 1 when any case differs from FILE by more than float rounding
(relative 1e-4 of max |k|). Cases made on another machine must be the same data (e.g. the GPU's cases and the CPU's
on which BART ran), but a different CPU or thread count changes the last bits of the simulated NUFFT, so the check
is a tolerance, not a hash; different noise or a different phantom moves the samples by far more.

    python benchmarks/kspace_fingerprint.py CASES [--check benchmarks/cases_kspace_fingerprint.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dainr.mrd import read_raw  # noqa: E402

SAMPLES = 64
TOLERANCE = 1e-4  # of max |k|


def fingerprint(kspace: np.ndarray) -> dict:
    flat = kspace.ravel()
    idx = np.linspace(0, flat.size - 1, SAMPLES).astype(np.int64)
    return {"shape": list(kspace.shape), "max": float(np.abs(flat).max()), "norm": float(np.linalg.norm(flat)),
            "samples": [[float(v.real), float(v.imag)] for v in flat[idx]]}


def deviation(a: dict, b: dict) -> float:
    """Largest difference of the samples (of max |k|) and of the norms (relative); inf for another shape."""
    if a["shape"] != b["shape"]:
        return float("inf")
    sa, sb = np.asarray(a["samples"]), np.asarray(b["samples"])
    return max(float(np.abs(sa - sb).max()) / max(a["max"], 1e-30), abs(a["norm"] - b["norm"]) / max(a["norm"], 1e-30))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", type=Path)
    p.add_argument("--check", type=Path)
    a = p.parse_args()
    out = {c["name"]: fingerprint(read_raw(a.cases / c["raw"]).slices[0].kspace)
           for c in json.loads((a.cases / "cases.json").read_text())}
    print(json.dumps(out))
    if a.check:
        ref = json.loads(a.check.read_text())
        dev = {k: deviation(ref[k], v) if k in ref else float("inf") for k, v in out.items()}
        print(f"largest k-space deviation from {a.check}: {max(dev.values()):.2e} of max |k|", file=sys.stderr)
        bad = sorted(k for k, d in dev.items() if d > TOLERANCE)
        if bad:
            print(f"k-space differs from {a.check} beyond float rounding in: {', '.join(bad)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
