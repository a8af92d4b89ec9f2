#!/usr/bin/env bash
# Issue 22, the fair benchmark: DA-INR over several seeds on both groups of cases (A = ACDC + phantom, B = rat +
# moving CMRxRecon frame), against BART's oracle and cross-validated rows (run on a CPU: benchmarks/bart22.json).
#
#   bash benchmarks/issue22.sh data          # here: copy the real data into benchmarks/out/data (carried to the GPU)
#   bash benchmarks/issue22.sh gpu           # on the GPU, one device call (< 9 min): cases, fingerprint check,
#                                            # DA-INR `fast` × SEEDS on all 32 cases -> $OUT/dainr22.json
#   bash benchmarks/issue22.sh table FILE..  # here: the RESULTS table from FILE (gpu's JSON) and bart22.json
#   bash benchmarks/issue22.sh test          # here, CPU: the whole chain at tiny sizes (32², 8 frames, 10 steps)
#
# The GPU call carries .whl (the device wheels, as for noise_study.sh) and benchmarks/out/data; fits run seed after
# seed (every case gets seed 0 before any gets seed 1) and no fit starts after DEADLINE_S seconds, so a slow machine
# loses the last seeds, never a whole cell. The cases must be the ones BART ran on: the run stops when any k-space
# differs from benchmarks/cases22_kspace_fingerprint.json beyond float rounding.
set -euo pipefail
cd "$(dirname "$0")/.."
MATRIX=${MATRIX:-128} FRAMES=${FRAMES:-30} COILS=${COILS:-8}
SEEDS=${SEEDS:-0,1,2,3} METHODS=${METHODS:-dainr:fast} DEVICE=${DEVICE:-cuda}
CASES=${CASES:-/tmp/cases22} OUT=${OUT:-benchmarks/out/issue22}
FINGERPRINT=${FINGERPRINT:-benchmarks/cases22_kspace_fingerprint.json}
BART_JSON=${BART_JSON:-benchmarks/bart22.json}
JOBS=${JOBS:-8}                # simulations at a time
DEADLINE_S=${DEADLINE_S:-500}  # no new fit after this many seconds of the script
ONLY=${ONLY:-}                 # case-name patterns (fnmatch) to run; empty = all
EXTRA=${EXTRA:-}               # more `quality.py run` options (the test's step cap)
DATA_FILES="dmri_tgv2_demo_data.mat gpuNUFFT_radial_cardiac_25_projections.mat HGGM_dataCine8fr.mat
CMRxRecon2024_demo_cine_sax.mat"
. benchmarks/device_env.sh  # PY, use_device_wheels

data() {
    local src=${DAINR_DATA_DIR:-../shared/cardiac_data}
    mkdir -p benchmarks/out/data
    for f in $DATA_FILES; do cp "$src/$f" benchmarks/out/data/; done
    echo "copied $DATA_FILES into benchmarks/out/data"
}

gpu() {
    use_device_wheels
    if [ -d benchmarks/out/data ]; then export DAINR_DATA_DIR=$PWD/benchmarks/out/data; fi
    mkdir -p "$OUT"
    if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name --format=csv,noheader; fi
    if [ ! -f "$CASES/cases.json" ]; then
        $PY benchmarks/quality.py cases --out "$CASES" --matrix "$MATRIX" --frames "$FRAMES" --coils "$COILS" \
          --snr 100 --snr 33 --jobs "$JOBS" >/dev/null
    fi
    echo "cases ready after ${SECONDS} s"
    $PY benchmarks/kspace_fingerprint.py "$CASES" --check "$FINGERPRINT" > "$OUT/kspace_fingerprint_device.json"
    local budget=$((DEADLINE_S - SECONDS))
    if [ $budget -le 0 ]; then echo "no time left for the fits (${SECONDS} s spent)" >&2; exit 1; fi
    # shellcheck disable=SC2086
    $PY benchmarks/quality.py run --cases "$CASES" --methods "$METHODS" --seeds "$SEEDS" --device "$DEVICE" \
      --only "$ONLY" --warmup --budget "$budget" --json "$OUT/dainr22.json" $EXTRA > "$OUT/run.log"
    echo "fits done after ${SECONDS} s"
    if [ -f "$BART_JSON" ]; then
        $PY benchmarks/quality.py table "$OUT/dainr22.json" "$BART_JSON" | tee "$OUT/table22.md"
    fi
}

table() {
    [ $# -ge 1 ] || { echo "usage: $0 table DAINR_JSON..." >&2; exit 2; }
    $PY benchmarks/quality.py table "$@" "$BART_JSON"
}

selftest() {  # the whole chain at tiny sizes on this CPU: cases, fingerprints, BART (a few cells), gpu, table
    local tmp
    tmp=$(mktemp -d)
    export MATRIX=32 FRAMES=8 COILS=4 SEEDS=0,1 DEVICE=cpu CASES=$tmp/cases OUT=$tmp/out METHODS=dainr:fast,cgsense
    export FINGERPRINT=$tmp/fingerprint.json BART_JSON=$tmp/bart.json ONLY='*_s13_*' EXTRA="--set dainr.steps=10"
    $PY benchmarks/quality.py cases --out "$CASES" --matrix $MATRIX --frames $FRAMES --coils $COILS \
      --snr 100 --snr 33 >/dev/null
    $PY benchmarks/kspace_fingerprint.py "$CASES" > "$FINGERPRINT"
    OMP_NUM_THREADS=1 $PY benchmarks/quality.py bart --cases "$CASES" --only '*_s13_*' --json "$BART_JSON" >/dev/null
    gpu
    test -s "$OUT/table22.md" && grep -q "Tuned on group B" "$OUT/table22.md"
    echo "issue22.sh test: OK ($tmp)"
}

case "${1:-}" in
  data) data ;;
  gpu) gpu ;;
  table) shift; table "$@" ;;
  test) selftest ;;
  *) echo "usage: $0 data|gpu|table FILE..|test" >&2; exit 2 ;;
esac
