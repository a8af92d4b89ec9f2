"""``dainr recon raw.h5 -o images.h5``: reconstruct every slice of an ISMRMRD raw file.

Outputs follow :mod:`dainr.cli.outputs`: all checked before any work, an existing image file gets its own group
added (or, with ``--overwrite``, replaced), and an error leaves no output behind.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from dainr.cli.config import CPU_PRESET, add_config_arguments, add_slice_arguments, default_preset
from dainr.cli.outputs import Output, add_overwrite_argument, check_outputs
from dainr.config import DEFAULT_PRESET, METHODS, load_config
from dainr.cli.render import add_render_arguments, render_request
from dainr.errors import ConfigError, InputError
from dainr.stream.startup import EngineStartup

log = logging.getLogger(__name__)

#: The first bytes of every NumPy .npy file.
_NPY_MAGIC = b"\x93NUMPY"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("recon", description="Reconstruct every slice of a radial cine ISMRMRD raw file.")
    p.add_argument("input", type=Path, help="ISMRMRD raw file (.h5)")
    p.add_argument("-o", "--output", required=True, type=Path,
                   help="ISMRMRD image file (.h5): created, or given the group --group if it is an image file")
    p.add_argument("--method", choices=METHODS, help="reconstruction method (default: the preset's, dainr)")
    add_config_arguments(p, default=None,
                         default_text=f"{DEFAULT_PRESET} with a CUDA GPU, {CPU_PRESET} without one")
    p.add_argument("--device", help="cpu, cuda (every GPU), cuda:N, a list (cuda:0,1) or auto (default: the "
                                    "preset's, auto: every GPU, else the CPU); slices spread over the devices")
    add_slice_arguments(p, "the file's slices")
    p.add_argument("--input-group", default="dataset", help="HDF5 group of the raw data (default dataset)")
    p.add_argument("--group", default="dataset",
                   help="HDF5 group for the output images; the file's other groups are kept (default dataset)")
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
    p.add_argument("--preview", type=Path, help="write a quick-look animated .gif (or the first frame as .png)")
    p.add_argument("--report", type=Path, help="write a JSON report (per slice: method, seconds, metrics)")
    add_overwrite_argument(p, "the group --group of an image file, else the file; the preview, the report")
    add_render_arguments(p)
    p.add_argument("--save-model", type=Path, metavar="FILE",
                   help="DA-INR: save the fitted models of all slices to FILE (render again with dainr render)")
    p.add_argument("--warm-start", action="store_true",
                   help="DA-INR: start each slice's networks from the previous slice's fit (slices in order, one at "
                        "a time)")
    return p


def _load_truth(path: Path, n_slices: int, positions: list[int]) -> list[np.ndarray]:
    """The truth of the slices at ``positions`` (their order in the file's slices, 0-based); a 3-D truth is the
    truth of a single-slice series."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise InputError(f"cannot read truth file {path}: {e.strerror}") from None
    if magic != _NPY_MAGIC:
        raise InputError(f"truth file {path} is not a NumPy .npy file; write it with numpy.save "
                         "((frames, H, W) or (slices, frames, H, W))")
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


def _outputs(args: argparse.Namespace) -> list[Output]:
    outs = [Output(args.output, "-o", group=args.group)]
    if args.preview:
        outs.append(Output(args.preview, "--preview", suffixes=(".gif", ".png")))
    if args.report:
        outs.append(Output(args.report, "--report"))
    if args.save_model:
        outs.append(Output(args.save_model, "--save-model"))
    return outs


def _fit_summary(result) -> str:
    """What a slice's bar shows once it is done: the steps or iterations run and, where DA-INR stopped on its
    held-out spokes, the selected step and its held-out loss (from the result's report facts)."""
    if result.method == "adjoint":
        return "done"
    text = f"{result.iterations} {'steps' if result.method == 'dainr' else 'iterations'}"
    selected = result.info.get("selected_step")
    if selected is not None:
        text += f", selected step {selected}"
        loss = {int(step): value for step, value in result.info.get("validation", [])}.get(int(selected))
        if loss is not None:
            text += f" (held-out loss {loss:.3e})"
    return text


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


def _reconstruct_keeping_models(jobs: list, configs: list, settings, models, show: bool) -> list:
    """The slices one after another through :func:`dainr.stream.reconstruct_slice`, each fitted model kept in
    ``models`` (``--save-model``) and, with ``--warm-start``, the previous slice's weights the next one's start."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from dainr.stream import reconstruct_slice

    outs = []
    with logging_redirect_tqdm():
        for job, slice_cfg in zip(jobs, configs):
            desc = f"slice {job.cine.slice_index} {slice_cfg.method}"
            with tqdm(total=1, desc=desc, unit="step", disable=not show, file=sys.stderr, dynamic_ncols=True) as bar:
                def progress(step: int, total: int, msg: str) -> None:
                    bar.total, bar.n = total, step
                    bar.set_postfix_str(msg, refresh=False)
                    bar.refresh()

                out = reconstruct_slice(job, dataclasses.replace(settings, config=slice_cfg), progress=progress,
                                        keep_model=True, init_state=models.init_state())
                bar.total = bar.n = max(out.result.iterations, 1)
                bar.set_postfix_str(_fit_summary(out.result), refresh=False)
            models.add(out.result, slice_cfg, job.cine, job.image_index_start)
            outs.append(out)
    return outs


def _reconstruct(jobs: list, plan, settings, show: bool) -> list:
    """Every slice through :func:`dainr.stream.exam.run_exam` (several at once per device as ``plan`` says, each
    with the images it gets alone), one progress bar for the exam; log lines are printed above it (tqdm's logging
    redirection). Each slice's summary line is printed as it completes."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from dainr.stream.exam import run_exam

    desc = (f"slice {jobs[0].cine.slice_index} {plan.configs[0].method}" if len(jobs) == 1
            else f"{len(jobs)} slices {plan.configs[0].method}")
    outs = []
    bar = _ExamBar(desc, list(plan.configs), show=show)
    with logging_redirect_tqdm(), bar.bar, contextlib.closing(run_exam(jobs, plan, settings,
                                                                       progress=bar.update)) as outputs:
        for i, out in enumerate(outputs):
            bar.finish(i)
            if len(jobs) == 1:
                bar.bar.set_postfix_str(_fit_summary(out.result), refresh=True)
            outs.append(out)
    return outs


class _Timeline:
    """The phases of a run, ``(name, start, end)`` in ``time.time()`` seconds, for the report: with the start-up's
    background phases, a benchmark accounts for every second from process start to exit."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float, float]] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t = time.time()
        try:
            yield
        finally:
            self.phases.append((name, t, time.time()))

    def report(self) -> list[list]:
        return [[name, round(a, 3), round(b, 3)] for name, a, b in self.phases]


def run(args: argparse.Namespace) -> int:
    t_run = time.perf_counter()
    timeline = _Timeline()
    timeline.phases.append(("run() entered", time.time(), time.time()))
    with timeline.phase("config and output checks"):
        from dainr.stream import ReconSettings

        overrides = list(args.overrides)
        if args.method:
            overrides.append(f"method={args.method}")
        if args.device and "," not in args.device:  # a list of devices is the exam's, not one slice's config
            overrides.append(f"device={args.device}")
        if args.spokes_per_frame is not None:
            overrides.append(f"binning.spokes_per_frame={args.spokes_per_frame}")
        if args.frame_stride is not None:
            overrides.append(f"binning.stride={args.frame_stride}")
        preset = args.preset if args.preset is not None else default_preset(args.device or "auto")
        cfg = load_config(preset, args.config, overrides)
        inputs = [(args.input, "the input raw file")] + ([(args.truth, "the --truth file")] if args.truth else [])
        check_outputs(_outputs(args), inputs, args.overwrite)
        settings = ReconSettings(config=cfg, series_index=args.series, complex_output=args.complex,
                                 render=render_request(args))
        if args.truth and (settings.render.frames or settings.render.matrix):
            raise ConfigError("--truth compares the acquired frames and matrix; drop --render-frames/--render-matrix "
                              "(render them afterwards from --save-model with dainr render)")
        if (args.save_model is not None or args.warm_start) and cfg.method != "dainr":
            raise ConfigError(f"--save-model and --warm-start need method dainr, not {cfg.method}")
    # PyTorch, the engine and CUDA start while the input is read (dainr.stream.startup).
    startup = EngineStartup(args.device or cfg.device)
    with timeline.phase("read"):
        from dainr import mrd
        from dainr.stream import slice_jobs

        series = mrd.read_raw(args.input, group=args.input_group,
                              trajectory_override=mrd.TrajectoryOverride.from_config(cfg.trajectory),
                              binning=mrd.Binning.from_config(cfg.binning))
        # Numbered from the whole series, so a slice's image_index does not depend on which slices are reconstructed.
        jobs = slice_jobs(series)
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
    with timeline.phase("wait for the start-up"):
        started = startup.wait()

    timings = {"imports_and_read": time.perf_counter() - t_run}
    t_plan = time.perf_counter()
    with timeline.phase("plan"):
        from dainr.recon.model_file import FittedStack
        from dainr.stream.exam import plan_exam

        models = FittedStack(save=args.save_model is not None, warm_start=args.warm_start)
        plan = plan_exam([j.cine for j in jobs], cfg, args.device, args.concurrent_slices,
                         args.batch_slices)
    configs = list(plan.configs)
    timings["plan"] = time.perf_counter() - t_plan
    if args.preset is None and preset != DEFAULT_PRESET and cfg.method == "dainr":  # said once the work starts
        log.info("no CUDA GPU: using the preset %s (--preset %s runs the GPU preset on the CPU, far slower)",
                 preset, DEFAULT_PRESET)
    t_slices = time.perf_counter()
    with timeline.phase("slices"):
        if models.keep_model:  # each slice's model kept (and, warm-started, the next one's start): one at a time
            outs = _reconstruct_keeping_models(jobs, configs, settings, models, show=not args.quiet)
        else:
            outs = _reconstruct(jobs, plan, settings, show=not args.quiet)
    timings["slices"] = time.perf_counter() - t_slices

    t_write = time.time()
    if truths is not None:
        from dainr.metrics import quality
    reports = []
    for i, (out, slice_cfg) in enumerate(zip(outs, configs)):
        cine, result = out.job.cine, out.result
        entry = {"slice": cine.slice_index, "method": result.method, "seconds": round(result.seconds, 3),
                 "iterations": result.iterations, "frames": cine.n_frames, "spokes": cine.n_spokes,
                 "coils": cine.n_coils, **{k: v for k, v in result.info.items() if k != "scale"}}
        if slice_cfg.dainr.frames_per_step != cfg.dainr.frames_per_step and cfg.method == "dainr":
            entry["frames_per_step"] = slice_cfg.dainr.frames_per_step
        line = f"slice {cine.slice_index}: {result.method}, {result.seconds:.2f} s"
        if truths is not None:
            q = quality(result.images, truths[i])
            entry.update(psnr=round(q.psnr, 3), ssim=round(q.ssim, 4),
                         psnr_frames=[round(v, 3) for v in q.psnr_frames],
                         ssim_frames=[round(v, 4) for v in q.ssim_frames])
            line += f", PSNR {q.psnr:.2f} dB, SSIM {q.ssim:.4f}"
        reports.append(entry)
        timeline.phases.append((f"slice {cine.slice_index} reconstructed", out.reconstructed_at,
                                out.reconstructed_at))
        print(line)

    # The preview and the report wait under temporary names until the images are written: all or nothing.
    from dainr.mrd.atomic import atomic_path
    from dainr.mrd.images import image_file_groups

    add_group = args.output.exists() and image_file_groups(args.output) is not None
    with contextlib.ExitStack() as stack:
        if args.preview:
            from dainr.preview import write_preview

            write_preview(stack.enter_context(atomic_path(args.preview)), [o.result.images for o in outs], truths,
                          fmt=args.preview.suffix.lower().lstrip("."), label=cfg.method,
                          row_names=[f"slice {o.job.cine.slice_index}" for o in outs] if len(outs) > 1 else None)
        report_path = stack.enter_context(atomic_path(args.report)) if args.report else None
        mrd.write_images(args.output, [im for o in outs for im in o.images], group=args.group,
                         header_xml=series.header_xml, new_group=add_group, replace=args.overwrite)
        if report_path is not None:  # renamed with the images' file, after it
            timeline.phases.append(("write", t_write, time.time()))
            timeline.phases.extend((f"background: {name}", a, b) for name, a, b in started.phases)
            report = {"input": str(args.input), "output": str(args.output), "group": args.group, "preset": cfg.preset,
                      "method": cfg.method, "config": cfg.to_dict(), "slices": reports, "devices": list(plan.devices),
                      "concurrent_slices": plan.per_device, "batch_slices": plan.batch,
                      "timings": {k: round(v, 3) for k, v in timings.items()},
                      "timeline": timeline.report()}
            report["timings"]["run"] = round(time.perf_counter() - t_run, 3)
            if truths is not None:
                report["psnr"] = round(float(np.mean([r["psnr"] for r in reports])), 3)
                report["ssim"] = round(float(np.mean([r["ssim"] for r in reports])), 4)
            report_path.write_text(json.dumps(report, indent=2))
    kept = " (the file's other groups kept)" if add_group else ""
    print(f"wrote {sum(len(o.images) for o in outs)} images to {args.output} (group {args.group}, "
          f"image_{args.series}){kept}")
    if args.save_model is not None:
        models.save(args.save_model, series.header_xml, args.series)
        print(f"wrote fitted models of {len(models.records)} slice(s) to {args.save_model}")
    if args.preview:
        print(f"wrote preview {args.preview}")
    if args.report:
        print(f"wrote report {args.report}")
    return 0
