#!/usr/bin/env bash
# Runs every libFuzzer target built in <build dir> (make fuzz): each for FUZZ_RUNS executions or
# FUZZ_SECONDS seconds, whichever comes first, starting from its committed seeds
# (fuzz/corpus/<target>/) plus what earlier runs found (<build dir>/corpus/<target>/), with the
# dictionary fuzz/<target>.dict where there is one. Crashing
# inputs land in <build dir>/crashes/<target>/: turn each into a regression input under
# tests/fuzz_regressions/<target>/ once fixed. Prints per-target executions, then
#   HELM_RESULT fuzz_execs_min <fewest executions of any target>
#   HELM_RESULT fuzz_crashes <crashing inputs found>
# and exits non-zero when a target crashed. Run from the source root.
set -uo pipefail

build_dir=${1:?usage: fuzz/run_fuzz.sh <build dir> [seconds per target] [runs per target]}
seconds=${2:-60}
runs=${3:-1000000}
targets=(rank_request config safetensors npy trace_csv node_state)

execs_min=
crashes=0
for t in "${targets[@]}"; do
  bin="$build_dir/bin/helm-fuzz-$t"
  if [[ ! -x $bin ]]; then
    echo "fuzz: $bin is missing (make fuzz builds it)" >&2
    exit 2
  fi
  corpus="$build_dir/corpus/$t"
  artifacts="$build_dir/crashes/$t"
  mkdir -p "$corpus" "$artifacts"
  log="$build_dir/fuzz-$t.log"
  before=$(find "$artifacts" -type f | wc -l)
  dict=()
  if [[ -f fuzz/$t.dict ]]; then dict=(-dict="fuzz/$t.dict"); fi
  # Stops at the first crash; a crash still counts the executions made before it.
  "$bin" -runs="$runs" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=4096 "${dict[@]}" -artifact_prefix="$artifacts/" "$corpus" "fuzz/corpus/$t" \
    >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  execs=${execs:-0}
  after=$(find "$artifacts" -type f | wc -l)
  found=$((after - before))
  if [[ $rc -ne 0 && $found -eq 0 ]]; then found=1; fi  # died without writing an artifact
  crashes=$((crashes + found))
  printf 'fuzz: %-13s %10d execs  %d crash(es)  (exit %d, log %s)\n' "$t" "$execs" "$found" "$rc" "$log"
  if [[ $found -gt 0 ]]; then
    grep -m 5 -E 'ERROR: |HELM_FUZZ_CHECK|runtime error|SUMMARY' "$log" | sed 's/^/fuzz:   /'
  fi
  if [[ -z $execs_min || $execs -lt $execs_min ]]; then execs_min=$execs; fi
done
echo "HELM_RESULT fuzz_execs_min ${execs_min:-0}"
echo "HELM_RESULT fuzz_crashes $crashes"
[[ $crashes -eq 0 ]]
