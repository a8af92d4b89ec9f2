"""SHA-1 (12 hex digits) of every case's k-space in a ``quality.py cases`` folder, as JSON on stdout; with
``--check FILE`` exit 1 when any case differs from FILE (cases made on another machine must be the same data, e.g.
the GPU's cases and the CPU's on which BART ran).

    python benchmarks/kspace_hash.py CASES [--check benchmarks/cases_kspace_sha1.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dainr.mrd import read_raw  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", type=Path)
    p.add_argument("--check", type=Path)
    a = p.parse_args()
    out = {}
    for c in json.loads((a.cases / "cases.json").read_text()):
        out[c["name"]] = hashlib.sha1(read_raw(a.cases / c["raw"]).slices[0].kspace.tobytes()).hexdigest()[:12]
    print(json.dumps(out, indent=1))
    if a.check:
        ref = json.loads(a.check.read_text())
        bad = sorted(k for k in out if ref.get(k) != out[k])
        if bad:
            print(f"k-space differs from {a.check} in: {', '.join(bad)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
