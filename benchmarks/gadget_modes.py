"""Gadgetron's ``<execute>`` against ``<connect>``: what starting Python per connection costs (issue 16 goal 3).

    python benchmarks/gadget_modes.py --out /tmp/gmodes [--preset fast --device cuda] [--connections 3] [--raw PATH]

This plays Gadgetron's part (``tests/gadget/harness.py``, the stand-in the gadget tests use) for both ways a chain
reaches the gadget, ``--connections`` times one after another, each connection sending one slice's acquisitions:

* ``execute``: Gadgetron spawns ``python -m gadgetron PORT gadget.dainr_gadget recon`` for every connection (the
  interpreter, PyTorch and the CUDA context start each time); timed from the spawn;
* ``connect``: the site starts ``python -m gadget.dainr_gadget --port N`` once, as a service (passive mode; it
  listens at once and warms up: PyTorch, the engine, CUDA); the first connection is made once its log says the
  warm-up is done (``--connect-at-once``: as soon as it listens), each timed from the connect; the warm-up's seconds
  are in the summary.

Per connection: the wall time to the last image received, to the first image, and the gadget's own seconds in
``reconstruct()``; the images of every connection are compared (headers and pixels) with the first ``execute``
connection's. Writes ``gadget_modes.json`` in ``--out`` and prints a table. Without ``--raw`` the slice is made by
``dainr simulate`` (128² × 30 frames × 8 coils × 13 spokes by default). A CPU self-test::

    python benchmarks/gadget_modes.py --out /tmp/gmodes --preset cpu-test --device cpu --matrix 16 --frames 3 \\
        --coils 2 --spokes 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           PYTHONUNBUFFERED="1")

from tests.gadget.harness import FakeGadgetron, Reply, configuration_node, exchange, read_acquisitions  # noqa: E402
from benchcases import add_size_arguments  # noqa: E402

#: The gadget's log line for a finished slice (gadget/dainr_gadget.py ``_run_job``).
SENT = re.compile(r"slice (\d+): sent (\d+) images \((\w+), ([\d.]+) s\)")
#: The passive gadget's log line at the end of its warm-up (gadget/dainr_gadget.py ``_log_warm_up``).
WARM = re.compile(r"warm-up done in ([\d.]+) s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def simulate(out: Path, a: argparse.Namespace) -> Path:
    raw = out / "raw.h5"
    cmd = [sys.executable, "-m", "dainr", "simulate", "--matrix", str(a.matrix), "--frames", str(a.frames),
           "--coils", str(a.coils), "--spokes", str(a.spokes), "--seed", "0", "-o", str(raw), "-q", "--overwrite"]
    subprocess.run(cmd, check=True, cwd=REPO, env=ENV)
    return raw


def start_passive(port: int, log: Path, device: str, warm: bool) -> subprocess.Popen:
    """``python -m gadget.dainr_gadget --port PORT --device DEVICE``, returned once it listens, and with ``warm`` once
    its warm-up is done (its log says so)."""
    with open(log, "wb") as fh:
        child = subprocess.Popen([sys.executable, "-m", "gadget.dainr_gadget", "--port", str(port), "--device",
                                  device], stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=ENV)
    deadline = time.monotonic() + 120
    while b"listening on" not in log.read_bytes() or (warm and not WARM.search(log.read_text(errors="replace"))):
        if child.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the passive gadget did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    return child


def row(mode: int | str, k: int, reply: Reply, log_text: str) -> dict:
    """One connection's figures."""
    if reply.errors or not reply.images:
        sys.exit(f"{mode} connection {k}: errors {reply.errors}; gadget log:\n{log_text[-3000:]}")
    seconds = [float(m[3]) for m in SENT.findall(log_text)]
    return {"mode": mode, "connection": k, "images": len(reply.images),
            "wall_to_last_image_s": round(reply.image_times[-1] - reply.started, 3),
            "wall_to_first_image_s": round(reply.image_times[0] - reply.started, 3),
            "reconstruct_s": seconds[-1] if seconds else None}


def same(a: list, b: list) -> tuple[bool, float]:
    """(headers equal and pixels bit for bit, largest |difference| relative to the maximum)."""
    if len(a) != len(b):
        return False, float("inf")
    heads = all(bytes(x.getHead()) == bytes(y.getHead()) for x, y in zip(a, b))
    pa, pb = np.stack([x.data for x in a]), np.stack([y.data for y in b])
    return heads and bool(np.array_equal(pa, pb)), float(np.abs(pa - pb).max() / max(np.abs(pb).max(), 1e-30))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--raw", type=Path, help="a one-slice raw file (default: dainr simulate at the sizes below)")
    p.add_argument("--preset", default="fast")
    p.add_argument("--device", default="auto")
    p.add_argument("--connections", type=int, default=3)
    p.add_argument("--connect-at-once", action="store_true",
                   help="first connect as soon as the passive gadget listens, during its warm-up")
    add_size_arguments(p)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    raw = a.raw or simulate(a.out, a)
    header, acqs = read_acquisitions(raw)
    config = configuration_node(preset=a.preset, device=a.device)
    rows: list[dict] = []
    images: dict[tuple[str, int], list] = {}

    gadgetron = FakeGadgetron(a.out / "execute.log")
    try:
        for k in range(1, a.connections + 1):
            gadgetron.log_path = a.out / f"execute{k}.log"
            reply = gadgetron.run(config, header, acqs)
            rows.append(row("execute", k, reply, reply.log))
            images["execute", k] = reply.images
            print(f"execute {k}: {rows[-1]['wall_to_last_image_s']:.2f} s", flush=True)
    finally:
        gadgetron.close()

    port, log = free_port(), a.out / "connect.log"
    passive = start_passive(port, log, a.device, warm=not a.connect_at_once)
    try:
        for k in range(1, a.connections + 1):
            before = len(SENT.findall(log.read_text(errors="replace")))
            started = time.perf_counter()
            with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
                reply = exchange(sock, config, header, acqs)
            reply.started = started
            time.sleep(0.2)  # the gadget's log line for the slice
            text = log.read_text(errors="replace")
            rows.append(row("connect", k, reply, "\n".join(m.group(0) for m in list(SENT.finditer(text))[before:])))
            images["connect", k] = reply.images
            print(f"connect {k}: {rows[-1]['wall_to_last_image_s']:.2f} s", flush=True)
    finally:
        passive.terminate()
        passive.wait(30)

    reference = images["execute", 1]
    for r in rows:
        r["identical_to_execute_1"], r["max_rel_diff"] = same(images[r["mode"], r["connection"]], reference)
    by = {m: [r["wall_to_last_image_s"] for r in rows if r["mode"] == m] for m in ("execute", "connect")}
    summary = {"execute_mean_s": round(float(np.mean(by["execute"])), 3),
               "connect_after_first_mean_s": round(float(np.mean(by["connect"][1:] or by["connect"])), 3),
               "connect_first_s": by["connect"][0]}
    warm = WARM.search(log.read_text(errors="replace"))
    summary["passive_warm_up_s"] = float(warm.group(1)) if warm else None
    summary["execute_minus_warm_connect_s"] = round(summary["execute_mean_s"] - summary["connect_after_first_mean_s"],
                                                    3)
    result = {"command": " ".join(sys.argv), "preset": a.preset, "device": a.device, "raw": str(raw),
              "first_connect": "during the warm-up" if a.connect_at_once else "after the warm-up",
              "case": {k: getattr(a, k) for k in ("matrix", "frames", "coils", "spokes")} if a.raw is None else None,
              "rows": rows, "summary": summary}
    (a.out / "gadget_modes.json").write_text(json.dumps(result, indent=2))
    print("\n| mode | connection | wall to last image s | to first image s | reconstruct() s | identical to "
          "execute 1 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['connection']} | {r['wall_to_last_image_s']:.2f} | "
              f"{r['wall_to_first_image_s']:.2f} | {r['reconstruct_s']} | {r['identical_to_execute_1']} |")
    print(f"\nexecute mean {summary['execute_mean_s']:.2f} s; connect first {summary['connect_first_s']:.2f} s, "
          f"later {summary['connect_after_first_mean_s']:.2f} s (passive warm-up {summary['passive_warm_up_s']} s, "
          f"first connect {result['first_connect']}); execute - warm connect "
          f"{summary['execute_minus_warm_connect_s']:+.2f} s a connection")
    print(f"wrote {a.out / 'gadget_modes.json'}")
    return 0 if all(r["identical_to_execute_1"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
