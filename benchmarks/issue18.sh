#!/usr/bin/env bash
# Issue 18 on one GPU: what a fitted model gives beyond its cine, on the analytic phantom.
#
#   bash benchmarks/issue18.sh gpu    # on the GPU, one device call (< 4 min): results under $OUT
#   bash benchmarks/issue18.sh test   # here, CPU: the same chain at tiny sizes (32², 6 frames, a few steps)
#
# Under $OUT: motion.json (benchmarks/motion.py motion: endpoint error in mm against the phantom's analytic motion,
# the still phantom's mean |u|), render.json (motion.py render: 2F − 1 frames against the phantom at the finer
# phases, held-out frames of a down_ratio=2 fit, 2× matrix against the phantom drawn at 2×), warm_same.json and
# warm_simulated.json (benchmarks/warm_start.py over a stack of SLICES slices), the logs, and issue18.md (the
# summary tables), and motion.png (motion.py figure at the same size: the README's picture, made on the GPU). The
# simulated stack runs only when the script is less than DEADLINE_S seconds old by then.
# The GPU call carries .whl (the device wheels, installed as in issue22.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
MATRIX=${MATRIX:-128} FRAMES=${FRAMES:-30} COILS=${COILS:-8} SPOKES=${SPOKES:-13} SLICES=${SLICES:-6}
PRESET=${PRESET:-fast} DEVICE=${DEVICE:-cuda} OUT=${OUT:-benchmarks/out/issue18}
DEADLINE_S=${DEADLINE_S:-150}  # no simulated stack after this many seconds of the script
EXTRA=${EXTRA:-}               # more options for every benchmark (the test's --set dainr.steps=...)
. benchmarks/device_env.sh  # PY, use_device_wheels

step() {  # step NAME COMMAND...: COMMAND's output in $OUT/NAME.log; a failure is reported, not fatal
    local name=$1
    shift
    if "$@" > "$OUT/$name.log" 2>&1; then echo "$name done after ${SECONDS} s" | tee -a "$OUT/steps.log"
    else echo "$name FAILED after ${SECONDS} s: $(tail -n 1 "$OUT/$name.log")" | tee -a "$OUT/steps.log"; fi
}

gpu() {
    use_device_wheels
    mkdir -p "$OUT"
    if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name --format=csv,noheader; fi
    local size="--matrix $MATRIX --frames $FRAMES --coils $COILS --spokes $SPOKES --preset $PRESET --device $DEVICE"
    # each step on its own: one that fails (its log says why) costs only its own rows of the summary
    # shellcheck disable=SC2086
    step motion $PY benchmarks/motion.py motion $size $EXTRA --json "$OUT/motion.json"
    # shellcheck disable=SC2086
    step render $PY benchmarks/motion.py render $size $EXTRA --json "$OUT/render.json"
    # shellcheck disable=SC2086
    step warm_same $PY benchmarks/warm_start.py --stack same --slices "$SLICES" $size $EXTRA \
      --json "$OUT/warm_same.json"
    if [ "$SECONDS" -lt "$DEADLINE_S" ]; then
        # shellcheck disable=SC2086
        step warm_simulated $PY benchmarks/warm_start.py --stack simulated --slices "$SLICES" $size $EXTRA \
          --json "$OUT/warm_simulated.json"
    else
        echo "no time left for the simulated stack (${SECONDS} s spent)" | tee -a "$OUT/steps.log"
    fi
    # shellcheck disable=SC2086
    step figure $PY benchmarks/motion.py figure $size $EXTRA --out "$OUT/motion.png"
    $PY - "$OUT" <<'EOF' | tee "$OUT/issue18.md"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])


def load(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


m, r = load("motion"), load("render")
for found in (m, r, load("warm_same"), load("warm_simulated")):
    if found:
        print(f"Machine: {found['machine']}\n")
        break
print("### Motion\n")
if m is None:
    print("not measured (motion.log says why)")
else:
    print(f"`{m['command']}`\n")
    print("| phantom | EPE myocardium (mm) | no-motion EPE (mm) | mean fitted \\|u\\| myocardium (mm) | "
          "mean \\|u\\| static tissue (mm) | largest true (mm) | pixel (mm) | PSNR (dB) | steps | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in ("moving", "still"):
        e = m["motion"][name]
        # the still phantom has no motion to recover: only its |u| columns mean anything
        epe = (f"{e['epe_myocardium_mm']:.2f} | {e['no_motion_epe_mm']:.2f}" if name == "moving" else "– | –")
        print(f"| {name} | {epe} | {e['fitted_myocardium_mm']:.2f} | "
              f"{e['static_tissue_mm']:.2f} | {e['max_true_mm']:.2f} | {e['pixel_mm']:.2f} | {e['psnr']:.2f} | "
              f"{e['steps']} | {e['seconds']} |")
    print("\nSeconds of the first fit of a process (moving) include its start-up (CUDA, kernels).")
print("\n### Rendering\n")
if r is None:
    print("not measured (render.log says why)")
else:
    f, t, h = r["render"]["finer_times"], r["render"]["twice_the_matrix"], r["render"]["held_out_frames"]
    print(f"`{r['command']}`\n")
    print("| what | rendered PSNR (dB) | baseline PSNR (dB) | baseline |")
    print("|---|---|---|---|")
    print(f"| 2F − 1 frames, the new frames vs the phantom at their phases | {f['psnr_between']:.2f} | "
          f"{f['psnr_previous_frame_between']:.2f} | previous acquired frame held |")
    print(f"| 2F − 1 frames, the acquired frames | {f['psnr_acquired']:.2f} | | |")
    print(f"| down_ratio=2, held-out frames | {h['psnr_held_out']:.2f} | {h['psnr_fitted']:.2f} | "
          "the fitted frames of the same fit |")
    print(f"| 2× matrix vs the phantom drawn at 2× | {t['psnr_rendered']:.2f} | {t['psnr_pixel_replicated']:.2f} | "
          "fit's pixels replicated 2×2 |")
    print(f"\nFit {f['fit_seconds']} s; rendering 2F − 1 frames {f['render_seconds']} s, the 2× matrix "
          f"{t['render_seconds']} s; the down_ratio=2 fit {h['seconds']} s.")
print("\n### Warm start across a stack\n")
print("| stack | steps to the cold best, cold | warm | warm reached every target | steps run cold | warm | "
      "PSNR cold (dB) | warm | s cold | warm |")
print("|---|---|---|---|---|---|---|---|---|---|")
for kind in ("same", "simulated"):
    w = load(f"warm_{kind}")
    if w is None:
        print(f"| {kind} | not measured (time, or warm_{kind}.log) | | | | | | | | |")
        continue
    s = w["stack"]
    print(f"| {kind} | {s['steps_to_cold_best_cold']} | {s['steps_to_cold_best_warm']} | "
          f"{s['warm_reached_every_target']} | {s['steps_run_cold']} | {s['steps_run_warm']} | {s['psnr_cold']:.2f} | "
          f"{s['psnr_warm']:.2f} | {s['seconds_cold']:.1f} | {s['seconds_warm']:.1f} |")
for kind in ("same", "simulated"):
    w = load(f"warm_{kind}")
    if w:
        print(f"\n`{w['command']}`")
EOF
    echo "issue18.sh done after ${SECONDS} s"
}

selftest() {  # the whole chain at tiny sizes on this CPU
    local tmp
    tmp=$(mktemp -d)
    export MATRIX=32 FRAMES=6 COILS=4 SPOKES=13 SLICES=2 DEVICE=cpu OUT=$tmp/out OMP_NUM_THREADS=1
    export EXTRA="--set dainr.steps=4 --set dainr.validate_every=2 --set dainr.frames_per_step=2" DEADLINE_S=100000
    gpu
    grep -q "| still |" "$OUT/issue18.md" && grep -q "| simulated | [0-9]" "$OUT/issue18.md"
    grep -q "2× matrix" "$OUT/issue18.md" && test -s "$OUT/motion.png" && ! grep -q FAILED "$OUT/steps.log"
    echo "issue18.sh test: OK ($tmp)"
}

case "${1:-}" in
  gpu) gpu ;;
  test) selftest ;;
  *) echo "usage: $0 gpu|test" >&2; exit 2 ;;
esac
