"""``dainr recon raw.h5 -o images.h5``: reconstruct every slice of an ISMRMRD raw file."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np

from dainr.cli.config import add_config_arguments
from dainr.config import METHODS, load_config
from dainr.errors import ConfigError, InputError

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("recon", help="reconstruct an ISMRMRD raw file into ISMRMRD images",
                       description="Reconstruct every slice of a radial cine ISMRMRD raw file.")
    p.add_argument("input", type=Path, help="ISMRMRD raw file (.h5)")
    p.add_argument("-o", "--output", required=True, type=Path, help="ISMRMRD image file to write (.h5)")
    p.add_argument("--method", choices=METHODS, help="reconstruction method (default: the preset's, dainr)")
    add_config_arguments(p)
    p.add_argument("--device", help="cpu, cuda (every GPU), cuda:N, a list (cuda:0,1) or auto (default: the "
                                    "preset's, auto: every GPU, else the CPU); slices spread over the devices")
    p.add_argument("--concurrent-slices", type=int, metavar="N",
                   help="slices reconstructed at once on each device (default: as many as fit the GPU memory, at "
                        "most 6; 1 on the CPU); each slice's images are those it gets alone")
    p.add_argument("--input-group", default="dataset", help="HDF5 group of the raw data (default dataset)")
    p.add_argument("--group", default="dataset", help="HDF5 group for the output images (default dataset)")
    p.add_argument("--series", type=int, default=1, help="image_series_index of the output (default 1)")
    p.add_argument("--complex", action="store_true", help="write complex images instead of magnitude")
    p.add_argument("--spokes-per-frame", type=int, metavar="S",
                   help="bin a real-time stream (no phase index) into frames of S consecutive spokes "
                        "(binning.spokes_per_frame; default 0 = frames from idx.phase)")
    p.add_argument("--frame-stride", type=int, metavar="N",
                   help="with --spokes-per-frame: a new frame every N spokes, N < S = sliding window "
                        "(binning.stride; default S)")
    p.add_argument("--slice", dest="slices", type=int, action="append", metavar="N",
                   help="reconstruct only this idx.slice (repeatable)")
    p.add_argument("--truth", type=Path, help="ground truth .npy ((frames,H,W) or (slices,frames,H,W)) for metrics")
    p.add_argument("--preview", type=Path, help="write a quick-look animated .gif (or .png)")
    p.add_argument("--report", type=Path, help="write a JSON report (per slice: method, seconds, metrics)")
    return p


def _load_truth(path: Path, n_slices: int, positions: list[int]) -> list[np.ndarray]:
    """The truth of the slices at ``positions`` (their order in the file's slices, 0-based); a 3-D truth is the
    truth of a single-slice series."""
    try:
        truth = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read truth file {path}: {e}") from None
    if truth.ndim == 3:
        truth = truth[None]
    if truth.ndim != 4:
        raise InputError(f"truth {path} has shape {truth.shape}; expected (frames,H,W) or (slices,frames,H,W)")
    if truth.shape[0] != n_slices:
        raise InputError(f"truth {path} holds {truth.shape[0]} slice(s) but the data has {n_slices}; give "
                         "(slices, frames, H, W) in slice order")
    return [truth[i] for i in positions]


class _ExamBar:
    """One progress bar for the whole exam: the steps of all its slices, updated from the slices' threads."""

    def __init__(self, desc: str, configs: list, show: bool):
        from tqdm import tqdm

        self.lock = threading.Lock()
        self.done = [0] * len(configs)
        # Until a slice reports its own total (early stopping ends sooner): its config's steps or iterations.
        self.totals = [c.dainr.steps if c.method == "dainr" else c.cgsense.iterations if c.method == "cgsense" else 1
                       for c in configs]
        self.bar = tqdm(total=sum(self.totals), desc=desc, unit="step", disable=not show, file=sys.stderr,
                        leave=True, dynamic_ncols=True)

    def update(self, i: int, step: int, total: int, message: str) -> None:
        with self.lock:
            self.done[i], self.totals[i] = step, max(total, 1)
            self._draw(message)

    def finish(self, i: int) -> None:
        with self.lock:
            self.done[i] = self.totals[i]
            self._draw(None)

    def _draw(self, message: str | None) -> None:
        self.bar.total, self.bar.n = sum(self.totals), sum(self.done)
        if message is not None:
            self.bar.set_postfix_str(message, refresh=False)
        self.bar.refresh()


def run(args: argparse.Namespace) -> int:
    t_run = time.perf_counter()
    from tqdm import tqdm

    from dainr import mrd
    from dainr.mrd.images import appending_images
    from dainr.stream import ReconSettings, slice_jobs
    from dainr.stream.exam import plan_exam, run_exam

    overrides = list(args.overrides)
    if args.method:
        overrides.append(f"method={args.method}")
    if args.device and "," not in args.device:  # a list of devices is the exam's, not one slice's config
        overrides.append(f"device={args.device}")
    if args.spokes_per_frame is not None:
        overrides.append(f"binning.spokes_per_frame={args.spokes_per_frame}")
    if args.frame_stride is not None:
        overrides.append(f"binning.stride={args.frame_stride}")
    cfg = load_config(args.preset, args.config, overrides)
    settings = ReconSettings(config=cfg, series_index=args.series, complex_output=args.complex)
    if args.output.resolve() == args.input.resolve():
        raise ConfigError("the output file must differ from the input raw file")
    # Seconds of each part of the run, for the report: imports (torch with them), reading, the memory plan (which
    # starts CUDA on every device), the slices (from the first start to the last end), writing their images
    # (overlapping the slices still fitting) and the whole run.
    timings = {"imports": time.perf_counter() - t_run}
    t_read = time.perf_counter()
    series = mrd.read_raw(args.input, group=args.input_group,
                          trajectory_override=mrd.TrajectoryOverride.from_config(cfg.trajectory),
                          binning=mrd.Binning.from_config(cfg.binning))
    # Numbered from the whole series, so a slice's image_index does not depend on which slices are reconstructed.
    jobs = slice_jobs(series)
    timings["read"] = time.perf_counter() - t_read
    if args.slices:
        wanted = set(args.slices)
        missing = wanted - {j.cine.slice_index for j in jobs}
        if missing:
            raise InputError(f"--slice {sorted(missing)} not in the data (slices: "
                             f"{[j.cine.slice_index for j in jobs]})")
        jobs = [j for j in jobs if j.cine.slice_index in wanted]
    truths = None
    if args.truth:
        positions = [[c.slice_index for c in series.slices].index(j.cine.slice_index) for j in jobs]
        truths = _load_truth(args.truth, len(series.slices), positions)
        for j, t in zip(jobs, truths):
            c = j.cine
            if t.shape != (c.n_frames, *c.matrix):
                raise InputError(f"truth of slice {c.slice_index} has shape {t.shape}, the reconstruction "
                                 f"{(c.n_frames, *c.matrix)}")

    t_plan = time.perf_counter()
    plan = plan_exam([j.cine for j in jobs], cfg, args.device, args.concurrent_slices)
    timings["plan"] = time.perf_counter() - t_plan

    n_images, reports, recons = 0, [], []
    timings["write"] = 0.0
    t_slices = time.perf_counter()
    desc = f"slice {jobs[0].cine.slice_index} {cfg.method}" if len(jobs) == 1 else f"{len(jobs)} slices {cfg.method}"
    bar = _ExamBar(desc, list(plan.configs), show=not args.quiet)
    # Each slice's images go to the file as soon as it and the slices before it are done, while the others fit.
    with appending_images(args.output, group=args.group, header_xml=series.header_xml) as write, bar.bar, \
            contextlib.closing(run_exam(jobs, plan, settings, progress=bar.update)) as outputs:
        for i, (out, slice_cfg) in enumerate(zip(outputs, plan.configs)):
            bar.finish(i)
            cine, result = out.job.cine, out.result
            recons.append(result.images)
            t_write = time.perf_counter()
            write(out.images)
            timings["write"] += time.perf_counter() - t_write
            n_images += len(out.images)
            entry = {"slice": cine.slice_index, "method": result.method, "seconds": round(result.seconds, 3),
                     "iterations": result.iterations, "frames": cine.n_frames, "spokes": cine.n_spokes,
                     "coils": cine.n_coils, **{k: v for k, v in result.info.items() if k != "scale"}}
            if slice_cfg.dainr.frames_per_step != cfg.dainr.frames_per_step and cfg.method == "dainr":
                entry["frames_per_step"] = slice_cfg.dainr.frames_per_step
            line = f"slice {cine.slice_index}: {result.method}, {result.seconds:.2f} s"
            if truths is not None:
                from dainr.metrics import quality  # scipy's statistics: only imported when there is a truth

                q = quality(result.images, truths[i])
                entry.update(psnr=round(q.psnr, 3), ssim=round(q.ssim, 4),
                             psnr_frames=[round(v, 3) for v in q.psnr_frames],
                             ssim_frames=[round(v, 4) for v in q.ssim_frames])
                line += f", PSNR {q.psnr:.2f} dB, SSIM {q.ssim:.4f}"
            reports.append(entry)
            tqdm.write(line, file=sys.stdout)
        timings["slices"] = time.perf_counter() - t_slices

    print(f"wrote {n_images} images to {args.output} (group {args.group}, image_{args.series})")
    if args.preview:
        from dainr.preview import write_preview  # imageio: only imported for a preview

        write_preview(args.preview, recons, truths)
        print(f"wrote preview {args.preview}")
    if args.report:
        report = {"input": str(args.input), "output": str(args.output), "preset": cfg.preset,
                  "method": cfg.method, "config": cfg.to_dict(), "devices": list(plan.devices),
                  "concurrent_slices": plan.per_device, "slices": reports,
                  "timings": {k: round(v, 3) for k, v in timings.items()}}
        report["timings"]["run"] = round(time.perf_counter() - t_run, 3)
        if truths is not None:
            report["psnr"] = round(float(np.mean([r["psnr"] for r in reports])), 3)
            report["ssim"] = round(float(np.mean([r["ssim"] for r in reports])), 4)
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2))
        print(f"wrote report {args.report}")
    return 0
