#!/usr/bin/env bash
# The issue-8 noise study on a lent GPU, one device call per mode (each < 10 min), over a working tree that carries
# .whl (../shared/tools/device-wheels + scikit-image and its dependencies) and benchmarks/out/data (the two .mat files
# of ../shared/cardiac_data used by `--source acdc`):
#
#   bash benchmarks/noise_study.sh table     # test cases: adjoint, CG-SENSE, DA-INR fast and paper, oracle curves
#   bash benchmarks/noise_study.sh sweep     # tuning cases only: the levers below, one setting chosen for all
#   bash benchmarks/noise_study.sh tvsweep   # the TV weights at 128², then the test cases with the winner
#   bash benchmarks/noise_study.sh tvsweep2  # around the shipped setting, then the test cases with the winner
#   bash benchmarks/noise_study.sh timing    # the shipped `fast` without the monitor, speed.py, the 300-step cap
#   bash benchmarks/noise_study.sh all       # table, then sweep (SWEEP_S / TABLE_S seconds each; partial rows kept)
#
# Variants are overrides of the `fast` preset as shipped; in `sweep`, `base` is `fast` as it was before issue 8. A
# chosen variant goes into dainr/presets/fast.yaml by hand (`table` and `timing` run the presets as they are).
# BART runs on a CPU machine on the same cases:
# `python benchmarks/quality.py bart --cases CASES --tune-on tune --json bart.json`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:${PYTHONPATH:-}
OUT=${OUT:-benchmarks/out}
CASES=/tmp/cases
nvidia-smi --query-gpu=name --format=csv,noheader
if [ ! -f $CASES/cases.json ]; then
  DAINR_DATA_DIR=benchmarks/out/data python benchmarks/quality.py cases --snr 100 --snr 33 \
    --sources acdc:0:test,phantom:11:tune,phantom:0:test --out $CASES >/dev/null
fi
# The cases must be the ones BART ran on (made on a CPU, 2026-12-01): stop if any k-space differs beyond float rounding.
python benchmarks/kspace_fingerprint.py $CASES --check benchmarks/cases_kspace_fingerprint.json > "$OUT/kspace_fingerprint_device.json"
tune() {  # NAME [tune.py options and --variant ...]: tuning cases, results in $OUT/NAME.json (partial rows kept)
    local name=$1; shift
    timeout "${SWEEP_S:-540}" python benchmarks/tune.py --cases $CASES --device cuda --warmup --json "$OUT/$name.json" \
      "$@" || true
}
sweep() {
    tune sweep \
      --variant base=dainr.tv_temporal=0,dainr.tv_spatial=0,dainr.ema=0,dainr.lr=1e-3,dainr.grid_lr_scale=1,dainr.steps=600 \
      --variant preset= \
      --variant steps600=dainr.steps=600 \
      --variant grid1=dainr.grid_lr_scale=1 \
      --variant lr3=dainr.lr=3e-3 \
      --variant tv2x=dainr.tv_temporal=0.2,dainr.tv_spatial=0.1 \
      --variant tv_half=dainr.tv_temporal=0.05,dainr.tv_spatial=0.025 \
      --variant fps3=dainr.frames_per_step=3,dainr.steps=460
}
tvsweep() {  # the TV weight at 128² (the first sweep's winner was the largest TV tried)
    tune tvsweep --monitor 100 --test \
      --variant tv2x=dainr.tv_temporal=0.2,dainr.tv_spatial=0.1 \
      --variant tv3x=dainr.tv_temporal=0.3,dainr.tv_spatial=0.15 \
      --variant tv4x=dainr.tv_temporal=0.4,dainr.tv_spatial=0.2 \
      --variant tv6x=dainr.tv_temporal=0.6,dainr.tv_spatial=0.3 \
      --variant tv8x=dainr.tv_temporal=0.8,dainr.tv_spatial=0.4 \
      --variant t4s2=dainr.tv_temporal=0.4,dainr.tv_spatial=0.1 \
      --variant t2s4=dainr.tv_temporal=0.2,dainr.tv_spatial=0.2 \
      --variant tv4x_lr3=dainr.tv_temporal=0.4,dainr.tv_spatial=0.2,dainr.lr=3e-3 \
      --variant tv4x_300=dainr.tv_temporal=0.4,dainr.tv_spatial=0.2,dainr.steps=300
}
tvsweep2() {  # around the shipped TV 0.4 / 0.1: the temporal / spatial balance and 3 frames a step, within 3 s
    tune tvsweep2 --monitor 100 --test --max-seconds 3 \
      --variant preset= \
      --variant fps3=dainr.frames_per_step=3,dainr.steps=460 \
      --variant t3s1=dainr.tv_temporal=0.3 \
      --variant t6s1=dainr.tv_temporal=0.6 \
      --variant t4s05=dainr.tv_spatial=0.05
}
timing() {  # the shipped `fast` without the monitor (wall times; pixels must equal tvsweep's test rows), its step time
    # and memory, and the 300-step cap as the speed-bound alternative
    python benchmarks/speed.py --device cuda --variants fast-nondeterministic,fast --repeat --json "$OUT/speed.json"
    python benchmarks/quality.py run --cases $CASES --groups test --methods dainr:fast --warmup --device cuda --json "$OUT/fast.json"
    python benchmarks/quality.py run --cases $CASES --groups test --methods dainr:fast --set dainr.steps=300 --warmup --device cuda \
      --json "$OUT/fast300.json"
}
table() {
    timeout "${TABLE_S:-560}" python benchmarks/quality.py run --cases $CASES --groups test \
      --methods dainr:fast,adjoint,cgsense,dainr:paper --monitor 100 --warmup --device cuda --json "$OUT/table.json" || true
    python benchmarks/quality.py table "$OUT/table.json"
}
case "${1:-}" in
  sweep) sweep ;;
  table) table ;;
  tvsweep) tvsweep ;;
  tvsweep2) tvsweep2 ;;
  timing) timing ;;
  all) table; sweep ;;
  *) echo "usage: $0 sweep|tvsweep|tvsweep2|timing|table|all" >&2; exit 2 ;;
esac
