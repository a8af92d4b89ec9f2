"""``dainr serve`` + ``dainr replay``: first vs later connections, and the latency of a slice's images (issue 16 goal 3).

    python benchmarks/serve_latency.py --out /tmp/serve [--device cuda] [--connections 3] [--warm-wait 0]

In one process (each measured step a ``dainr`` subprocess):

1. ``dainr simulate`` (128², 30 frames, 8 coils, 13 spokes, ``--slices`` slices) and ``dainr recon`` of it (the
   reference pixels);
2. ``dainr serve`` started; the time until it answers the health query (``python -m dainr.server.health``);
3. after ``--warm-wait`` seconds (0: at once, so the first connection meets a worker still warming up), one
   ``dainr replay`` after another, ``--connections`` times: each one's wall time from spawn to exit (the replay's
   own start-up included, so ``replay_startup`` measures a replay that finds no server: its start-up alone);
4. from the server log: the worker process's start-up (imports, CUDA context), each slice's time on the device and the time from the end of its reconstruction to its
   images sent (goal: <= 0.3 s), per connection;
5. every connection's pixels compared with ``dainr recon``'s (they must be identical).

``--concurrent-slices N`` is passed to ``dainr serve`` (default: its own, as ``dainr recon``'s); ``--wait-ready`` waits
for the worker's warm-up before the first connection; ``--raw`` and ``--reference`` reuse a raw file and its
``dainr recon`` images (a second run of the same case). A 12-slice stream through a warm server, one slice at a time
against the default (``benchmarks/issue16_gadget.sh serve``)::

    python benchmarks/serve_latency.py --out /tmp/s1 --slices 12 --connections 1 --wait-ready --concurrent-slices 1
    python benchmarks/serve_latency.py --out /tmp/sd --slices 12 --connections 1 --wait-ready \
        --raw /tmp/s1/raw.h5 --reference /tmp/s1/recon.h5

Writes ``serve_latency.json`` in ``--out`` and prints a summary. ``--preset cpu-test --matrix 32 ...`` shrink it for a
CPU check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PYTHONPATH = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
ENV = dict(os.environ, PYTHONPATH=PYTHONPATH, PYTHONUNBUFFERED="1")
sys.path.insert(0, str(REPO))

from dainr.mrd import read_images  # noqa: E402
from benchcases import add_size_arguments  # noqa: E402

SENT = re.compile(r"conn (\d+) \([^)]*\): slice (\d+) sent, (\d+) images, ([\d.]+) s after its reconstruction ended")
READY = re.compile(r"the worker for \S+ is ready \(start-up ([\d.]+) s\)")
DONE = re.compile(r"conn (\d+) \([^)]*\) slice (\d+): done on \S+ in ([\d.]+) s")


def dainr(*args: str) -> list[str]:
    return [sys.executable, "-m", "dainr", *args]


def timed(cmd: list[str], log: Path, check: bool = True) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=ENV).returncode
    if check and rc != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {rc}); its output:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pixels(path: Path, group: str = "dataset") -> np.ndarray:
    """The pixels of an image file's series 1, in file order."""
    return np.stack([im.data for im in read_images(path, group=group)[1]])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", default="fast")
    p.add_argument("--connections", type=int, default=3)
    p.add_argument("--warm-wait", type=float, default=0.0, help="seconds between health ok and the first connection")
    add_size_arguments(p)
    p.add_argument("--slices", type=int, default=1)
    p.add_argument("--concurrent-slices", type=int, help="dainr serve --concurrent-slices (default: its own)")
    p.add_argument("--wait-ready", action="store_true", help="wait for the worker's warm-up before connecting")
    p.add_argument("--raw", type=Path, help="reuse this raw file (with --reference) instead of simulating one")
    p.add_argument("--reference", type=Path, help="dainr recon's images of --raw")
    a = p.parse_args()
    if (a.raw is None) != (a.reference is None):
        sys.exit("--raw and --reference go together")
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    raw = a.raw or out / "raw.h5"
    result: dict = {"command": " ".join(sys.argv), "preset": a.preset, "device": a.device,
                    "concurrent_slices": a.concurrent_slices or "default",
                    "case": {k: getattr(a, k) for k in ("matrix", "frames", "coils", "spokes", "slices")}}
    if a.raw is None:
        timed(dainr("simulate", "--matrix", str(a.matrix), "--frames", str(a.frames), "--coils", str(a.coils),
                "--spokes", str(a.spokes), "--slices", str(a.slices), "--seed", "0", "-o", str(raw), "-q",
                    "--overwrite"), out / "simulate.log")
    ref = a.reference or out / "recon.h5"
    if a.reference is None:
        ref.unlink(missing_ok=True)
        result["recon_wall_seconds"] = round(timed(dainr("recon", str(raw), "-o", str(ref), "--preset", a.preset,
                                                         "--device", a.device, "-q"), out / "recon.log"), 3)
    port = free_port()
    # A replay with no server listening: its own start-up and exit, which every connection's wall time includes.
    result["replay_startup_seconds"] = round(timed(dainr("replay", str(raw), "-o", str(out / "none.h5"), "--port",
                                                         str(port), "--timeout", "5"), out / "replay-none.log",
                                                   check=False), 3)
    log_path = out / "serve.log"
    t0 = time.perf_counter()
    with open(out / "serve.stderr", "w") as err:
        extra = ["--concurrent-slices", str(a.concurrent_slices)] if a.concurrent_slices else []
        server = subprocess.Popen(dainr("serve", "--port", str(port), "--device", a.device, "--default-config",
                                        a.preset, "--log", str(log_path), *extra), stdout=subprocess.DEVNULL,
                                  stderr=err, cwd=REPO, env=ENV)
    try:
        while True:
            probe = subprocess.run([sys.executable, "-m", "dainr.server.health", "--port", str(port), "--timeout",
                                    "2"], capture_output=True, cwd=REPO, env=ENV)
            if probe.returncode == 0:
                break
            if server.poll() is not None or time.perf_counter() - t0 > 120:
                sys.exit(f"dainr serve did not become healthy:\n{(out / 'serve.stderr').read_text()[-3000:]}")
            time.sleep(0.2)
        result["serve_ready_seconds"] = round(time.perf_counter() - t0, 3)
        while a.wait_ready and not READY.search(log_path.read_text()):
            if server.poll() is not None or time.perf_counter() - t0 > 180:
                sys.exit(f"the worker did not warm up:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        time.sleep(a.warm_wait)
        walls, identical = [], []
        reference = pixels(ref)
        for k in range(a.connections):
            path = out / f"replay{k + 1}.h5"
            path.unlink(missing_ok=True)
            walls.append(round(timed(dainr("replay", str(raw), "-o", str(path), "--port", str(port), "--group",
                                           "run"), out / f"replay{k + 1}.log"), 3))
            identical.append(bool(np.array_equal(pixels(path, "run"), reference)))
            print(f"connection {k + 1}: {walls[-1]:.2f} s wall (replay start-up and exit included), "
                  f"pixels identical to dainr recon: {identical[-1]}", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
    text = log_path.read_text()
    sent: dict[int, list[float]] = {}
    for conn, _, _, latency in SENT.findall(text):
        sent.setdefault(int(conn), []).append(float(latency))
    device: dict[int, list[float]] = {}
    for conn, _, seconds in DONE.findall(text):
        device.setdefault(int(conn), []).append(float(seconds))
    conns = sorted(sent)
    result["worker_startup_seconds"] = [float(v) for v in READY.findall(text)]
    result.update(connection_wall_seconds=walls, identical_to_recon=identical,
                  per_connection=[{"connection": c, "device_seconds": device.get(c, []),
                                   "reconstruction_end_to_sent_seconds": sent[c]} for c in conns])
    (out / "serve_latency.json").write_text(json.dumps(result, indent=2))
    print(f"\nserver healthy after {result['serve_ready_seconds']:.2f} s; a replay's own start-up and exit "
          f"{result['replay_startup_seconds']:.2f} s; dainr recon of the file {result.get('recon_wall_seconds')} s; "
          f"the worker's own start-up (in its process, from its spawn with the server): "
          f"{result['worker_startup_seconds']} s")
    for k, c in enumerate(conns):
        print(f"connection {k + 1}: wall {walls[k] if k < len(walls) else float('nan'):.2f} s, on the device "
              f"{', '.join(f'{v:.2f}' for v in device.get(c, []))} s, reconstruction end -> images sent "
              f"{', '.join(f'{v:.3f}' for v in sent[c])} s (goal <= 0.3 s)")
    if len(walls) > 1:
        print(f"first - second connection: {walls[0] - walls[1]:+.2f} s")
    print(f"wrote {out / 'serve_latency.json'}")
    return 0 if all(identical) else 1


if __name__ == "__main__":
    sys.exit(main())
