"""The markdown tables of ``quality.py table``: our methods (DA-INR as the mean over seeds with the spread) against
BART's two rows (``bart-oracle``: weights chosen per case against the truth; ``bart-tuned``: weights chosen on the
other group of anatomies), one section per cross-validation direction, the tuning-set scores first.

Goal per test cell (issue 22): the main method's seed-mean PSNR at least the oracle's + 1 dB and its SSIM at least
the oracle's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

GOAL_DB = 1.0


@dataclass
class Agg:
    """One method on one case: mean over its rows (seeds) and the PSNR spread."""

    psnr: float
    ssim: float
    seconds: float
    lo: float
    hi: float
    n: int
    row: dict

    def cell(self, full: int = 1) -> str:
        """``mean (min–max) / SSIM / seconds``; the seed count when it is below ``full`` (a run stopped early)."""
        spread = f" ({self.lo:.2f}–{self.hi:.2f}{f', {self.n} seeds' if self.n < full else ''})" if self.n > 1 else ""
        return f"{self.psnr:.2f}{spread} / {self.ssim:.3f} / {self.seconds:.2f} s"


def aggregate(rows: list[dict]) -> Agg:
    p = [r["psnr"] for r in rows]
    return Agg(float(np.mean(p)), float(np.mean([r["ssim"] for r in rows])),
               float(np.mean([r["seconds"] for r in rows])), min(p), max(p), len(rows), rows[0])


def noise(snr: float) -> str:
    return f"{100 / snr:.0f}% noise"


def lam(r: dict) -> str:
    return f"({r['lambda_t']:g}, {r['lambda_w']:g})" + (" edge" if r.get("edge") else "")


def bart_cell(r: dict | None) -> str:
    return "–" if r is None else f"{r['psnr']:.2f} / {r['ssim']:.3f} {lam(r)}"


def case_order(c: dict) -> tuple:
    return c["source"], -c["snr"], -c["spokes"]


def cv_table(docs: list[dict], main: str = "dainr:fast") -> str:
    """Markdown for the rows of ``docs`` (``quality.py run`` / ``bart`` / ``tune.py`` JSON documents)."""
    rows = [r for d in docs for r in d["rows"]]
    for d in docs:  # tune.py --test: the chosen variant's tuning rows, under its test rows' name
        if d.get("chosen") and d["rows"]:
            rows += [{**r, "method": d["rows"][0]["method"]} for r in d["tune"][d["chosen"]]["rows"]]
    tuning = [t for d in docs for t in d.get("tuning", [])]
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if not r["method"].startswith("bart-"):
            by[r["case"], r["method"]].append(r)
    ours = {k: aggregate(v) for k, v in by.items()}
    methods = sorted({m for _, m in ours}, key=lambda m: (m != "adjoint", m != "cgsense", m != main, m))
    oracle = {r["case"]: r for r in rows if r["method"] == "bart-oracle"}
    tuned = {(r["tuned_on"], r["case"]): r for r in rows if r["method"] == "bart-tuned"}
    cases = {r["case"]: r for r in rows}
    groups = sorted({t["group"] for t in tuning}) or [None]
    out = []
    for g in groups:
        test = sorted((c for c in cases.values() if g is None or c["group"] != g), key=case_order)
        if g is not None:
            out += _tuning_section(g, tuning, [c for c in cases.values() if c["group"] == g], ours, main)
            names = ", ".join(sorted({c["source"] for c in test}))
            out += ["", f"Test cells ({names}), BART tuned on group {g}:", ""]
        out += _test_section(test, g, methods, ours, oracle, tuned, main)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _tuning_section(g: str, tuning: list[dict], cases: list[dict], ours: dict, main: str) -> list[str]:
    srcs = ", ".join(sorted({c["source"] for c in cases}))
    out = [f"### Tuned on group {g} ({srcs})", "",
           f"Tuning set: BART's weights chosen per cell on the mean PSNR over {srcs}; {main}: one setting for "
           "every cell (seed mean).",
           "", f"| cell | BART tuned (λ_T, λ_W) | BART mean PSNR / SSIM | {main} mean PSNR / SSIM |", "|---|---|---|---|"]
    bart_p, bart_s, our_p, our_s = [], [], [], []
    for t in sorted((t for t in tuning if t["group"] == g), key=lambda t: (-t["snr"], -t["spokes"])):
        aggs = [ours[c["case"], main] for c in cases if (c["snr"], c["spokes"]) == (t["snr"], t["spokes"])
                and (c["case"], main) in ours]
        mine = "–"
        if aggs:
            p, s = np.mean([a.psnr for a in aggs]), np.mean([a.ssim for a in aggs])
            our_p.append(p)
            our_s.append(s)
            mine = f"{p:.2f} / {s:.3f}"
        bart_p.append(t["psnr"])
        bart_s.append(t["ssim"])
        out.append(f"| {noise(t['snr'])}, {t['spokes']} spokes | {lam(t)} | {t['psnr']:.2f} / {t['ssim']:.3f} | "
                   f"{mine} |")
    mine = f"{np.mean(our_p):.2f} / {np.mean(our_s):.3f}" if our_p else "–"
    out.append(f"| **mean** | | {np.mean(bart_p):.2f} / {np.mean(bart_s):.3f} | {mine} |")
    return out


def _test_section(test: list[dict], g: str | None, methods: list[str], ours: dict, oracle: dict, tuned: dict,
                  main: str) -> list[str]:
    has_bart = any(c["case"] in oracle for c in test)
    head = ["case", "spokes", *methods]
    if has_bart:
        head += ["BART oracle (λ_T, λ_W)", "BART tuned (λ_T, λ_W)", f"{main} − oracle (dB / SSIM)",
                 f"{main} − tuned (dB / SSIM)", "goal (≥ oracle + 1 dB, SSIM ≥ oracle's)"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    full = {m: max(a.n for (_, mm), a in ours.items() if mm == m) for m in methods}
    met = wins = compared = 0
    spreads = []
    for c in test:
        cells = [f"{c['source']} {noise(c['snr'])}", str(c["spokes"])]
        cells += [ours[c["case"], m].cell(full[m]) if (c["case"], m) in ours else "–" for m in methods]
        mine = ours.get((c["case"], main))
        if mine is not None and mine.n > 1:
            spreads.append((mine.hi - mine.lo, c["case"]))
        if has_bart:
            o, t = oracle.get(c["case"]), tuned.get((g, c["case"]))
            cells += [bart_cell(o), bart_cell(t)]
            for ref in (o, t):
                cells.append("–" if ref is None or mine is None else
                             f"{mine.psnr - ref['psnr']:+.2f} / {mine.ssim - ref['ssim']:+.3f}")
            if o is not None and mine is not None:
                compared += 1
                short = o["psnr"] + GOAL_DB - mine.psnr
                ok = short <= 0 and mine.ssim >= o["ssim"]
                met += ok
                cells.append("**met**" if ok else "missed by " + ", ".join(
                    ([f"{short:.2f} dB"] if short > 0 else []) +
                    ([f"SSIM {o['ssim'] - mine.ssim:.3f}"] if mine.ssim < o["ssim"] else [])))
                wins += t is not None and mine.psnr > t["psnr"]
            else:
                cells.append("–")
        out.append("| " + " | ".join(cells) + " |")
    if compared:
        out += ["", f"Goal met in {met} of {compared} cells; {main} above BART tuned (PSNR) in {wins} of "
                    f"{sum(1 for c in test if (g, c['case']) in tuned and (c['case'], main) in ours)}."]
    if spreads:
        worst = max(spreads)
        out.append(f"{main} seed spread (max − min PSNR over up to {full[main]} seeds): median "
                   f"{np.median([s for s, _ in spreads]):.2f} dB, largest {worst[0]:.2f} dB ({worst[1]}).")
    return out
