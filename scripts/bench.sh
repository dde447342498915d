#!/usr/bin/env bash
# make bench: the single-process benchmarks (memory, model, router), each printing its table and
# HELM_RESULT lines; the HELM_RESULT lines of all three are repeated at the end.
# (make bench-cluster runs the local-cluster benchmarks.)
set -euo pipefail
build_dir=${1:-build}
out=${HELM_BENCH_OUT:-out/bench}
mkdir -p "$out"
for bench in helm_bench_memory helm_bench_model helm_bench_router; do
  echo "== $bench"
  "$build_dir/bin/$bench" | tee "$out/$bench.txt"
done
echo "== HELM_RESULT lines (also in $out/*.txt)"
grep -h '^HELM_RESULT' "$out"/helm_bench_*.txt
