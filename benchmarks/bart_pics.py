"""BART ``pics`` with temporal total variation + spatial wavelets on the same prepared radial data as our methods (CPU).

The data go through ``dainr.prep.prepare`` (prewhitening, intensity scaling, coil maps) exactly as for CG-SENSE and
DA-INR; BART gets that k-space, the trajectory in its units (k-space pixels, ``traj·N``) and our coil maps. The two
weights (λ_T of the temporal TV, λ_W of the spatial Daubechies wavelets, ``-R T:1024:0:λ_T -R W:3:0:λ_W``) are tuned
per rate and noise level on a separate case (the ``tune`` role: another phantom), never on the test case: λ_T over
``LAMBDAS`` with λ_W = 0, then λ_W over ``WAVELET_LAMBDAS`` at that λ_T.

Orientation: BART arrays are column-major with dimension 0 = x. Our images are ``[y, x]``; the conversion is a
transpose, checked once per run against our own adjoint (``bart nufft -a`` vs ``MultiCoilNufft.adjoint``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dainr.metrics import quality
from dainr.mrd import read_raw
from dainr.prep import prepare
from dainr.recon.operators import build_problem

LAMBDAS = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
WAVELET_LAMBDAS = (0.0003, 0.001, 0.003, 0.01, 0.03)


def write_cfl(base: Path, arr: np.ndarray) -> None:
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(str(d) for d in arr.shape) + "\n")
    arr.astype(np.complex64).ravel(order="F").tofile(base.with_suffix(".cfl"))


def read_cfl(base: Path) -> np.ndarray:
    dims = [int(d) for d in base.with_suffix(".hdr").read_text().splitlines()[1].split()]
    data = np.fromfile(base.with_suffix(".cfl"), dtype=np.complex64)
    return data.reshape(dims, order="F")


def to_bart(prepared, work: Path) -> tuple[Path, Path, Path]:
    cine = prepared.cine
    f, c, s, n = cine.kspace.shape
    h, w = cine.matrix
    traj = np.zeros((3, n, s, 1, 1, 1, 1, 1, 1, 1, f), np.complex64)
    traj[0] = (cine.traj[..., 0] * w).transpose(2, 1, 0)[:, :, None, None, None, None, None, None, None, :]
    traj[1] = (cine.traj[..., 1] * h).transpose(2, 1, 0)[:, :, None, None, None, None, None, None, None, :]
    ksp = cine.kspace.transpose(3, 2, 1, 0)[None, :, :, :, None, None, None, None, None, None, :]
    sens = prepared.coil_maps.transpose(2, 1, 0)[:, :, None, :]  # (x, y, 1, coils)
    for name, arr in (("traj", traj), ("ksp", ksp), ("sens", sens)):
        write_cfl(work / name, arr)
    return work / "traj", work / "ksp", work / "sens"


def pics(work: Path, lam: float, lam_w: float = 0.0, iters: int = 60) -> np.ndarray:
    out = work / ("pics_" + f"{lam:g}_{lam_w:g}".replace(".", "p").replace("-", "m"))
    reg = ["-R", f"T:1024:0:{lam}"] + (["-R", f"W:3:0:{lam_w}"] if lam_w > 0 else [])
    subprocess.run(["bart", "pics", "-S", "-i", str(iters), *reg, "-t", str(work / "traj"),
                    str(work / "ksp"), str(work / "sens"), str(out)], check=True, capture_output=True)
    img = read_cfl(out)  # (x, y, 1, ..., frames)
    return np.ascontiguousarray(img.reshape(img.shape[0], img.shape[1], -1).transpose(2, 1, 0))


def check_orientation(prepared, work: Path) -> None:
    """``bart nufft -a`` must match our adjoint after the [x, y] -> [y, x] transpose."""
    subprocess.run(["bart", "nufft", "-a", str(work / "traj"), str(work / "ksp"), str(work / "adj")], check=True,
                   capture_output=True)
    adj_b = read_cfl(work / "adj")  # (x, y, 1, coils, ..., frames)
    adj_b = adj_b.reshape(adj_b.shape + (1,) * (11 - adj_b.ndim))
    b0 = adj_b[:, :, 0, 0, 0, 0, 0, 0, 0, 0, 0].T
    prob = build_problem(prepared.cine, np.ones((1, *prepared.cine.matrix), np.complex64), torch.device("cpu"))
    ours = prob.op.adjoint_coils(torch.as_tensor(prepared.cine.kspace[:1, :1]), torch.tensor([0]))[0, 0].numpy()
    corr = abs(np.vdot(b0, ours)) / (np.linalg.norm(b0) * np.linalg.norm(ours))
    if corr < 0.95:
        raise RuntimeError(f"BART adjoint does not match ours (correlation {corr:.3f}): convention mismatch")


def run_bart(cases_dir: Path, cases: list[dict]) -> list[dict]:
    if shutil.which("bart") is None:
        raise SystemExit("bart not found: apt-get install bart")
    rows, chosen = [], {}
    for role in ("tune", "test"):
        for case in [c for c in cases if c["role"] == role]:
            series = read_raw(cases_dir / case["raw"])
            truth = np.load(cases_dir / case["truth"])
            prepared = prepare(series.slices[0])
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                to_bart(prepared, work)
                check_orientation(prepared, work)
                key = (case["spokes"], case["snr"])

                def score(lam: float, lam_w: float) -> tuple:
                    t0 = time.perf_counter()
                    img = pics(work, lam, lam_w) * prepared.scale
                    sec = time.perf_counter() - t0
                    q = quality(img, truth)
                    print(f"{case['name']} λ_T={lam:g} λ_W={lam_w:g}: {q.psnr:.2f} dB {q.ssim:.4f} ({sec:.1f} s)",
                          flush=True)
                    return q.psnr, q.ssim, lam, lam_w, sec

                if role == "tune":
                    best = max((score(lam, 0.0) for lam in LAMBDAS), key=lambda r: r[0])
                    best = max([best] + [score(best[2], lw) for lw in WAVELET_LAMBDAS], key=lambda r: r[0])
                    chosen[key] = best[2:4]
                else:
                    best = score(*chosen[key])
                    rows.append({"case": case["name"], "source": case["source"], "spokes": case["spokes"],
                                 "snr": case["snr"], "method": "bart-pics-tv-wavelet", "psnr": round(best[0], 3),
                                 "ssim": round(best[1], 4), "seconds": round(best[4], 2), "lambda_t": best[2],
                                 "lambda_w": best[3], "device": "cpu"})
    return rows
