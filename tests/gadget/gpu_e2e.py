"""GPU end-to-end run of the streaming front ends (not a test; run by hand on a GPU machine).

Simulates a realistic cine, reconstructs it with ``dainr recon`` (the reference), through the gadget as Gadgetron
runs it (fake Gadgetron, ``python -m gadgetron PORT gadget.dainr_gadget recon``) and through ``dainr serve`` +
``replay``, and writes timings and the largest pixel differences to a JSON file::

    python tests/gadget/gpu_e2e.py --out results.json [--matrix 128 --frames 20 --coils 8 --spokes 13 --slices 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dainr.cli import main as dainr_main  # noqa: E402
from dainr.mrd import read_images  # noqa: E402
from dainr.server.replay import replay  # noqa: E402
from tests.gadget.harness import FakeGadgetron, configuration_node, read_acquisitions  # noqa: E402


def _diff(got: list, ref: list) -> dict:
    same_headers = all(bytes(a.getHead()) == bytes(b.getHead()) for a, b in zip(got, ref)) and len(got) == len(ref)
    rel = max(float(np.abs(a.data - b.data).max() / max(np.abs(b.data).max(), 1e-30)) for a, b in zip(got, ref))
    exact = all(np.array_equal(a.data, b.data) for a, b in zip(got, ref))
    return {"images": len(got), "headers_identical": same_headers, "pixels_identical": exact,
            "max_rel_diff": rel}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("/tmp/dainr_gpu_e2e"))
    p.add_argument("--matrix", type=int, default=128)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--spokes", type=int, default=13)
    p.add_argument("--slices", type=int, default=2)
    p.add_argument("--preset", default="fast")
    p.add_argument("--device", default="cuda")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for all three front ends")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    report: dict = {"argv": sys.argv, "preset": args.preset, "overrides": args.overrides}
    props = dict(o.split("=", 1) for o in args.overrides)
    sets = [x for o in args.overrides for x in ("--set", o)]

    def save() -> None:
        args.out.write_text(json.dumps(report, indent=2))

    import torch

    report["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    report["torch"] = torch.__version__
    raw = args.work / "raw.h5"
    dainr_main(["simulate", "--matrix", str(args.matrix), "--frames", str(args.frames), "--coils", str(args.coils),
                "--spokes", str(args.spokes), "--slices", str(args.slices), "-o", str(raw), "-q"])
    report["data"] = {k: getattr(args, k) for k in ("matrix", "frames", "coils", "spokes", "slices")}

    t0 = time.perf_counter()
    assert dainr_main(["recon", str(raw), "-o", str(args.work / "cli.h5"), "--preset", args.preset, "--device",
                       args.device, "-q", *sets]) == 0
    report["cli_s"] = time.perf_counter() - t0
    ref = read_images(args.work / "cli.h5")[1]
    save()

    header, acqs = read_acquisitions(raw)
    fake = FakeGadgetron(args.work / "gadget.log")
    t0 = time.perf_counter()
    reply = fake.run(configuration_node(preset=args.preset, device=args.device,
                                                   **{k.replace(".", "__"): v for k, v in props.items()}), header, acqs)
    report["gadget"] = {"seconds": time.perf_counter() - t0, "errors": reply.errors, "ids_tail": reply.ids[-2:],
                        **_diff(reply.images, ref)}
    report["gadget"]["log_tail"] = reply.log.splitlines()[-6:]
    fake.close()
    save()

    log = args.work / "serve.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    with open(log, "wb") as fh:
        server = subprocess.Popen([sys.executable, "-m", "dainr", "serve", "--port", "0", "--device", args.device,
                                   "--default-config", args.preset], stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while not re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text()):
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()
            time.sleep(0.2)
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text()).group(1))
        arrivals: list[float] = []
        t0 = time.perf_counter()

        def progress(sent: int, total: int, images: int) -> None:
            while len(arrivals) < images:
                arrivals.append(time.perf_counter() - t0)

        text = "".join(f"{k}: {v}\n" for k, v in {"preset": args.preset, **props}.items())
        result = replay(raw, "127.0.0.1", port, config_text=text, progress=progress, timeout=600)
        report["server"] = {"seconds": result.seconds, "first_image_s": result.first_image_s,
                            **_diff(result.images, ref)}
        per_slice = [float(m) for m in re.findall(r"slice \d+ sent, \d+ images, ([0-9.]+) s after it was complete",
                                                  log.read_text())]
        report["server"]["slice_latency_s"] = per_slice
        report["server"]["slice_recon_s"] = [float(m) for m in re.findall(r"done on \S+ in ([0-9.]+) s",
                                                                          log.read_text())]
        report["server"]["slice_images_back_s"] = [arrivals[(i + 1) * args.frames - 1]
                                                   for i in range(args.slices) if len(arrivals) >= (i + 1) * args.frames]
    finally:
        server.terminate()
        server.wait(60)
        report["server_log_tail"] = log.read_text().splitlines()[-8:]
        save()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
