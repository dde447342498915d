#!/usr/bin/env bash
# helm-sim refuses bad simulator configs at start: exit status 2, the key named on stderr.
set -uo pipefail
sim=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
expect() {  # expect <key> <yaml> [flags...]
  printf '%s\n' "$2" > "$dir/c.yaml"
  "$sim" --config "$dir/c.yaml" --out "$dir/out" --no-plot "${@:3}" > "$dir/stdout" 2> "$dir/stderr"
  local rc=$?
  if [[ $rc -ne 2 ]] || ! grep -q "$1" "$dir/stderr"; then
    echo "FAIL: $1: exit $rc, stderr: $(cat "$dir/stderr")"
    failures=$((failures + 1))
  else
    echo "ok: $1: $(head -c 160 "$dir/stderr" | tr '\n' ' ')"
  fi
}
expect simulator.num_nodes $'simulator:\n  num_nodes: 0'
expect simulator.gpu $'simulator:\n  gpu: tpu'
expect simulator.calibration_path $'simulator:\n  calibration_path: /nonexistent.json'
expect simulator.load $'simulator:\n  load: -1'
expect simulator.sweep_scales $'simulator:\n  sweep_profiles: [taobao]\n  sweep_scales: ["x"]'
expect simulator.sweep_regimes $'simulator:\n  sweep_profiles: [taobao]\n  sweep_regimes: [weekly]'
expect control.policy $'control:\n  policy: ppo'
expect control.policy_path $'control:\n  policy: helm'
expect control.burst_short_windows $'control:\n  burst_short_windows: 30'
expect control.adapter_bound $'control:\n  adapter_bound: 2'
expect control.min_step $'control:\n  step: 0.01\n  min_step: 0.1'
expect simulator.transport_path $'simulator:\n  transport_path: /nonexistent.json'
expect simulator.emb_sample_rate $'simulator:\n  emb_sample_rate: 0'
expect simulator.host_gather_bytes_per_s $'simulator:\n  host_gather_bytes_per_s: -1'
expect simulator.emb_sample_rate $'simulator:\n  emb_sample_rate: 0.0001'
expect simulator.bogus $'simulator:\n  bogus: 1'
expect simulator.warmup_s $'simulator:\n  warmup_s: -1'
expect simulator.sweep_history_cap $'simulator:\n  sweep_history_cap: -2'
expect 'is not PROFILE/REGIME/SCALE' $'simulator:\n  num_nodes: 1' --cell taobao/steady
expect simulator.sweep_profiles $'simulator:\n  num_nodes: 1' --cell nosuch/steady/8
expect simulator.sweep_controllers $'simulator:\n  num_nodes: 1' --cell taobao/steady/8 --row nosuch
# --set goes through the same checks as the file, and a malformed setting is named.
expect "control.hysteresis: must be" $'simulator:\n  num_nodes: 1' --set control.hysteresis=2
expect "unknown key 'control.hysterisis'" $'simulator:\n  num_nodes: 1' --set control.hysterisis=0.1
expect "expected section.key=value" $'simulator:\n  num_nodes: 1' --set control
expect "control.policy" $'simulator:\n  num_nodes: 1' --set control.policy.x=1
# An --out that cannot be a directory stops the run before it starts, named.
touch "$dir/a-file"
"$sim" --config "$dir/c.yaml" --out "$dir/a-file" --no-plot --duration 1 > "$dir/stdout" 2> "$dir/stderr"
rc=$?
if [[ $rc -ne 2 ]] || ! grep -q -- "--out: cannot make the directory $dir/a-file" "$dir/stderr"; then
  echo "FAIL: --out: exit $rc, stderr: $(cat "$dir/stderr")"
  failures=$((failures + 1))
else
  echo "ok: --out: $(head -c 160 "$dir/stderr")"
fi
exit $((failures > 0))
