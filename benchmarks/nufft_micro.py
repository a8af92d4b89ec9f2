"""One DA-INR step's NUFFT, gather vs csr interpolation: forward + backward (an L1 k-space loss) of B frames, the
all-frames adjoint of the preparation, peak memory of each, bit-identical repeats, and whether the forward + backward
captures in a CUDA graph (and its replay time). Deterministic algorithms on, as in the fits.

    python benchmarks/nufft_micro.py --device cuda [--matrix 128 --frames 23 --coils 32 --spokes 21 --samples 256]
        [--batches 1,4] [--backends gather,csr] [--json out.json]

Times are CUDA-event medians over --iters calls after --warmup calls (wall-clock medians on the CPU); peak memory is
``max_memory_allocated`` during the timed calls minus what was allocated before them (the operator, data, inputs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dainr.physics import MultiCoilNufft, radial_trajectory  # noqa: E402
from benchcases import add_size_arguments  # noqa: E402


def timed(fn, device: torch.device, warmup: int, iters: int) -> tuple[float, float | None]:
    """Median ms of ``fn()`` and its peak extra GiB (None on the CPU)."""
    for _ in range(warmup):
        fn()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    ms = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            ms.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            ms.append(1000 * (time.perf_counter() - t0))
    peak = (torch.cuda.max_memory_allocated(device) - before) / 2**30 if cuda else None
    return statistics.median(ms), peak


def step_fn(op: MultiCoilNufft, x: torch.Tensor, data: torch.Tensor, frames: torch.Tensor):
    """Forward + backward of the mean L1 k-space loss of B frames; the gradient lands in ``x.grad``."""

    def run() -> None:
        x.grad = None
        pred = op(x, frames)
        d = pred - data
        (d.real.abs() + d.imag.abs()).mean().backward()

    return run


def capture(run, device: torch.device, x: torch.Tensor, iters: int) -> tuple[bool, float | None, str]:
    """Capture ``run`` (forward + backward) in a CUDA graph; (captured, median replay ms, error line)."""
    if device.type != "cuda":
        return False, None, "not CUDA"
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    try:
        with torch.cuda.stream(side):
            for _ in range(3):
                run()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        x.grad = None
        with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
            run()
    except RuntimeError as e:
        torch.cuda.synchronize(device)
        return False, None, str(e).splitlines()[0]
    ms, _ = timed(graph.replay, device, 3, iters)
    return True, ms, ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    add_size_arguments(p, frames=23, coils=32, spokes=21)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--batches", default="1,4")
    p.add_argument("--backends", default="gather,csr")
    p.add_argument("--adjoint-frames", type=int, default=8, help="frames of the all-frames adjoint call (preparation)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--repeats", type=int, default=10, help="repeats compared bit for bit with the first result")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    torch.use_deterministic_algorithms(True)
    dev = torch.device(a.device)
    rng = np.random.default_rng(0)
    n, f, c = a.matrix, a.frames, a.coils
    traj = torch.from_numpy(radial_trajectory("goldenangle", f, a.spokes, a.samples)).to(dev)
    maps = torch.from_numpy((rng.normal(size=(c, n, n)) + 1j * rng.normal(size=(c, n, n))).astype(np.complex64))
    maps = (maps / maps.abs().square().sum(0).sqrt()).to(dev)
    kshape = (f, c, a.spokes, a.samples)
    kspace = torch.from_numpy((rng.normal(size=kshape) + 1j * rng.normal(size=kshape)).astype(np.complex64)).to(dev)
    images = torch.from_numpy((rng.normal(size=(f, n, n)) + 1j * rng.normal(size=(f, n, n))).astype(np.complex64))
    rows = []
    for backend in a.backends.split(","):
        t0 = time.perf_counter()
        op = MultiCoilNufft(traj, maps, backend=backend)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        build_s = time.perf_counter() - t0
        tables = sum(b.numel() * b.element_size() for name, b in op.named_buffers() if name.startswith("_interp."))
        for b in (int(v) for v in a.batches.split(",")):
            frames = torch.arange(f - b, f, device=dev).flip(0)  # not in order, not starting at 0
            x = images[:b].clone().to(dev).requires_grad_(True)
            run = step_fn(op, x, kspace[frames], frames)
            ms, peak = timed(run, dev, a.warmup, a.iters)
            run()
            g1 = x.grad.clone()
            identical = True
            for _ in range(a.repeats):  # cuSPARSE documents bit-wise determinism for some SpMM algorithms only
                run()
                identical &= bool(torch.equal(g1, x.grad))
            captured, graph_ms, err = capture(run, dev, x, a.iters)
            row = {"backend": backend, "frames_per_call": b, "coils": c, "fwd_bwd_ms": round(ms, 3),
                   "fwd_bwd_peak_gib": None if peak is None else round(peak, 3), "repeat_bit_identical": identical,
                   "graph_captured": captured, "graph_replay_ms": None if graph_ms is None else round(graph_ms, 3),
                   "capture_error": err, "tables_mib": round(tables / 2**20, 1), "build_s": round(build_s, 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        m = min(a.adjoint_frames, f)
        idx = torch.arange(m, device=dev)
        with torch.no_grad():
            ms, peak = timed(lambda: op.adjoint(kspace[:m], idx), dev, 2, max(3, a.iters // 5))
            first = op.adjoint(kspace[:m], idx)
            identical = all(torch.equal(first, op.adjoint(kspace[:m], idx)) for _ in range(a.repeats))
        row = {"backend": backend, "adjoint_frames": m, "coils": c, "adjoint_ms": round(ms, 3),
               "adjoint_peak_gib": None if peak is None else round(peak, 3), "repeat_bit_identical": identical}
        rows.append(row)
        print(json.dumps(row), flush=True)
        del op
    if len(rows) and a.json:
        a.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(dev)
                                      if dev.type == "cuda" else "cpu", "torch": torch.__version__,
                                      "command": " ".join(sys.argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
