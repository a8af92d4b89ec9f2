#!/usr/bin/env bash
# Issue 16 goal 1, the batched step: the 12-slice exam (128², 30 frames, 8 coils, 13 spokes, `fast`) one at a time
# against slices fitted in batches, in one device call (about 5 min on an H200).
#
#   bash benchmarks/batch_exam.sh gpu    # on the GPU (carry .whl: the device wheels, benchmarks/issue22.sh says how)
#   bash benchmarks/batch_exam.sh test   # here, CPU: the same chain at a tiny size (16², 4 frames, 2 coils, 3 slices)
#
# 1. benchmarks/batched_step.py: ms per step of one slice's captured step against the batched step of S = 4, 6, 12
#    slices, the peak GPU memory of each (set-up included) -> $OUT/batched_step.json;
# 2. benchmarks/exam.py: `dainr recon` of the whole exam one at a time (--concurrent-slices 1 --batch-slices 1), with
#    the plan's defaults, and with --batch-slices 4, 6, 12: wall time from process start, per-slice seconds and PSNR,
#    the PSNR difference of each slice to the one-at-a-time run, the largest pixel difference -> $OUT/exam.json.
# Logs go to $OUT/*.log (the exam's working folder stays in /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/device_env.sh  # PY, use_device_wheels
OUT=${OUT:-benchmarks/out/batch_exam}
SIZES=${SIZES:-1,4,6,12} BATCHES=${BATCHES:-4,6,12} CONCURRENCY=${CONCURRENCY:-1,default}
STEPS=${STEPS:-100}

gpu() {
    if [ "${WHEELS:-1}" = 1 ]; then use_device_wheels; fi
    mkdir -p "$OUT"
    if [ "${DEVICE:-cuda}" = cuda ]; then nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader; fi
    $PY benchmarks/batched_step.py --out "$OUT" --device "${DEVICE:-cuda}" --sizes "$SIZES" --steps "$STEPS" \
      --no-fits ${STEP_ARGS:-} 2>&1 | tee "$OUT/batched_step.log"
    echo "steps timed after ${SECONDS} s"
    local work
    work=$(mktemp -d)  # a fresh folder: exam.py refuses to overwrite an earlier run's images
    $PY benchmarks/exam.py --out "$work" --device "${DEVICE:-cuda}" --concurrency "$CONCURRENCY" \
      --batch-slices "$BATCHES" ${EXAM_ARGS:-} 2>&1 | tee "$OUT/exam.log"
    cp "$work/exam.json" "$OUT/exam.json"
    echo "done after ${SECONDS} s"
}

selftest() {
    local tmp
    tmp=$(mktemp -d)
    export OUT=$tmp/out DEVICE=cpu WHEELS=0 SIZES=1,2,3 BATCHES=2,3 STEPS=3 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    export STEP_ARGS="--preset cpu-test --matrix 16 --frames 4 --coils 2 --spokes 9"
    export EXAM_ARGS="--preset cpu-test --matrix 16 --frames 4 --coils 2 --spokes 9 --slices 3"
    gpu
    test -s "$OUT/exam.json" && test -s "$OUT/batched_step.json"
    echo "batch_exam.sh test: OK ($tmp)"
}

case "${1:-}" in
  gpu) gpu ;;
  test) selftest ;;
  *) echo "usage: $0 gpu|test" >&2; exit 2 ;;
esac
