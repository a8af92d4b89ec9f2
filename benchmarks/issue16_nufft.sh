#!/usr/bin/env bash
# Issue 16 goal 4 (the paper-size step) on a GPU in one device call (about 3 min): gather vs csr interpolation.
#  (a) benchmarks/nufft_micro.py: forward + backward of one step's NUFFT at paper size (128², 23 frames, 32 coils,
#      21 × 256 samples; 1 and 4 frames per call), ms, peak memory, bit-identical repeats, CUDA-graph capture; the
#      preparation's 8-frame adjoint (ms, peak memory).
#  (b) benchmarks/speed.py --presets on the paper-size case: paper-eager (100 steps, extrapolated to 1001),
#      paper (gather), paper (csr), fast (gather), fast (csr): slice seconds, ms a step, peak GiB, PSNR and whether the
#      CUDA graph was captured (a WARNING line when a variant fell back to eager steps).
# Results in $OUT: device.txt, micro.json, micro.txt, presets.json, presets.txt.
#
#   bash benchmarks/issue16_nufft.sh                                  # on the GPU machine (.whl carried, if any)
#   SELFTEST=1 OUT=/tmp/i16n bash benchmarks/issue16_nufft.sh         # the same chain on a CPU at tiny sizes
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out/issue16_nufft}
. benchmarks/device_env.sh  # PY, use_device_wheels
use_device_wheels
mkdir -p "$OUT"
variants=paper-eager,paper-fastpath,paper-csr,fast-preset,fast-csr
if [ -n "${SELFTEST:-}" ]; then
    device=cpu
    micro=(--matrix 16 --frames 4 --coils 2 --spokes 3 --samples 32 --warmup 1 --iters 3)
    presets=(--matrix 16 --frames 4 --coils 2 --spokes 3 --steps 2 --set dainr.steps=4)
    echo cpu > "$OUT/device.txt"
else
    device=cuda
    micro=()
    presets=(--matrix 128 --frames 23 --coils 32 --spokes 21 --steps 100)
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
fi
$PY -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/device.txt"
$PY benchmarks/nufft_micro.py --device "$device" "${micro[@]}" --json "$OUT/micro.json" 2>&1 | tee "$OUT/micro.txt"
echo "micro done after ${SECONDS} s"
$PY benchmarks/speed.py --presets --device "$device" "${presets[@]}" --variants "$variants" \
    --repeat --json "$OUT/presets.json" 2>&1 | tee "$OUT/presets.txt"
echo "done after ${SECONDS} s" | tee -a "$OUT/presets.txt"
