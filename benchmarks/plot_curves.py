"""Plot the oracle PSNR-vs-step curves recorded by ``quality.py run --monitor N`` (a diagnostic only: the output of
every method is chosen without the truth). Needs matplotlib.

    python benchmarks/plot_curves.py benchmarks/out/quality1.json -o benchmarks/oracle_curves.png
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("json", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    a = p.parse_args()
    rows = [r for r in json.loads(a.json.read_text())["rows"] if r.get("curve")]
    panels = sorted({(r["source"], r["snr"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (src, snr) in zip(axes[0], panels):
        for r in [r for r in rows if (r["source"], r["snr"]) == (src, snr)]:
            steps, psnr = zip(*r["curve"])
            line, = ax.plot(steps, psnr, marker=".", label=f"{r['method']} {r['spokes']} spokes")
            star = r.get("selected_step", r["iterations"])  # the step whose model is the output
            ax.scatter([star], [r["psnr"]], color=line.get_color(), marker="*", s=80, zorder=3)
        ax.set_title(f"{src}, noise σ = max|k|/{snr:g}")
        ax.set_xlabel("step")
        ax.set_ylabel("PSNR vs truth (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.suptitle("DA-INR PSNR against the truth during the fit (diagnostic); ★ = the output, chosen without truth")
    fig.tight_layout()
    fig.savefig(a.output, dpi=90)


if __name__ == "__main__":
    main()
