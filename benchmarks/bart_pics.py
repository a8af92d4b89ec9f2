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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
    """``bart pics`` on the cfl files in ``work``: ``(frames, H, W)`` complex64 in the prepared data's units (its output
    file is named by the weights, so that several runs on one case can go at once)."""
    out = work / f"pics_{lam:g}_{lam_w:g}".replace(".", "p")  # no dot: the cfl suffixes follow
    reg = ["-R", f"T:1024:0:{lam}"] + (["-R", f"W:3:0:{lam_w}"] if lam_w > 0 else [])
    subprocess.run(["bart", "pics", "-S", "-i", str(iters), *reg, "-t", str(work / "traj"),
                    str(work / "ksp"), str(work / "sens"), str(out)], check=True, capture_output=True)
    img = read_cfl(out)  # (x, y, 1, ..., frames)
    for suffix in (".cfl", ".hdr"):
        out.with_suffix(suffix).unlink(missing_ok=True)
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


def read_cache(cache: Path) -> dict[str, dict]:
    """Every run cached in the folder ``cache``: per-run files (``{"key", "result"}``) and merged files
    (``{"runs": {key: result}}``, see :func:`merge_cache`)."""
    results: dict[str, dict] = {}
    for f in sorted(cache.glob("*.json")):
        doc = json.loads(f.read_text())
        results.update(doc["runs"] if "runs" in doc else {doc["key"]: doc["result"]})
    return results


def merge_cache(cache: Path, out: Path) -> int:
    """Write every run cached in the folder ``cache`` into the one file ``out`` (e.g. to keep it with the results; put
    it in a cache folder to resume from it); returns the number of runs."""
    results = read_cache(cache)
    out.write_text(json.dumps({"runs": dict(sorted(results.items()))}, indent=0))
    return len(results)


class Deadline(Exception):
    """The search's time budget is spent: no new pics run starts (the cache keeps every finished one)."""


class BartRuns:
    """pics runs on the cases of a folder, each cached as one JSON file in the folder ``cache`` (named by case and
    weights), so that runs made on several machines merge by copying files and a stopped search resumes.

    ``work``: a folder for the cfl files (one sub-folder per case, kept for the whole search). ``jobs``: pics runs
    at a time (threads may ask for more; the rest wait). ``deadline``: a ``time.monotonic()`` after which no run
    starts (:class:`Deadline` is raised instead); None = none.
    """

    def __init__(self, cases_dir: Path, cache: Path, work: Path, log: Callable[[str], None] = print, jobs: int = 1,
                 deadline: float | None = None) -> None:
        self.cases_dir, self.cache, self.work, self.log = cases_dir, cache, work, log
        self.cache.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, dict] = read_cache(self.cache)
        self.loaded: dict[str, tuple[Case, object, Path]] = {}
        self.slots = threading.Semaphore(max(1, jobs))
        self.lock = threading.Lock()
        self.case_locks: dict[str, threading.Lock] = {}
        self.deadline = deadline

    @staticmethod
    def key(name: str, lam_t: float, lam_w: float) -> str:
        return f"{name} {lam_t:g} {lam_w:g}"

    def _case(self, meta: dict) -> tuple[Case, object, Path]:
        with self.lock:
            lock = self.case_locks.setdefault(meta["name"], threading.Lock())
        with lock:
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
        if k in self.results:
            return self.results[k]
        case, prepared, work = self._case(meta)
        with self.slots:
            if k in self.results:  # another thread ran it while this one waited
                return self.results[k]
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise Deadline(k)
            t0 = time.perf_counter()
            img = pics(work, lam_t, lam_w) * prepared.scale
            sec = time.perf_counter() - t0
        q = score(img, case)
        res = {"psnr": round(q.psnr, 3), "ssim": round(q.ssim, 4), "seconds": round(sec, 1)}
        tmp = self.cache / f".{k.replace(' ', '__')}.tmp"
        tmp.write_text(json.dumps({"key": k, "result": res}))
        tmp.replace(self.cache / f"{k.replace(' ', '__')}.json")
        with self.lock:
            self.results[k] = res
        self.log(f"{k}: {q.psnr:.2f} dB {q.ssim:.4f} ({sec:.1f} s)")
        return res

    def value(self, metas: list[dict]) -> Callable[[int, int], float]:
        """Mean PSNR over ``metas`` at grid point ``(i, j)`` (the cases' runs go at once)."""
        def mean_psnr(i: int, j: int) -> float:
            with ThreadPoolExecutor(len(metas)) as pool:
                res = list(pool.map(lambda m: self.run(m, LAMBDA_T[i], LAMBDA_W[j]), metas))
            return float(np.mean([r["psnr"] for r in res]))
        return mean_psnr

    def best_cached(self, meta: dict) -> tuple[int, int]:
        """The grid point with the highest cached PSNR on ``meta`` (``START`` when none is cached)."""
        done = [(self.results[self.key(meta["name"], lt, lw)]["psnr"], (i, j)) for i, lt in enumerate(LAMBDA_T)
                for j, lw in enumerate(LAMBDA_W) if self.key(meta["name"], lt, lw) in self.results]
        return max(done)[1] if done else START


def _row(meta: dict, method: str, lam_t: float, lam_w: float, res: dict, **extra) -> dict:
    return {"case": meta["name"], "source": meta["source"], "spokes": meta["spokes"], "snr": meta["snr"],
            "group": meta["group"], "method": method, "psnr": res["psnr"], "ssim": res["ssim"],
            "seconds": res["seconds"], "lambda_t": lam_t, "lambda_w": lam_w, "device": "cpu", **extra}


def _all(tasks: list[Callable[[], object]]) -> list[object]:
    """Run the ``tasks`` in threads at once (their pics runs share :class:`BartRuns`' slots); results in order, or
    :class:`Deadline` raised after all of them ended when any ran out of time."""
    with ThreadPoolExecutor(max(1, len(tasks))) as pool:
        futures = [pool.submit(t) for t in tasks]
        out, late = [], None
        for f in futures:
            try:
                out.append(f.result())
            except Deadline as e:
                late, _ = e, out.append(None)
    if late is not None:
        raise late
    return out


def run_bart(cases_dir: Path, cache: Path, work: Path, tune_groups: list[str], oracle: bool = True,
             only=None, jobs: int = 1, budget: float = 0) -> dict:
    """Tune on each group of ``tune_groups`` (test on all other groups), then the oracle per case.

    All climbs of a phase run at once (threads, ``jobs`` pics runs at a time): first the tuning climbs (one per group
    and cell, on the mean PSNR over the group's cases in that cell, from ``START``), then the oracle climbs (one per
    case, from its best cached pair). With ``budget`` > 0 no pics run starts after that many seconds: the result is
    then marked ``complete: false`` (its rows hold what finished) and a later call resumes from the cache.

    Returns ``{"tuning": [...], "rows": [...], "complete": bool}``: one tuning entry per group and cell (the chosen
    pair, the group's mean PSNR/SSIM there); rows ``bart-tuned`` (with ``tuned_on``) for the test cases of each tuning
    group and ``bart-oracle`` for every case when ``oracle``.
    """
    if shutil.which("bart") is None:
        raise SystemExit("bart not found: apt-get install bart")
    deadline = time.monotonic() + budget if budget > 0 else None
    runs = BartRuns(cases_dir, cache, work, log=lambda s: print(s, flush=True), jobs=jobs, deadline=deadline)
    cases = case_list(cases_dir, only=only)
    shape = (len(LAMBDA_T), len(LAMBDA_W))
    tuning, rows, complete = [], [], True

    def tune_cell(group: str, key: tuple[float, int]) -> None:
        metas = [c for c in cases if c["group"] == group and cell(c) == key]
        i, j = climb(runs.value(metas), START, shape)
        lt, lw = LAMBDA_T[i], LAMBDA_W[j]
        res = [runs.run(m, lt, lw) for m in metas]
        tests = [m for m in cases if m["group"] != group and cell(m) == key]
        tuning.append({"group": group, "snr": key[0], "spokes": key[1], "lambda_t": lt, "lambda_w": lw,
                       "psnr": round(float(np.mean([r["psnr"] for r in res])), 3),
                       "ssim": round(float(np.mean([r["ssim"] for r in res])), 4),
                       "cases": [m["name"] for m in metas], "edge": i in (0, shape[0] - 1) or j == shape[1] - 1})
        rows.extend(_row(m, "bart-tuned", lt, lw, runs.run(m, lt, lw), tuned_on=group) for m in tests)

    def oracle_case(m: dict) -> None:
        i, j = climb(runs.value([m]), runs.best_cached(m), shape)
        rows.append(_row(m, "bart-oracle", LAMBDA_T[i], LAMBDA_W[j], runs.run(m, LAMBDA_T[i], LAMBDA_W[j]),
                         edge=i in (0, shape[0] - 1) or j == shape[1] - 1))

    phases = [[(lambda g=g, k=k: tune_cell(g, k)) for g in tune_groups
               for k in sorted({cell(c) for c in cases if c["group"] == g}, key=lambda k: (k[0], -k[1]))]]
    if oracle:
        phases.append([(lambda m=m: oracle_case(m)) for m in cases])
    for tasks in phases:
        try:
            _all(tasks)
        except Deadline:
            complete = False
            break
    tuning.sort(key=lambda t: (t["group"], t["snr"], -t["spokes"]))
    rows.sort(key=lambda r: (r["method"], r["case"], r.get("tuned_on", "")))
    return {"grid": {"lambda_t": LAMBDA_T, "lambda_w": LAMBDA_W, "iterations": ITERATIONS}, "tuning": tuning,
            "rows": rows, "pics_runs": len(runs.results), "complete": complete}


def cached_doc(cases_dir: Path, cache: Path, tune_groups: list[str] | None = None, only=None) -> dict:
    """BART's rows from the cache alone (no pics run), for a search that ran out of time.

    Each tuning climb of :func:`run_bart` is replayed on the cached runs (the same deterministic climb from
    ``START``); a (group, cell) whose climb needs a pair never run is left out. Rows: ``bart-tuned`` for the other
    groups' cases at each replayed pair when that pair was run on them, and ``bart-oracle`` as each case's **best
    searched pair** (a lower bound of the per-case optimum when its climb did not finish; ``searched`` says how many
    pairs were run on the case)."""
    results, run_key = read_cache(cache), BartRuns.key
    cases = case_list(cases_dir, only=only)
    shape = (len(LAMBDA_T), len(LAMBDA_W))

    def cached(metas: list[dict]) -> Callable[[int, int], float]:
        return lambda i, j: float(np.mean([results[run_key(m["name"], LAMBDA_T[i], LAMBDA_W[j])]["psnr"]
                                           for m in metas]))

    tuning, rows = [], []
    for g in tune_groups or sorted({c["group"] for c in cases}):
        for key in sorted({cell(c) for c in cases if c["group"] == g}, key=lambda k: (k[0], -k[1])):
            metas = [c for c in cases if c["group"] == g and cell(c) == key]
            try:
                i, j = climb(cached(metas), START, shape)
            except KeyError:  # the climb went on past what was run
                continue
            lt, lw = LAMBDA_T[i], LAMBDA_W[j]
            res = [results[run_key(m["name"], lt, lw)] for m in metas]
            tuning.append({"group": g, "snr": key[0], "spokes": key[1], "lambda_t": lt, "lambda_w": lw,
                           "psnr": round(float(np.mean([r["psnr"] for r in res])), 3),
                           "ssim": round(float(np.mean([r["ssim"] for r in res])), 4),
                           "cases": [m["name"] for m in metas], "edge": i in (0, shape[0] - 1) or j == shape[1] - 1})
            for m in (c for c in cases if c["group"] != g and cell(c) == key):
                k = run_key(m["name"], lt, lw)
                if k in results:
                    rows.append(_row(m, "bart-tuned", lt, lw, results[k], tuned_on=g))
    for m in cases:
        done = [(lt, lw) for lt in LAMBDA_T for lw in LAMBDA_W if run_key(m["name"], lt, lw) in results]
        if done:
            lt, lw = max(done, key=lambda p: results[run_key(m["name"], *p)]["psnr"])
            rows.append(_row(m, "bart-oracle", lt, lw, results[run_key(m["name"], lt, lw)],
                             searched=len(done)))
    return {"grid": {"lambda_t": LAMBDA_T, "lambda_w": LAMBDA_W, "iterations": ITERATIONS}, "tuning": tuning,
            "rows": rows, "pics_runs": len(results), "complete": False,
            "oracle": "best of the pairs searched per case (the climbs did not all finish)"}
