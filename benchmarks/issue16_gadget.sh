#!/usr/bin/env bash
# Issue 16 goals 1 and 3 on a GPU, one device call each (writes to $OUT):
#   bash benchmarks/issue16_gadget.sh          # Gadgetron <execute> vs <connect>, 3 connections each (about 2-3 min):
#                                              #   gadget_modes.txt, gadget_modes.json
#   bash benchmarks/issue16_gadget.sh serve    # a 12-slice stream through a warm dainr serve, one slice at a time
#                                              #   vs the default (about 4-5 min): serve1.txt, serve_default.txt, *.json
#   DEVICE=cpu PRESET=cpu-test SMALL=1 OUT=/tmp/i16g bash benchmarks/issue16_gadget.sh [serve]   # a CPU check
# 128² x 30 frames x 8 coils x 13 spokes, `fast` (SMALL: 16² x 3 frames x 2 coils x 5 spokes).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out/issue16_gadget} DEVICE=${DEVICE:-cuda} PRESET=${PRESET:-fast}
. benchmarks/device_env.sh  # PY, use_device_wheels
use_device_wheels
size=()
if [ -n "${SMALL:-}" ]; then size=(--matrix 16 --frames 3 --coils 2 --spokes 5); fi
mkdir -p "$OUT"
work=$(mktemp -d)
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/machine.txt"; fi
$PY -c "import torch, gadgetron, ismrmrd; print('torch', torch.__version__)" | tee -a "$OUT/machine.txt"
if [ "${1:-gadget}" = serve ]; then
    $PY benchmarks/serve_latency.py --out "$work/s1" --device "$DEVICE" --preset "$PRESET" --slices 12 \
        --connections 1 --wait-ready --concurrent-slices 1 "${size[@]}" | tee "$OUT/serve1.txt"
    cp "$work/s1/serve_latency.json" "$OUT/serve1.json"; cp "$work/s1/serve.log" "$OUT/serve1.log"
    $PY benchmarks/serve_latency.py --out "$work/sd" --device "$DEVICE" --preset "$PRESET" --slices 12 \
        --connections 1 --wait-ready --raw "$work/s1/raw.h5" --reference "$work/s1/recon.h5" "${size[@]}" \
        | tee "$OUT/serve_default.txt"
    cp "$work/sd/serve_latency.json" "$OUT/serve_default.json"; cp "$work/sd/serve.log" "$OUT/serve_default.log"
else
    $PY benchmarks/gadget_modes.py --out "$work/g" --device "$DEVICE" --preset "$PRESET" --connections 3 \
        "${size[@]}" | tee "$OUT/gadget_modes.txt"
    cp "$work/g/gadget_modes.json" "$OUT/"
    cp "$work/g/connect.log" "$OUT/gadget_connect.log"
fi
echo "done after ${SECONDS} s"
