"""``dainr recon raw.h5 -o images.h5``: reconstruct every slice of an ISMRMRD raw file."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np

from dainr.cli.config import add_config_arguments
from dainr.cli.render import add_render_arguments, render_request, written
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
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the preset's, auto)")
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
    add_render_arguments(p)
    p.add_argument("--save-model", type=Path, metavar="FILE",
                   help="DA-INR: save the fitted models of all slices to FILE (render again with dainr render)")
    p.add_argument("--warm-start", action="store_true",
                   help="DA-INR: start each slice's networks from the previous slice's fit (slices in order)")
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


def _preflight(slices: list, cfg) -> list:
    """Check every slice against the device's memory before any optimisation starts (INPUT_POLICY.md §9): the
    config per slice, with fewer frames per step where needed; :class:`ResourceError` when one cannot fit."""
    from dainr.recon.budget import fit_to_device
    from dainr.recon.device import resolve_device

    device = resolve_device(cfg.device)
    return [fit_to_device(cine, cfg, device) for cine in slices]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dainr import mrd
    from dainr.metrics import quality
    from dainr.preview import write_preview
    from dainr.recon.model_file import FittedStack
    from dainr.stream import ReconSettings, reconstruct_slice, slice_jobs

    overrides = list(args.overrides)
    if args.method:
        overrides.append(f"method={args.method}")
    if args.device:
        overrides.append(f"device={args.device}")
    if args.spokes_per_frame is not None:
        overrides.append(f"binning.spokes_per_frame={args.spokes_per_frame}")
    if args.frame_stride is not None:
        overrides.append(f"binning.stride={args.frame_stride}")
    cfg = load_config(args.preset, args.config, overrides)
    settings = ReconSettings(config=cfg, series_index=args.series, complex_output=args.complex,
                             render=render_request(args))
    if args.output.resolve() == args.input.resolve():
        raise ConfigError("the output file must differ from the input raw file")
    if args.save_model is not None and args.save_model.resolve() in (args.input.resolve(), args.output.resolve()):
        raise ConfigError("--save-model must name a file other than the input and the output")
    if args.truth and (settings.render.frames or settings.render.matrix):
        raise ConfigError("--truth compares the acquired frames and matrix; drop --render-frames/--render-matrix "
                          "(render them afterwards from --save-model with dainr render)")
    models = FittedStack(save=args.save_model is not None, warm_start=args.warm_start)
    if models.keep_model and cfg.method != "dainr":
        raise ConfigError(f"--save-model and --warm-start need method dainr, not {cfg.method}")
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

    configs = _preflight([j.cine for j in jobs], cfg)

    images, reports, recons = [], [], []
    show = not args.quiet
    for i, (job, slice_cfg) in enumerate(zip(jobs, configs)):
        cine = job.cine
        desc = f"slice {cine.slice_index} {cfg.method}"
        with tqdm(total=1, desc=desc, disable=not show, file=sys.stderr, leave=True, dynamic_ncols=True) as bar:
            def progress(step: int, total: int, msg: str) -> None:
                bar.total = total
                bar.n = step
                bar.set_postfix_str(msg, refresh=False)
                bar.refresh()

            out = reconstruct_slice(job, dataclasses.replace(settings, config=slice_cfg), progress=progress,
                                    keep_model=models.keep_model, init_state=models.init_state())
        result = out.result
        if models.keep_model:
            models.add(result, slice_cfg, cine, job.image_index_start)
        recons.append(result.images)
        images += out.images
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
        print(line)

    mrd.write_images(args.output, images, group=args.group, header_xml=series.header_xml)
    print(written(images, args.output, args.group))
    if args.save_model is not None:
        models.save(args.save_model, series.header_xml, args.series)
        print(f"wrote fitted models of {len(models.records)} slice(s) to {args.save_model}")
    if args.preview:
        write_preview(args.preview, recons, truths)
        print(f"wrote preview {args.preview}")
    if args.report:
        report = {"input": str(args.input), "output": str(args.output), "preset": cfg.preset,
                  "method": cfg.method, "config": cfg.to_dict(), "slices": reports}
        if truths is not None:
            report["psnr"] = round(float(np.mean([r["psnr"] for r in reports])), 3)
            report["ssim"] = round(float(np.mean([r["ssim"] for r in reports])), 4)
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2))
        print(f"wrote report {args.report}")
    return 0
