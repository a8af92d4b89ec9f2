"""What a fitted DA-INR model gives beyond its cine, measured on the analytic phantom (issue 18).

    python benchmarks/motion.py motion  [--matrix 64 --frames 12 --preset cpu --device cpu]   # endpoint error, mm
    python benchmarks/motion.py render  [--matrix 64 --frames 12 --preset cpu --device cpu]   # other frames/matrix
    python benchmarks/motion.py figure  --out docs/motion.png [--matrix 64 ...]                # README picture

``motion``: one fit of a moving phantom and one of the same phantom held still (the same k-space noise), each
with :mod:`dainr.recon.motion`'s displacement to frame 0 compared with the phantom's analytic motion
(:func:`dainr.phantom.cardiac_phantom_motion`): the endpoint error (EPE, mean |u_fit − u_true| in mm) in the LV
myocardium over frames 1.., next to the EPE of "no motion" (the mean true displacement there), and the mean |u| of
the still phantom's fit (should be near zero).

``render``: one fit on every frame, rendered (a) at ``2F − 1`` frames, against the phantom at the finer phases (and,
as a baseline, the previous acquired frame held), (b) at twice the matrix, against the phantom drawn at twice the
matrix (baseline: the fit's pixels replicated 2×2); and (c) a fit with ``dainr.down_ratio=2`` (odd frames held out)
against the truth of the held-out frames. PSNR as the project reports it (per-frame max-normalised magnitude,
``dainr.metrics``).

Every number comes with the machine and the command; timings are wall clock.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dainr.config import load_config  # noqa: E402
from dainr.metrics import quality  # noqa: E402
from dainr.phantom import cardiac_phantom, cardiac_phantom_motion  # noqa: E402
from dainr.physics import MultiCoilNufft  # noqa: E402
from dainr.recon import reconstruct  # noqa: E402
from dainr.recon.dainr_fit import training_frames  # noqa: E402
from dainr.recon.rendering import RenderRequest  # noqa: E402
from dainr.simulate import simulate  # noqa: E402

FOV_MM = 256.0


def phantom_case(matrix: int, frames: int, coils: int, spokes: int, snr: float, seed: int, still: bool = False):
    """``(cine, truth (F, H, W))`` of the simulated phantom; ``still`` holds frame 0 for the whole cine (the same
    trajectory and the same noise samples as the moving one)."""
    ser = simulate("phantom", matrix=matrix, frames=frames, coils=coils, spokes=spokes, snr=snr, seed=seed,
                   fov_mm=FOV_MM)
    cine, truth = ser.slices[0], ser.truth[0]
    if not still:
        return cine, truth
    maps = cardiac_phantom(matrix=matrix, frames=1, coils=coils, seed=seed).coil_maps
    op = MultiCoilNufft(torch.from_numpy(cine.traj), torch.from_numpy(maps))
    still_truth = np.repeat(truth[:1], frames, axis=0)
    with torch.no_grad():
        clean = op(torch.from_numpy(truth)).numpy()
        held = op(torch.from_numpy(still_truth)).numpy()
    return dataclasses.replace(cine, kspace=(held + (cine.kspace - clean)).astype(np.complex64)), still_truth


def motion_errors(u_mm: np.ndarray, matrix: int, frames: int, seed: int) -> dict:
    """EPE of a fitted displacement ``(F, 2, H, W)`` mm against the phantom's analytic motion."""
    truth = cardiac_phantom_motion(matrix, frames, seed=seed)
    true_mm = truth.displacement.transpose(0, 3, 1, 2) * (FOV_MM / matrix)
    myo = truth.myocardium.copy()
    myo[0] = False  # frame 0 is the reference: zero by construction on both sides
    still = truth.known & ~truth.myocardium
    err = np.linalg.norm(u_mm - true_mm, axis=1)
    size = np.linalg.norm(true_mm, axis=1)
    fitted = np.linalg.norm(u_mm, axis=1)
    return {"epe_myocardium_mm": float(err[myo].mean()), "no_motion_epe_mm": float(size[myo].mean()),
            "fitted_myocardium_mm": float(fitted[myo].mean()), "static_tissue_mm": float(fitted[still].mean()),
            "max_true_mm": float(size.max()), "pixel_mm": FOV_MM / matrix}


def fit(cine, args, extra=(), request: RenderRequest | None = None, keep_model: bool = False):
    cfg = load_config(args.preset, overrides=[f"device={args.device}", *args.set, *extra])
    t0 = time.perf_counter()
    res = reconstruct(cine, cfg, render=request, keep_model=keep_model)
    return res, time.perf_counter() - t0


def run_motion(args) -> dict:
    out = {}
    for still in (False, True):
        cine, truth = phantom_case(args.matrix, args.frames, args.coils, args.spokes, args.snr, args.seed, still)
        res, seconds = fit(cine, args, request=RenderRequest(motion=True, jacobian=True))
        e = motion_errors(res.motion, args.matrix, args.frames, args.seed)
        e.update(psnr=quality(res.images, truth).psnr, seconds=round(seconds, 1), steps=res.iterations)
        out["still" if still else "moving"] = e
        print(("still " if still else "moving") + ": " + ", ".join(f"{k} {v:.3g}" for k, v in e.items()))
    return out


def run_render(args) -> dict:
    from dainr.recon.rendering import render_slice

    n, f = args.matrix, args.frames
    out = {}
    cine, truth = phantom_case(n, f, args.coils, args.spokes, args.snr, args.seed)
    res, seconds = fit(cine, args, keep_model=True)
    fitted = res.fitted
    # (a) finer times: 2F − 1 frames over frames 0..F−1; the phantom's frame f is at phase f/F, so rendered frame k
    # (source position k/2) is the phantom at phase k/(2F), i.e. frame k of a 2F-frame phantom.
    fine = cardiac_phantom(matrix=n, frames=2 * f, coils=1, seed=args.seed).images[:2 * f - 1]
    t0 = time.perf_counter()
    finer = render_slice(fitted, RenderRequest(frames=2 * f - 1), (FOV_MM, FOV_MM)).images
    out["finer_times"] = {"psnr_between": quality(finer[1::2], fine[1::2]).psnr,
                          "psnr_acquired": quality(finer[0::2], truth).psnr,
                          "psnr_previous_frame_between": quality(finer[0::2][:-1], fine[1::2]).psnr,
                          "fit_seconds": round(seconds, 1), "render_seconds": round(time.perf_counter() - t0, 2)}
    # (b) twice the matrix: the phantom drawn at 2n over the same field of view (its pixel grid is centred on the
    # image centre, the networks' on pixel n/2: a quarter of a fine pixel apart, well inside the edge ramp)
    high = cardiac_phantom(matrix=2 * n, frames=f, coils=1, seed=args.seed).images
    t0 = time.perf_counter()
    twice = render_slice(fitted, RenderRequest(matrix=2 * n), (FOV_MM, FOV_MM)).images
    replicated = np.repeat(np.repeat(res.images, 2, axis=1), 2, axis=2)
    out["twice_the_matrix"] = {"psnr_rendered": quality(twice, high).psnr,
                               "psnr_pixel_replicated": quality(replicated, high).psnr,
                               "render_seconds": round(time.perf_counter() - t0, 2)}
    # (c) held-out frames: down_ratio 2 fits the even frames only and renders the others
    res, seconds = fit(cine, args, extra=["dainr.down_ratio=2"])
    kept = training_frames(f, 2)
    held = np.setdiff1d(np.arange(f), kept)
    out["held_out_frames"] = {"psnr_held_out": quality(res.images[held], truth[held]).psnr,
                              "psnr_fitted": quality(res.images[kept], truth[kept]).psnr,
                              "seconds": round(seconds, 1)}
    for k, v in out.items():
        print(f"{k}: " + ", ".join(f"{a} {b:.3g}" for a, b in v.items()))
    return out


def run_figure(args) -> None:
    """The fit's displacement at end-systole beside the phantom's analytic one, on one colour scale."""
    from dainr.preview import write_motion_overlay

    cine, truth = phantom_case(args.matrix, args.frames, args.coils, args.spokes, args.snr, args.seed)
    res, seconds = fit(cine, args, request=RenderRequest(motion=True))
    frame = args.frames // 2
    pixel = FOV_MM / args.matrix
    analytic = cardiac_phantom_motion(args.matrix, args.frames, seed=args.seed)
    true_mm = analytic.displacement[frame].transpose(2, 0, 1) * pixel
    panels = [(f"DA-INR fit, frame {frame} of 0-{args.frames - 1} (end-systole)", res.images[frame],
               res.motion[frame]),
              ("phantom truth and analytic motion, same frame", truth[frame], true_mm)]
    write_motion_overlay(args.out, panels, (pixel, pixel), step=max(args.matrix // 16, 2))
    print(f"wrote {args.out} (frame {frame}, end-systole; fit {res.iterations} steps, {seconds:.0f} s, "
          f"PSNR {quality(res.images, truth).psnr:.2f} dB)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("motion", "render", "figure"))
    p.add_argument("--matrix", type=int, default=64)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--spokes", type=int, default=21)
    p.add_argument("--snr", type=float, default=200.0)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "motion.png", help="figure: the PNG to write")
    p.add_argument("--json", type=Path, help="write the numbers here")
    args = p.parse_args()
    machine = f"{platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, " + (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} CPU threads")
    print(f"# {' '.join(sys.argv)}\n# {machine}")
    if args.what == "figure":
        run_figure(args)
        return
    numbers = run_motion(args) if args.what == "motion" else run_render(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": machine, args.what: numbers},
                                        indent=1))


if __name__ == "__main__":
    main()
