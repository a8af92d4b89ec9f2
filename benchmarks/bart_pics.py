"""BART ``pics`` with temporal total variation + spatial wavelets on the same prepared radial data as our methods (CPU),
its weights chosen two ways: per cell against the truth (the oracle, an upper bound) and on a tuning set (fair).

The data go through ``dainr.prep.prepare`` (prewhitening, intensity scaling, coil maps) exactly as for CG-SENSE and
DA-INR; BART gets that k-space, the trajectory in its units (k-space pixels, ``traj·N``) and our coil maps (maps
policy: the Walsh maps the shipped presets estimate from the data, for both rows; never the true maps). The weights
are λ_T of the temporal TV and λ_W of the spatial Daubechies wavelets (``-R T:1024:0:λ_T -R W:3:0:λ_W``, λ_W = 0
drops the wavelet term), on the half-decade grid ``LAMBDA_T`` × ``LAMBDA_W``; every output is scored by
:func:`benchcases.score` (the same support mask and normalisation as every other method).

Search: a coordinate ascent on the grid (:func:`climb`; it stops where none of the four neighbours is better), every
pics run cached in a JSON file so that a stopped run resumes and no pair is run twice on a case.

* **tuned** (fair): for each tuning group and each cell (rate, noise level), the pair with the highest mean PSNR over
  the group's cases at that cell; then that pair on the other groups' cases at the same cell (their test score): the
  test cases never influence it. The climb starts from (0.01, 0.001) at 21 spokes, then from the group's optimum at
  the previous rate and the same noise level.
* **oracle**: per case, the climb on the case's own PSNR against its truth, started from its best cached pair.

Orientation: BART arrays are column-major with dimension 0 = x. Our images are ``[y, x]``; the conversion is a
transpose, checked once per case against our own adjoint (``bart nufft -a`` vs ``MultiCoilNufft.adjoint``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchcases import Case, case_list, cell, load_case, score
from dainr.prep import prepare
from dainr.recon.operators import build_problem

LAMBDA_T = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
LAMBDA_W = (0.0, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
START = (LAMBDA_T.index(0.01), LAMBDA_W.index(0.001))
ITERATIONS = 60


def write_cfl(base: Path, arr: np.ndarray) -> None:
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(str(d) for d in arr.shape) + "\n")
    arr.astype(np.complex64).ravel(order="F").tofile(base.with_suffix(".cfl"))


def read_cfl(base: Path) -> np.ndarray:
    dims = [int(d) for d in base.with_suffix(".hdr").read_text().splitlines()[1].split()]
    data = np.fromfile(base.with_suffix(".cfl"), dtype=np.complex64)
    return data.reshape(dims, order="F")


def to_bart(prepared, work: Path) -> None:
    """Write ``traj``, ``ksp`` and ``sens`` cfl files of a prepared cine into ``work``."""
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


def pics(work: Path, lam: float, lam_w: float = 0.0, iters: int = ITERATIONS) -> np.ndarray:
    """``bart pics`` on the cfl files in ``work``: ``(frames, H, W)`` complex64 in the prepared data's units."""
    out = work / "pics"
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


def climb(value: Callable[[int, int], float], start: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int]:
    """Coordinate ascent on a 2-D index grid of ``shape``: from ``start``, along each axis in each direction step while
    ``value`` improves; repeat until a whole pass moves nowhere. Ends at a point none of whose four neighbours is
    better (ties keep the current point); one new ``value`` per step along a line (the caller caches)."""
    cur, best = start, value(*start)
    moved = True
    while moved:
        moved = False
        for axis in (0, 1):
            for step in (1, -1):
                while True:
                    nxt = (cur[0] + step, cur[1]) if axis == 0 else (cur[0], cur[1] + step)
                    if not (0 <= nxt[0] < shape[0] and 0 <= nxt[1] < shape[1]):
                        break
                    v = value(*nxt)
                    if v <= best:
                        break
                    cur, best, moved = nxt, v, True
    return cur


class BartRuns:
    """pics runs on the cases of a folder, cached by ``(case, λ_T, λ_W)`` in ``cache`` (JSON, written after each run).

    ``work``: a folder for the cfl files (one sub-folder per case, kept for the whole search).
    """

    def __init__(self, cases_dir: Path, cache: Path, work: Path, log: Callable[[str], None] = print) -> None:
        self.cases_dir, self.cache, self.work, self.log = cases_dir, cache, work, log
        self.results: dict[str, dict] = json.loads(cache.read_text()) if cache.is_file() else {}
        self.loaded: dict[str, tuple[Case, object, Path]] = {}

    @staticmethod
    def key(name: str, lam_t: float, lam_w: float) -> str:
        return f"{name} {lam_t:g} {lam_w:g}"

    def _case(self, meta: dict) -> tuple[Case, object, Path]:
        if meta["name"] not in self.loaded:
            case = load_case(self.cases_dir, meta)
            prepared = prepare(case.cine)
            work = self.work / meta["name"]
            work.mkdir(parents=True, exist_ok=True)
            to_bart(prepared, work)
            check_orientation(prepared, work)
            self.loaded[meta["name"]] = (case, prepared, work)
        return self.loaded[meta["name"]]

    def run(self, meta: dict, lam_t: float, lam_w: float) -> dict:
        """``{"psnr", "ssim", "seconds"}`` of pics at ``(λ_T, λ_W)`` on the case ``meta`` (cached)."""
        k = self.key(meta["name"], lam_t, lam_w)
        if k not in self.results:
            case, prepared, work = self._case(meta)
            t0 = time.perf_counter()
            img = pics(work, lam_t, lam_w) * prepared.scale
            sec = time.perf_counter() - t0
            q = score(img, case)
            self.results[k] = {"psnr": round(q.psnr, 3), "ssim": round(q.ssim, 4), "seconds": round(sec, 1)}
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            self.cache.write_text(json.dumps(self.results, indent=0))
            self.log(f"{k}: {q.psnr:.2f} dB {q.ssim:.4f} ({sec:.1f} s)")
        return self.results[k]

    def value(self, metas: list[dict]) -> Callable[[int, int], float]:
        """Mean PSNR over ``metas`` at grid point ``(i, j)``."""
        return lambda i, j: float(np.mean([self.run(m, LAMBDA_T[i], LAMBDA_W[j])["psnr"] for m in metas]))

    def best_cached(self, meta: dict) -> tuple[int, int]:
        """The grid point with the highest cached PSNR on ``meta`` (``START`` when none is cached)."""
        done = [(self.results[self.key(meta["name"], lt, lw)]["psnr"], (i, j)) for i, lt in enumerate(LAMBDA_T)
                for j, lw in enumerate(LAMBDA_W) if self.key(meta["name"], lt, lw) in self.results]
        return max(done)[1] if done else START


def _row(meta: dict, method: str, lam_t: float, lam_w: float, res: dict, **extra) -> dict:
    return {"case": meta["name"], "source": meta["source"], "spokes": meta["spokes"], "snr": meta["snr"],
            "group": meta["group"], "method": method, "psnr": res["psnr"], "ssim": res["ssim"],
            "seconds": res["seconds"], "lambda_t": lam_t, "lambda_w": lam_w, "device": "cpu", **extra}


def run_bart(cases_dir: Path, cache: Path, work: Path, tune_groups: list[str], oracle: bool = True,
             only=None) -> dict:
    """Tune on each group of ``tune_groups`` (test on all other groups), then the oracle per case.

    Returns ``{"tuning": [...], "rows": [...]}``: one tuning entry per group and cell (the chosen pair, the group's
    mean PSNR/SSIM there); rows ``bart-tuned`` (with ``tuned_on``) for the test cases of each tuning group and
    ``bart-oracle`` for every case when ``oracle``.
    """
    if shutil.which("bart") is None:
        raise SystemExit("bart not found: apt-get install bart")
    runs = BartRuns(cases_dir, cache, work, log=lambda s: print(s, flush=True))
    cases = case_list(cases_dir, only=only)
    shape = (len(LAMBDA_T), len(LAMBDA_W))
    tuning, rows = [], []
    for group in tune_groups:
        tune = [c for c in cases if c["group"] == group]
        previous: dict[float, tuple[int, int]] = {}  # per noise level, the optimum at the previous (higher) rate
        for key in sorted({cell(c) for c in tune}, key=lambda k: (k[0], -k[1])):
            metas = [c for c in tune if cell(c) == key]
            i, j = climb(runs.value(metas), previous.get(key[0], START), shape)
            previous[key[0]] = (i, j)
            lt, lw = LAMBDA_T[i], LAMBDA_W[j]
            res = [runs.run(m, lt, lw) for m in metas]
            tuning.append({"group": group, "snr": key[0], "spokes": key[1], "lambda_t": lt, "lambda_w": lw,
                           "psnr": round(float(np.mean([r["psnr"] for r in res])), 3),
                           "ssim": round(float(np.mean([r["ssim"] for r in res])), 4),
                           "cases": [m["name"] for m in metas], "edge": i in (0, shape[0] - 1) or j == shape[1] - 1})
            for m in (c for c in cases if c["group"] != group and cell(c) == key):
                rows.append(_row(m, "bart-tuned", lt, lw, runs.run(m, lt, lw), tuned_on=group))
    if oracle:
        for m in cases:
            i, j = climb(runs.value([m]), runs.best_cached(m), shape)
            rows.append(_row(m, "bart-oracle", LAMBDA_T[i], LAMBDA_W[j], runs.run(m, LAMBDA_T[i], LAMBDA_W[j]),
                             edge=i in (0, shape[0] - 1) or j == shape[1] - 1))
    return {"grid": {"lambda_t": LAMBDA_T, "lambda_w": LAMBDA_W, "iterations": ITERATIONS}, "tuning": tuning,
            "rows": rows, "pics_runs": len(runs.results)}
