"""The benchmark's cases and how every method is scored on them (one place for all methods).

A case is one simulated radial cine (``dainr simulate``) at one rate and noise level; cases come in named groups.
The issue-22 set (the default) has two groups of two anatomies each, for two-fold cross-validation: A = the ACDC cine
(seed 0) and the analytic phantom (seed 0), B = the rat cine (seed 1) and the moving CMRxRecon frame (seed 2). The
groups share no image, coil layout, phase or noise draw (the seed sets the phase, the noise and the coil-noise
covariance; the real sources turn the coil maps differently). The issue-8 set is
``acdc:0:test,phantom:11:tune,phantom:0:test``.

Scoring (:func:`score`): PSNR/SSIM on per-frame max-normalised magnitude (:func:`dainr.metrics.quality`) after the
output of **every** method is multiplied by the same mask, the coil-map support of the standard preparation
(``dainr.prep.prepare`` with its defaults: the maps BART receives and DA-INR's presets use; DA-INR already zeroes its
output outside it). The truth is never masked.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dainr.cli import main as dainr_main  # noqa: E402
from dainr.data import CineData  # noqa: E402
from dainr.metrics import Quality, quality  # noqa: E402
from dainr.mrd import read_raw  # noqa: E402
from dainr.prep import prepare  # noqa: E402

RATES = (21, 13, 8, 5)
#: ``SOURCE:SEED:GROUP`` of the issue-22 cross-validation set.
CV_SOURCES = "acdc:0:A,phantom:0:A,rat:1:B,cmrx:2:B"


def parse_sources(text: str) -> list[tuple[str, int, str]]:
    """``"acdc:0:A,rat:1:B"`` -> ``[("acdc", 0, "A"), ("rat", 1, "B")]``."""
    out = []
    for item in filter(None, text.split(",")):
        parts = item.split(":")
        if len(parts) != 3 or not parts[1].lstrip("-").isdigit() or not parts[2]:
            raise SystemExit(f"bad source {item!r}: write SOURCE:SEED:GROUP, e.g. rat:1:B")
        out.append((parts[0], int(parts[1]), parts[2]))
    return out


def case_frames(source: str, frames: int) -> int:
    """The phantom gets half the frames (at least 8), as in the cases BART first ran on (issue 8)."""
    return max(frames // 2, 8) if source == "phantom" else frames


def _simulate(args: list[str]) -> int:
    return dainr_main(args)


def _worker_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def make_cases(out: Path, snrs: list[float], matrix: int, frames: int, coils: int, sources: str = CV_SOURCES,
               jobs: int = 1) -> None:
    """Simulate every source × rate × SNR into ``out`` (``jobs`` processes at a time) and list them in
    ``out/cases.json``."""
    out.mkdir(parents=True, exist_ok=True)
    cases, calls = [], []
    for snr in snrs:
        for spokes in RATES:
            for source, seed, group in parse_sources(sources):
                name = f"{source}_s{spokes}_snr{snr:g}_seed{seed}"
                f = case_frames(source, frames)
                # The truth depends only on the source and seed: one file for all rates keeps the folder small.
                raw, truth = out / f"{name}.h5", out / f"{source}_seed{seed}_f{f}_truth.npy"
                first = all(c["truth"] != truth.name for c in cases)  # one writer per truth file
                calls.append(["simulate", "--source", source, "--matrix", str(matrix), "--frames", str(f),
                              "--coils", str(coils), "--spokes", str(spokes), "--snr", str(snr), "--seed",
                              str(seed), "-o", str(raw), "-q", "--overwrite", *(["--truth", str(truth)] if first else [])])
                cases.append({"name": name, "source": source, "spokes": spokes, "snr": snr, "group": group,
                              "raw": raw.name, "truth": truth.name})
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, initializer=_worker_threads, initargs=(threads,)) as pool:
            codes = list(pool.map(_simulate, calls))
    else:
        codes = [_simulate(c) for c in calls]
    if any(codes):
        raise SystemExit(max(codes))
    (out / "cases.json").write_text(json.dumps(cases, indent=1))


def case_list(cases_dir: Path, groups: set[str] | None = None, only=None) -> list[dict]:
    """The cases of ``cases_dir/cases.json`` in ``groups`` (None = all) passing ``only`` (see :func:`name_filter`)."""
    cases = json.loads((cases_dir / "cases.json").read_text())
    chosen = [c for c in cases if (groups is None or c["group"] in groups) and (only is None or only(c))]
    if not chosen:
        have = ", ".join(sorted({c["group"] for c in cases}))
        raise SystemExit(f"no case of group(s) {', '.join(sorted(groups or []))} matches in {cases_dir}/cases.json "
                         f"(its groups: {have})")
    return chosen


def name_filter(patterns: str):
    """A case filter from comma-separated fnmatch patterns on the case name (None = every case)."""
    pats = [x for x in patterns.split(",") if x]
    return (lambda case: any(fnmatch.fnmatch(case["name"], x) for x in pats)) if pats else None


def cell(case: dict) -> tuple[float, int]:
    """The benchmark cell of a case, apart from its anatomy: ``(snr, spokes)``."""
    return case["snr"], case["spokes"]



def add_size_arguments(p, matrix: int = 128, frames: int = 30, coils: int = 8, spokes: int = 13) -> None:
    """``--matrix --frames --coils --spokes`` of a simulated case (defaults: the issue's exam slice, 128² × 30 frames ×
    8 coils × 13 spokes), the same in every benchmark that simulates one."""
    p.add_argument("--matrix", type=int, default=matrix)
    p.add_argument("--frames", type=int, default=frames)
    p.add_argument("--coils", type=int, default=coils)
    p.add_argument("--spokes", type=int, default=spokes)

@dataclass
class Case:
    """A loaded case: ``meta`` (its cases.json entry), ``cine`` (slice 0), ``truth`` ``(frames, H, W)`` and the
    scoring mask ``support`` ``(H, W)`` bool."""

    meta: dict
    cine: CineData
    truth: np.ndarray
    support: np.ndarray


def data_support(cine: CineData) -> np.ndarray:
    """``(H, W)`` bool: where the coil maps of the standard preparation are non-zero (from the data, not the truth)."""
    return np.abs(prepare(cine).coil_maps).sum(0) > 0


def load_case(cases_dir: Path, meta: dict) -> Case:
    cine = read_raw(cases_dir / meta["raw"]).slices[0]
    return Case(meta, cine, np.load(cases_dir / meta["truth"]), data_support(cine))


def score(images: np.ndarray, case: Case) -> Quality:
    """The one scoring rule of the benchmark: ``images`` ``(frames, H, W)`` masked by the case's support, then
    PSNR/SSIM against the truth on per-frame max-normalised magnitude."""
    return quality(images, case.truth, support=case.support)
