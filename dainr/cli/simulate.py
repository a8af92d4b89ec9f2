"""``dainr simulate``: write a radial cine as a complete ISMRMRD raw file, plus its ground truth.

Outputs follow :mod:`dainr.cli.outputs`: checked before any work, an existing file replaced only with
``--overwrite``, and an error leaves neither file behind.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

import numpy as np

from dainr.cli.outputs import Output, add_overwrite_argument, check_outputs
from dainr.errors import ConfigError
from dainr.physics.trajectory import TRAJECTORY_KINDS
from dainr.simulate import SOURCES, simulate


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("simulate", description="Simulate an undersampled radial cine from the built-in phantom or a "
                                   "real-data source (acdc, rat, cmrx: ../shared/cardiac_data) and write it as an "
                                   "ISMRMRD raw file.")
    p.add_argument("--source", choices=SOURCES, default="phantom", help="ground truth (default: phantom)")
    p.add_argument("--matrix", type=int, default=128, help="image matrix M (M×M, default 128)")
    p.add_argument("--frames", type=int, default=20, help="cine frames (default 20)")
    p.add_argument("--coils", type=int, default=8, help="receive coils (default 8)")
    p.add_argument("--spokes", type=int, default=13, help="spokes per frame (default 13)")
    p.add_argument("--snr", type=float, default=100.0,
                   help="max|k| / noise std per complex sample; 0 or inf = noiseless (default 100)")
    p.add_argument("--traj", choices=TRAJECTORY_KINDS, default="goldenangle",
                   help="goldenangle (θ_n = n·π/φ on the global spoke counter), uniform (θ = π·s/S per frame), "
                        "or tddip (the reference code's trajectory)")
    p.add_argument("--no-traj", action="store_true", help="omit acq.traj (readers compute it from the header)")
    p.add_argument("--slices", type=int, default=1, help="number of slices (default 1)")
    p.add_argument("--interleave", action="store_true", help="interleave slices frame by frame")
    p.add_argument("--realtime", action="store_true",
                   help="write a real-time stream: --frames × --spokes continuous golden-angle spokes per slice "
                        "with no phase index (idx.phase = 0, header phase limit 0); reconstruct it with "
                        "dainr recon --spokes-per-frame <--spokes> (the truth stays (frames, H, W))")
    p.add_argument("--oversampling", type=int, default=2, help="readout oversampling (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (phantom shape or real-data phase, noise)")
    p.add_argument("-o", "--output", required=True, type=Path, help="ISMRMRD raw file to write (.h5)")
    p.add_argument("--truth", type=Path, help="write the ground truth here (.npy, complex64: (frames, H, W) or "
                                              "(slices, frames, H, W))")
    add_overwrite_argument(p, "the raw file, the truth")
    return p


def _check(args: argparse.Namespace) -> None:
    for name, lo, hi in (("matrix", 16, 1024), ("frames", 1, 1000), ("coils", 1, 128), ("spokes", 1, 4096),
                         ("slices", 1, 256), ("oversampling", 1, 4)):
        v = getattr(args, name)
        if not lo <= v <= hi:
            raise ConfigError(f"--{name} {v} is out of range [{lo}, {hi}]")
    if args.snr < 0 or math.isnan(args.snr):
        raise ConfigError(f"--snr must be >= 0 (0 or inf = noiseless), got {args.snr}")
    if args.realtime and args.traj == "uniform":
        raise ConfigError("--realtime writes a continuous stream, whose angles must not repeat every frame: use "
                          "--traj goldenangle (or tddip)")
    check_outputs([Output(args.output, "-o")] + ([Output(args.truth, "--truth")] if args.truth else []),
                  overwrite=args.overwrite)


def run(args: argparse.Namespace) -> int:
    from dainr.mrd import build_header, write_raw
    from dainr.mrd.atomic import atomic_path

    _check(args)
    series = simulate(source=args.source, matrix=args.matrix, frames=args.frames, coils=args.coils,
                      spokes=args.spokes, snr=args.snr, trajectory=args.traj, slices=args.slices, seed=args.seed,
                      interleave=args.interleave, oversampling=args.oversampling)
    header_traj = "goldenangle" if args.traj == "goldenangle" else "radial"
    header = build_header(matrix=(args.matrix, args.matrix), fov_mm=series.slices[0].geometry.fov_mm,
                          n_coils=args.coils, trajectory=header_traj, n_frames=1 if args.realtime else args.frames,
                          n_slices=args.slices,
                          n_spokes_total_per_slice=args.frames * args.spokes, oversampling=args.oversampling,
                          trajectory_identifier="tddip" if args.traj == "tddip" else None)
    with contextlib.ExitStack() as stack:  # the truth waits under a temporary name until the raw file is written
        if args.truth:
            truth = series.truth if args.slices > 1 else series.truth[0]
            with open(stack.enter_context(atomic_path(args.truth)), "wb") as f:
                np.save(f, truth.astype(np.complex64))
        write_raw(args.output, header, series.slices, include_traj=not args.no_traj, noise=series.noise,
                  interleave=args.interleave, phase_index=not args.realtime)
    print(f"wrote {args.output}: {args.source}, {args.slices} slice(s) × {args.frames} frames × {args.spokes} "
          f"spokes × {args.coils} coils, {args.traj}{' (no traj)' if args.no_traj else ''}"
          f"{f', real-time (bin with --spokes-per-frame {args.spokes})' if args.realtime else ''}, "
          f"noise σ = {series.sigma:.3g}" + (f"; truth {args.truth}" if args.truth else ""))
    return 0
