#!/usr/bin/env bash
# Issue 22 in one GPU call: DA-INR variants (benchmarks/levers22.txt, or VARIANTS=file) over seeds on the simulated
# cases, PARALLEL fits at a time on the one GPU, and (BART_JOBS > 0) BART's pics search on the machine's other cores
# at the same time (benchmarks/bart_pics.py; its per-run cache is carried in as BART_CACHE and written back to
# $OUT/bart_runs, so successive calls resume it).
#
#   bash benchmarks/levers22.sh            # on the GPU machine (carry .whl, benchmarks/out/data, .vendor/bart,
#                                          # benchmarks/out/bart_runs); results in $OUT
#   DEVICE=cpu MATRIX=32 FRAMES=8 COILS=4 ONLY='*_s13_*' SEEDS=0 EXTRA='--set dainr.steps=10' bash benchmarks/levers22.sh
#                                          # the whole chain at tiny sizes on a CPU
#
# The cases are simulated here and must be the ones the committed fingerprints describe (checked to float rounding).
set -euo pipefail
cd "$(dirname "$0")/.."
MATRIX=${MATRIX:-128} FRAMES=${FRAMES:-30} COILS=${COILS:-8} DEVICE=${DEVICE:-cuda}
SEEDS=${SEEDS:-0,1} ONLY=${ONLY:-} PARALLEL=${PARALLEL:-3} DEADLINE_S=${DEADLINE_S:-500}
VARIANTS=${VARIANTS:-benchmarks/levers22.txt} EXTRA=${EXTRA:-} BART_JOBS=${BART_JOBS:-0}
CASES=${CASES:-/tmp/cases22} OUT=${OUT:-benchmarks/out/levers} BART_CACHE=${BART_CACHE:-benchmarks/out/bart_runs}
FINGERPRINT=${FINGERPRINT:-benchmarks/cases22_kspace_fingerprint.json}
. benchmarks/device_env.sh  # PY, use_device_wheels
use_device_wheels
if [ -x .vendor/bart/bin/bart ]; then export PATH=$PWD/.vendor/bart/bin:$PATH; fi
if [ -d benchmarks/out/data ]; then export DAINR_DATA_DIR=$PWD/benchmarks/out/data; fi
mkdir -p "$OUT"
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ ! -f "$CASES/cases.json" ]; then
    $PY benchmarks/quality.py cases --out "$CASES" --matrix "$MATRIX" --frames "$FRAMES" --coils "$COILS" \
      --snr 100 --snr 33 --jobs 8 >/dev/null
fi
if [ "$MATRIX" = 128 ]; then
    $PY benchmarks/kspace_fingerprint.py "$CASES" --check "$FINGERPRINT" | tail -n 1 > "$OUT/fingerprint.txt"
fi
echo "cases ready after ${SECONDS} s"
bart_pid=
if [ "$BART_JOBS" -gt 0 ]; then
    mkdir -p "$OUT/bart_runs"
    if [ -d "$BART_CACHE" ]; then cp -r "$BART_CACHE/." "$OUT/bart_runs/"; fi
    OMP_NUM_THREADS=1 $PY benchmarks/quality.py bart --cases "$CASES" --cache "$OUT/bart_runs" --jobs "$BART_JOBS" \
      --budget $((DEADLINE_S - SECONDS - 60)) --json "$OUT/bart.json" > "$OUT/bart.log" 2>&1 &
    bart_pid=$!
fi
run_variant() {  # NAME OVERRIDE...
    local name=$1; shift
    local sets=()
    for o in "$@"; do  # --flag=value passes to quality.py run as is (e.g. --only=..., --seeds=...); else an override
        if [[ $o == --* ]]; then sets+=("$o"); else sets+=(--set "$o"); fi
    done
    # shellcheck disable=SC2086
    $PY benchmarks/quality.py run --cases "$CASES" --methods dainr:fast --seeds "$SEEDS" --device "$DEVICE" \
      --only "$ONLY" --budget $((END - $(date +%s))) "${sets[@]}" $EXTRA --json "$OUT/v_$name.json" \
      > "$OUT/v_$name.log" 2>&1 || echo "variant $name failed: $(tail -n 1 "$OUT/v_$name.log")"
}
export -f run_variant
END=$(( $(date +%s) + DEADLINE_S - SECONDS ))  # no fit starts after this (epoch seconds)
export PY CASES SEEDS DEVICE ONLY EXTRA OUT END
grep -v '^#' "$VARIANTS" | grep . | xargs -P "$PARALLEL" -L 1 bash -c 'run_variant "$@"' _
echo "variants done after ${SECONDS} s"
if [ -n "$bart_pid" ]; then wait "$bart_pid" || echo "bart search failed: $(tail -n 2 "$OUT/bart.log")"; fi
echo "all done after ${SECONDS} s"
