#!/usr/bin/env bash
# Issue 16 goals 2 and 3 on a GPU in one device call (about 2-3 min): one slice through `dainr recon`, every second
# accounted for (benchmarks/exam.py --concurrency none), then `dainr serve` + `dainr replay` connection after connection
# (benchmarks/serve_latency.py). Results in $OUT (5 files): exam.txt, exam.json, serve.txt, serve_latency.json, serve.log.
#
#   bash benchmarks/issue16_startup.sh          # on the GPU machine, with .whl carried (as for issue22.sh)
#   DEVICE=cpu PRESET=cpu-test SMALL=1 OUT=/tmp/i16 bash benchmarks/issue16_startup.sh   # a CPU check at tiny sizes
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out/issue16} DEVICE=${DEVICE:-cuda} PRESET=${PRESET:-fast}
. benchmarks/device_env.sh  # PY, use_device_wheels
use_device_wheels
size=()
if [ -n "${SMALL:-}" ]; then size=(--matrix 32 --frames 8 --coils 4); fi
mkdir -p "$OUT"
work=$(mktemp -d)
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/exam.txt"; fi
# exam.py's warm-up run fills the file caches (and compiles the carried wheels' .pyc) before the measured run.
$PY benchmarks/exam.py --out "$work/exam" --device "$DEVICE" --preset "$PRESET" --concurrency none "${size[@]}" \
    | tee -a "$OUT/exam.txt"
cp "$work/exam/exam.json" "$OUT/"
$PY benchmarks/serve_latency.py --out "$work/serve" --device "$DEVICE" --preset "$PRESET" --connections 3 \
    "${size[@]}" | tee "$OUT/serve.txt"
cp "$work/serve/serve_latency.json" "$work/serve/serve.log" "$OUT/"
echo "done after ${SECONDS} s"
