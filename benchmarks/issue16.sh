#!/usr/bin/env bash
# Issue 16 on the GPU in two device calls (each < 10 min; run through benchmarks/device_run.sh so that everything
# comes back as one archive). Every part has its own time limit, so a slow part cannot lose the others' results.
#
#   bash benchmarks/device_run.sh bash benchmarks/issue16.sh nufft   # goal 4 (issue16_nufft.sh: gather vs csr at the
#                                                                    # paper size) and goals 1-2 (exam.py: the
#                                                                    # 12-slice exam one at a time and the default,
#                                                                    # one slice end to end; gather, then csr)
#   bash benchmarks/device_run.sh bash benchmarks/issue16.sh stream  # goal 3 (issue16_gadget.sh: <execute> vs
#                                                                    # <connect>) and goal 1's server part (a 12-slice
#                                                                    # stream through a warm server, 1 vs default)
#   SMALL=1 DEVICE=cpu bash benchmarks/issue16.sh nufft|stream       # the same chains at tiny sizes on a CPU
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out/issue16} DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
part() {  # NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, never stop the script
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit} s) at ${SECONDS} s"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; echo "$name: exit $? after ${SECONDS} s"
    tail -n 25 "$OUT/$name.log"
}
exam() {  # NAME BACKEND [exam.py flags]: the 12-slice exam one at a time and the default, and one slice, on one NUFFT backend
    local work=/tmp/i16_$1
    local size=()
    if [ -n "${SMALL:-}" ]; then size=(--preset cpu-test --matrix 16 --frames 4 --coils 2 --spokes 5 --slices 3); fi
    . benchmarks/device_env.sh && use_device_wheels &&
    $PY benchmarks/exam.py --out "$work" --device "$DEVICE" --concurrency 1,default \
        --set "dainr.nufft_backend=$2" "${@:3}" "${size[@]}" && cp "$work/exam.json" "$OUT/$1.json"
}
export -f exam; export OUT DEVICE SMALL
case "${1:-}" in
  nufft)
    if [ -n "${SMALL:-}" ]; then export SELFTEST=1; fi
    part nufft 240 env OUT="$OUT/nufft" bash benchmarks/issue16_nufft.sh
    part exam_gather 170 bash -c 'exam exam_gather gather'
    part exam_csr 170 bash -c 'exam exam_csr csr --set deterministic=false' ;;  # csr is not bit-identical on a GPU
  stream)
    size=(); if [ -n "${SMALL:-}" ]; then size=(SMALL=1 PRESET=cpu-test); fi
    part gadget 220 env "${size[@]}" OUT="$OUT/gadget" bash benchmarks/issue16_gadget.sh
    part serve 330 env "${size[@]}" OUT="$OUT/serve" bash benchmarks/issue16_gadget.sh serve ;;
  *) echo "usage: $0 nufft|stream" >&2; exit 2 ;;
esac
echo "all done after ${SECONDS} s"
