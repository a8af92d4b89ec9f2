"""The benchmark's BART weight search and its table (``benchmarks/bart_pics.py``, ``benchmarks/table.py``): the climb
finds the grid's best point, and the goal column compares the seed-mean with the oracle + 1 dB and its SSIM."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bart_pics import climb  # noqa: E402
from table import cv_table  # noqa: E402


def test_climb_reaches_the_peak_and_evaluates_few_points():
    seen = []

    def value(i, j):
        seen.append((i, j))
        return -((i - 6) ** 2) - 2 * (j - 1) ** 2

    assert climb(value, (3, 4), (10, 8)) == (6, 1)
    assert len(set(seen)) < 30  # far fewer than the 80 grid points
    assert climb(lambda i, j: 0.0, (2, 2), (5, 5)) == (2, 2)  # a plateau keeps the start


def _row(case, source, group, method, psnr, ssim, **extra):
    return {"case": case, "source": source, "spokes": 8, "snr": 100.0, "group": group, "method": method,
            "psnr": psnr, "ssim": ssim, "seconds": 3.0, **extra}


def test_table_goal_uses_the_seed_mean_against_the_oracle():
    bart = {"tuning": [{"group": g, "snr": 100.0, "spokes": 8, "lambda_t": 0.01, "lambda_w": 0.001, "psnr": 25.0,
                        "ssim": 0.8} for g in ("A", "B")],
            "rows": [_row("acdc8", "acdc", "A", "bart-oracle", 24.0, 0.80, lambda_t=0.03, lambda_w=0.001),
                     _row("acdc8", "acdc", "A", "bart-tuned", 23.0, 0.78, lambda_t=0.01, lambda_w=0.0, tuned_on="B"),
                     _row("rat8", "rat", "B", "bart-oracle", 30.0, 0.90, lambda_t=0.01, lambda_w=0.003),
                     _row("rat8", "rat", "B", "bart-tuned", 29.0, 0.90, lambda_t=0.01, lambda_w=0.001, tuned_on="A")]}
    ours = {"rows": [_row("acdc8", "acdc", "A", "dainr:fast", p, 0.85, seed=s) for s, p in enumerate((24.5, 25.9))] +
                    [_row("rat8", "rat", "B", "dainr:fast", p, 0.95, seed=s) for s, p in enumerate((30.0, 30.5))]}
    text = cv_table([ours, bart])
    acdc = next(line for line in text.splitlines() if line.startswith("| acdc"))
    rat = next(line for line in text.splitlines() if line.startswith("| rat"))
    assert "25.20 (24.50–25.90)" in acdc and "**met**" in acdc  # mean 25.2 ≥ 24 + 1, SSIM 0.85 ≥ 0.80
    assert "+1.20 / +0.050" in acdc and "+2.20 / +0.070" in acdc  # against the oracle, against the tuned row
    assert "missed by 0.75 dB" in rat  # mean 30.25 < 30 + 1
    assert text.index("Tuned on group A") < text.index("| rat") < text.index("Tuned on group B") < text.index("| acdc")


def test_bart_rows_from_a_cache_written_on_several_machines(tmp_path):
    """One JSON file per pics run: files copied together from two machines merge; the tuned row is the group's
    pair on the other group's case, the oracle the case's best searched pair (how many, said)."""
    import json

    from bart_pics import BartRuns, cached_doc

    cases = [{"name": n, "source": n.split("_")[0], "spokes": 8, "snr": 100.0, "group": g, "raw": "x.h5",
              "truth": "t.npy"} for n, g in (("acdc_s8", "A"), ("rat_s8", "B"))]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    cache = tmp_path / "bart_runs"
    cache.mkdir()
    for name, lt, lw, psnr in (("acdc_s8", 0.01, 0.001, 24.0), ("acdc_s8", 0.03, 0.001, 25.5),
                               ("rat_s8", 0.01, 0.001, 30.0), ("rat_s8", 0.03, 0.003, 29.0)):
        key = BartRuns.key(name, lt, lw)
        (cache / f"{key.replace(' ', '__')}.json").write_text(
            json.dumps({"key": key, "result": {"psnr": psnr, "ssim": 0.8, "seconds": 1.0}}))
    # the tuning climbs replayed on the cache: from START (0.01, 0.001), group B's needs pairs never run (no row),
    # group A's: (0.01, 0.001) -> (0.03, 0.001) better -> its neighbours never run on acdc: replay stops (no row)
    doc = cached_doc(tmp_path, cache)
    rows = {(r["method"], r["case"]): r for r in doc["rows"]}
    assert not doc["tuning"] and not any(m == "bart-tuned" for m, _ in rows)
    import bart_pics
    grid = [(i, j) for i in range(len(bart_pics.LAMBDA_T)) for j in range(len(bart_pics.LAMBDA_W))]
    for name, base in (("rat_s8", 28.0), ("acdc_s8", 20.0)):  # fill the grid: a peak at (0.01, 0.001) on rat
        for i, j in grid:
            key = BartRuns.key(name, bart_pics.LAMBDA_T[i], bart_pics.LAMBDA_W[j])
            f = cache / f"{key.replace(' ', '__')}.json"
            if not f.exists():
                f.write_text(json.dumps({"key": key, "result": {"psnr": base - abs(i - 4) - abs(j - 1),
                                                                "ssim": 0.7, "seconds": 1.0}}))
    doc = cached_doc(tmp_path, cache)
    rows = {(r["method"], r["case"]): r for r in doc["rows"]}
    tuned_b = next(t for t in doc["tuning"] if t["group"] == "B")
    assert (tuned_b["lambda_t"], tuned_b["lambda_w"]) == (0.01, 0.001)  # the best pair run on rat
    assert rows["bart-tuned", "acdc_s8"]["psnr"] == 24.0 and rows["bart-tuned", "acdc_s8"]["tuned_on"] == "B"
    assert rows["bart-oracle", "acdc_s8"]["lambda_t"] == 0.03 and rows["bart-oracle", "acdc_s8"]["searched"] == 80
    assert rows["bart-oracle", "rat_s8"]["psnr"] == 30.0 and not doc["complete"]
    from bart_pics import merge_cache, read_cache
    merged = tmp_path / "elsewhere"
    merged.mkdir()
    assert merge_cache(cache, merged / "all.json") == 160 and read_cache(merged) == read_cache(cache)
