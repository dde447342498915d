#!/usr/bin/env bash
# make bench: the single-process benchmarks (memory, model, node, router), each printing its table and
# HELM_RESULT lines; the HELM_RESULT lines of all four are repeated at the end. Also writes
# out/bench/resize_latency.{csv,png}: EMB lookup latency over time around the memory benchmark's
# resizes.
# (make bench-cluster runs the local-cluster benchmarks.)
set -euo pipefail
build_dir=${1:-build}
out=${HELM_BENCH_OUT:-out/bench}
mkdir -p "$out"
for bench in helm_bench_memory helm_bench_model helm_bench_node helm_bench_router helm_bench_control; do
  echo "== $bench"
  args=()
  [[ $bench == helm_bench_memory ]] && args=(--csv "$out/resize_latency.csv")
  "$build_dir/bin/$bench" "${args[@]}" | tee "$out/$bench.txt"
done
# EMB lookup latency over time around the resizes (needs python3-matplotlib).
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  /usr/bin/python3 scripts/plot_resize_latency.py --csv "$out/resize_latency.csv" \
    --out "$out/resize_latency.png" && echo "== plot: $out/resize_latency.png"
else
  echo "== plot skipped: /usr/bin/python3 cannot import matplotlib (apt-get install python3-matplotlib)"
fi
echo "== HELM_RESULT lines (also in $out/*.txt)"
grep -h '^HELM_RESULT' "$out"/helm_bench_*.txt
