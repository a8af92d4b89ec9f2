#!/usr/bin/env bash
# Run a benchmark script on a lent GPU machine and bring all its outputs back as ONE archive: the device tool returns
# at most 8 files from $OUT, and the benchmarks write more (one JSON per variant, logs, BART's per-run cache).
#
#   bash benchmarks/device_run.sh bash benchmarks/levers22.sh          # -> $OUT/results.tgz (+ the last lines)
#   tar xzf /work/.device/N/results.tgz -C somewhere                   # here, afterwards
#
# The wrapped command sees OUT=<a scratch folder>; the archive is written even when it fails (its exit status is
# kept in exit_status.txt inside the archive and returned).
set -u
final=${OUT:?set OUT (the device tool sets it)}
scratch=$(mktemp -d)
OUT=$scratch "$@" > "$scratch/stdout.log" 2>&1
status=$?
echo "$status" > "$scratch/exit_status.txt"
tar czf "$final/results.tgz" -C "$scratch" .
tail -n 40 "$scratch/stdout.log"
echo "exit status $status; $(find "$scratch" -type f | wc -l) files in $final/results.tgz"
exit "$status"
