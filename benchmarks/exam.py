"""A whole cine exam through ``dainr recon``, end to end, as a user runs it (issue 16 goals 1-2, issue 21).

    python benchmarks/exam.py --out /tmp/exam [--device auto] [--concurrency 1,default,2,4,8,12]
                              [--batch-slices 4,6,12]

In one process (each measured run a ``dainr`` subprocess, timed from its start to its exit):

1. ``dainr simulate --slices 12`` (128², 30 frames, 8 coils, 13 spokes: the issue's exam) with its truth;
2. the start-up a ``dainr recon`` pays before any work: the imports of its run (``python -c``), and CUDA
   initialisation (``torch.cuda.init()`` plus a first allocation), each a separate process;
3. a warm-up ``dainr recon --slice 0`` (not counted: it warms the file caches of the libraries);
4. ``dainr recon`` of the whole exam once per ``--concurrency`` entry: ``1`` is the one-at-a-time baseline,
   ``default`` lets the memory plan choose (neither ``--concurrent-slices`` nor ``--batch-slices`` given: batched
   as the plan says), a number is passed as ``--concurrent-slices N`` with ``--batch-slices 1`` (slices on their own
   streams, no batching); then once per ``--batch-slices`` entry N (``--batch-slices N``, the plan's number of
   batches at once); wall time from process start to exit, the report's timings, per-slice seconds and PSNR
   (from the written images against the truth, outside the timed run);
5. ``dainr recon --slice 0``: one slice end to end, every second accounted for from the report's timeline (process
   start -> ``run()``; the main thread: config, reading, waiting for the start-up, memory plan, the slice's
   preparation, set-up, graph capture, fit and image building, writing; the start-up thread meanwhile: import torch,
   the engine and TorchDynamo, CUDA init; the exit after the last phase);
6. every slice's pixels compared across the runs: those fitted alone must be identical; for batched runs the
   largest pixel difference (relative to the slice's largest pixel) and the PSNR difference to the one-at-a-time
   run are reported (batched steps agree to float tolerance on a GPU).

Writes ``exam.json`` in ``--out`` and prints a summary. ``--concurrency none`` runs no whole exam (steps 4, 6): the
start-up measurements and the one slice only. ``--matrix/--frames/--coils/--spokes/--slices/--preset`` and
``--set`` shrink it for a CPU check (``--device cpu --preset cpu-test --matrix 32 ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# The checkout first, then whatever the caller had (e.g. packages installed into a --target folder).
PYTHONPATH = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(REPO))

from dainr.metrics import quality  # noqa: E402
from dainr.mrd import read_images  # noqa: E402
from benchcases import add_size_arguments  # noqa: E402

#: What ``dainr recon`` imports before it reconstructs (its CLI, the reader, the engine, torch, and the TorchDynamo
#: that torch.optim imports at its first use).
RECON_IMPORTS = ("import torch, ismrmrd, tqdm, dainr.cli, dainr.cli.recon, dainr.mrd, dainr.stream, "
                 "dainr.stream.exam, dainr.recon, dainr.recon.dainr_fit, torch._dynamo")


def dainr(*args: str) -> list[str]:
    return [sys.executable, "-m", "dainr", *args]


def timed_tail(cmd: list[str], log: Path, stamps: dict | None = None) -> tuple[float, float]:
    """Run ``cmd`` (output to ``log``); its wall time from start to exit, and the time from its last line of output
    to its exit (the interpreter's shutdown, CUDA's teardown included), s. A failure stops the benchmark.
    ``stamps`` gets ``spawn`` and ``exit``, ``time.time()`` s."""
    if stamps is not None:
        stamps["spawn"] = time.time()
    t0 = time.perf_counter()
    last = t0
    with open(log, "w") as fh:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, text=True,
                              env=dict(os.environ, PYTHONPATH=PYTHONPATH, PYTHONUNBUFFERED="1")) as proc:
            for line in proc.stdout:
                last = time.perf_counter()
                fh.write(line)
            rc = proc.wait()
    end = time.perf_counter()
    if stamps is not None:
        stamps["exit"] = time.time()
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {rc}); its output:\n{log.read_text()[-3000:]}")
    return end - t0, end - last


def timed(cmd: list[str], log: Path) -> float:
    return timed_tail(cmd, log)[0]


def python_seconds(code: str, log: Path) -> float:
    return timed([sys.executable, "-c", code], log)


def slice_images(path: Path) -> dict[int, np.ndarray]:
    """``{slice: (frames, H, W) magnitudes}`` of an output file."""
    out: dict[int, list] = {}
    for im in read_images(path)[1]:
        out.setdefault(int(im.slice), []).append(im.data[0, 0])
    return {s: np.stack(v) for s, v in out.items()}


def heaviest_imports(log: Path, n: int = 12) -> list[tuple[str, float]]:
    """The ``n`` imports (of the command and of their first level) with the largest cumulative time in a
    ``-X importtime`` log, s."""
    rows = []
    for line in log.read_text().splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 1:
            rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def accounting(timeline: list, slice_entry: dict, spawn: float, exit_: float) -> list[tuple[str, float, float]]:
    """Every second of a one-slice ``dainr recon`` from its spawn to its exit: ``(phase, start, seconds)``, start from
    the spawn (s). Main-thread phases in order (gaps between them named as such), the slice split into its report's
    preparation, set-up, graph capture, rest of the fit and the rest (rendering, copy, image building); the
    start-up thread's phases (``background: ...``) overlap them."""
    rows: list[tuple[str, float, float]] = []
    main = [(n, a, b) for n, a, b in timeline if not n.startswith("background: ") and b > a or n == "run() entered"]
    background = [(n, a, b) for n, a, b in timeline if n.startswith("background: ")]
    done = {n: a for n, a, b in timeline if n.endswith(" reconstructed")}
    cursor = spawn
    for name, a, b in main:
        if a - cursor > 0.0005:
            rows.append((f"(between phases, before {name})" if cursor != spawn else
                         "process start -> run() (interpreter, dainr.cli, argparse, dainr.cli.recon)", cursor - spawn,
                         a - cursor))
        if name == "slices":
            end_slice = next(iter(done.values()), b)
            seconds = slice_entry.get("seconds") or 0.0
            t = end_slice - seconds
            rows.append(("slices: before the slice (threads, GPU lock, memory check)", a - spawn, t - a))
            capture = slice_entry.get("capture_seconds") or 0.0
            for part, sec in (("preparation", slice_entry.get("prep_seconds")),
                              ("set-up (operator, features, model)", slice_entry.get("setup_seconds")),
                              ("graph capture (2 warm-up steps)", capture),
                              ("fit (steps, validation, final render)", (slice_entry.get("fit_seconds") or 0) - capture)):
                sec = sec or 0.0
                rows.append((f"slice: {part}", t - spawn, sec))
                t += sec
            rows.append(("slice: rest of reconstruct() (copy, scaling)", t - spawn, end_slice - t))
            rows.append(("slices: after the slice (images built, threads joined)", end_slice - spawn, b - end_slice))
        elif b > a:
            rows.append((name, a - spawn, b - a))
        cursor = max(cursor, b)
    rows.append(("exit (after the report: last lines, flush, process end)", cursor - spawn, exit_ - cursor))
    rows += [(n, a - spawn, b - a) for n, a, b in background]
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="working folder (raw data, images, reports, exam.json)")
    p.add_argument("--device", default="auto", help="dainr recon --device (auto = every GPU; cuda:0,1 = a list)")
    p.add_argument("--concurrency", default="1,default,2,4,8,12",
                   help="whole-exam runs: 1 (one at a time), default (the memory plan's), or N")
    p.add_argument("--batch-slices", default="",
                   help="whole-exam runs with --batch-slices N, comma-separated (default none)")
    p.add_argument("--preset", default="fast")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    add_size_arguments(p)
    p.add_argument("--slices", type=int, default=12)
    a = p.parse_args()
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    raw, truth_file = out / "raw.h5", out / "truth.npy"
    common = ["--preset", a.preset, "--device", a.device, "-q", *[f"--set={o}" for o in a.overrides]]
    result: dict = {"command": " ".join(sys.argv), "case": {k: getattr(a, k) for k in
                                                            ("matrix", "frames", "coils", "spokes", "slices")},
                    "preset": a.preset, "device": a.device, "overrides": a.overrides}

    import torch

    result["machine"] = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu") + \
        f", torch {torch.__version__}, {os.cpu_count()} CPUs"
    result["simulate_seconds"] = timed(dainr("simulate", "--matrix", str(a.matrix), "--frames", str(a.frames),
                                             "--coils", str(a.coils), "--spokes", str(a.spokes), "--slices",
                                             str(a.slices), "--seed", "0", "-o", str(raw), "--truth",
                                             str(truth_file), "-q", "--overwrite"), out / "simulate.log")
    truth = np.load(truth_file)
    truth = truth[None] if truth.ndim == 3 else truth

    # Start-up, each in a fresh process: the interpreter alone, the run's imports, CUDA initialisation.
    startup = {"python": python_seconds("pass", out / "python.log"),
               "imports": python_seconds(RECON_IMPORTS, out / "imports.log")}
    if torch.cuda.is_available():
        startup["imports_and_cuda_init"] = python_seconds(
            "import torch; torch.cuda.init(); torch.zeros(1, device='cuda'); torch.cuda.synchronize()",
            out / "cuda.log")
    with open(out / "importtime.log", "w") as fh:
        subprocess.run([sys.executable, "-X", "importtime", "-c", RECON_IMPORTS], cwd=REPO, stderr=fh,
                       env=dict(os.environ, PYTHONPATH=PYTHONPATH))
    startup["heaviest_imports"] = heaviest_imports(out / "importtime.log")
    result["startup"] = startup

    result["warmup_seconds"] = timed(dainr("recon", str(raw), "-o", str(out / "warmup.h5"), "--slice", "0",
                                           *common, "--set", "dainr.steps=20"), out / "warmup.log")

    runs, images = {}, {}

    def recon(name: str, *extra: str) -> dict:
        report = out / f"{name}.json"
        stamps: dict = {}
        wall, tail = timed_tail(dainr("recon", str(raw), "-o", str(out / f"{name}.h5"), "--report", str(report),
                                      *common, *extra), out / f"{name}.log", stamps)
        rep = json.loads(report.read_text())
        images[name] = slice_images(out / f"{name}.h5")
        slices = []
        for s in rep["slices"]:
            q = quality(images[name][s["slice"]], truth[s["slice"]])
            slices.append({k: s.get(k) for k in ("slice", "seconds", "prep_seconds", "setup_seconds", "fit_seconds",
                                                 "capture_seconds", "wait_seconds", "iterations", "cuda_graph",
                                                 "device", "batch_slices")} | {"psnr": round(q.psnr, 3)})
        run = {"wall_seconds": round(wall, 3), "concurrent_slices": rep["concurrent_slices"],
               "batch_slices": rep.get("batch_slices", 1),
               "devices": rep["devices"], "timings": rep["timings"],
               "outside_run_seconds": round(wall - rep["timings"]["run"], 3), "exit_seconds": round(tail, 3),
               "slice_seconds_sum": round(sum(s["seconds"] for s in slices), 3),
               "mean_psnr": round(float(np.mean([s["psnr"] for s in slices])), 3), "slices": slices,
               "timeline": rep.get("timeline", []), **stamps}
        print(f"{name:>14}: {wall:6.2f} s wall, {run['concurrent_slices']} at once (batches of "
              f"{run['batch_slices']}) on {', '.join(run['devices'])}; "
              f"slices {rep['timings']['slices']:.2f} s (sum of slice seconds {run['slice_seconds_sum']:.2f}), "
              f"mean PSNR {run['mean_psnr']:.2f} dB", flush=True)
        return run

    for c in ([] if a.concurrency == "none" else filter(None, a.concurrency.split(","))):
        name = "exam-default" if c == "default" else f"exam-c{int(c)}"
        runs[name] = recon(name, *([] if c == "default" else ["--concurrent-slices", c, "--batch-slices", "1"]))
    for b in filter(None, a.batch_slices.split(",")):
        runs[f"exam-b{int(b)}"] = recon(f"exam-b{int(b)}", "--batch-slices", b)
    one = runs["one-slice"] = recon("one-slice", "--slice", "0")
    s = one["slices"][0]
    one["accounting"] = [[n, round(t, 3), round(d, 3)] for n, t, d in
                         accounting(one["timeline"], s, one["spawn"], one["exit"])]
    one["reconstruct_seconds"] = s["seconds"]
    one["wall_minus_reconstruct"] = round(one["wall_seconds"] - s["seconds"], 3)
    result["runs"] = runs

    # The same pixels in every run fitted alone, slice by slice; batched runs to float tolerance.
    alone_runs = [n for n in images if runs[n]["batch_slices"] == 1 or n == "one-slice"]
    ref_name = "exam-c1" if "exam-c1" in images else alone_runs[0]
    identical = {}
    for name in alone_runs:
        identical[name] = all(np.array_equal(images[name][k], images[ref_name][k]) for k in images[name])
    result["identical_to_" + ref_name] = identical
    result["batched_max_rel_pixel_diff_vs_" + ref_name] = {
        name: float(max(np.abs(imgs[k] - images[ref_name][k]).max() / np.abs(images[ref_name][k]).max()
                        for k in imgs))
        for name, imgs in images.items() if name not in alone_runs}
    base = runs.get("exam-c1")
    if base is not None:
        result["speedup_vs_one_at_a_time"] = {n: round(base["wall_seconds"] / r["wall_seconds"], 2)
                                              for n, r in runs.items() if n.startswith("exam-")}
        result["psnr_delta_vs_alone_db"] = {
            n: round(max(abs(x["psnr"] - y["psnr"]) for x, y in zip(r["slices"], base["slices"])), 3)
            for n, r in runs.items() if n.startswith("exam-")}
    (out / "exam.json").write_text(json.dumps(result, indent=2))

    print(f"\nstart-up: python {startup['python']:.2f} s, imports {startup['imports']:.2f} s"
          + (f", imports + CUDA init {startup['imports_and_cuda_init']:.2f} s" if "imports_and_cuda_init" in startup
             else ""))
    print("heaviest imports: " + ", ".join(f"{n} {t:.2f} s" for n, t in startup["heaviest_imports"][:8]))
    print(f"one slice, end to end: {one['wall_seconds']:.2f} s wall, reconstruct() {one['reconstruct_seconds']:.2f} s, "
          f"wall - reconstruct() {one['wall_minus_reconstruct']:.2f} s (goal <= 2 s); from the spawn:")
    main_total = 0.0
    for name, start, seconds in one["accounting"]:
        print(f"  {start:7.3f} s  +{seconds:6.3f} s  {name}")
        main_total += 0 if name.startswith("background: ") else seconds
    print(f"  main-thread phases add up to {main_total:.3f} s of {one['wall_seconds']:.3f} s wall")
    print(f"identical pixels to {ref_name}: {identical}")
    print(f"batched runs, largest pixel difference to {ref_name} (relative): "
          f"{result['batched_max_rel_pixel_diff_vs_' + ref_name]}")
    if base is not None:
        print(f"speed-up vs one at a time: {result['speedup_vs_one_at_a_time']}")
        print(f"largest |PSNR difference| of a slice vs one at a time, dB: {result['psnr_delta_vs_alone_db']}")
    print(f"wrote {out / 'exam.json'}")
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
