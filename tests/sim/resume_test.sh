#!/usr/bin/env bash
# helm-sim --resume: a sweep saves every finished cell under --out/cells; run again with --resume it
# takes the saved cells of the same config instead of running them (the same sweep.csv), and runs
# again a cell whose save is for another config or is damaged.
set -uo pipefail
sim=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
config() {  # config <duration_s>
  cat > "$dir/c.yaml" <<YAML
emb:
  num_items: 60000
node:
  workers: 2
  max_history: 1024
workload:
  max_history: 512
  candidates: 64
  rate_per_s: 150
  duration_s: $1
simulator:
  num_nodes: 2
  gpu: a100
  duration_s: $1
  sweep_profiles: [amazon-video-games]
  sweep_regimes: [steady, burst]
  sweep_scales: ["2"]
  sweep_split_min: 0.2
  sweep_split_max: 0.8
  sweep_split_step: 0.6
YAML
}
run() {  # run <name> [flags...]
  "$sim" --config "$dir/c.yaml" --out "$dir/out" --no-plot "${@:2}" > "$dir/$1.stdout" 2> "$dir/$1.stderr" ||
    fail "$1: exit $?: $(cat "$dir/$1.stderr")"
}
config 1
run first
ls "$dir"/out/cells/*.cell.json > /dev/null 2>&1 || fail "no cell saved under cells/"
cp "$dir/out/sweep.csv" "$dir/first.csv"
run second --resume
[[ $(grep -c "restored from" "$dir/second.stderr") -eq 2 ]] || fail "second: $(cat "$dir/second.stderr")"
cmp -s "$dir/first.csv" "$dir/out/sweep.csv" || fail "the resumed sweep.csv differs"
echo "ok: both cells restored, the same sweep.csv"
# A damaged save is named and its cell runs again; so does every cell of a changed config.
echo '{"format": "helm-sweep-cell-v1"}' > "$dir/out/cells/amazon-video-games-burst-2.cell.json"
run third --resume
grep -q "amazon-video-games-burst-2.cell.json: sweep cell: 'fingerprint' is missing" \
  "$dir/third.stderr" || fail "third: $(cat "$dir/third.stderr")"
[[ $(grep -c "restored from" "$dir/third.stderr") -eq 1 ]] || fail "third: $(cat "$dir/third.stderr")"
cmp -s "$dir/first.csv" "$dir/out/sweep.csv" || fail "the sweep.csv after a rerun cell differs"
echo "ok: a damaged save runs its cell again"
config 2
run fourth --resume
[[ $(grep -c "saved for another config" "$dir/fourth.stderr") -eq 2 ]] ||
  fail "fourth: $(cat "$dir/fourth.stderr")"
grep -q "restored from" "$dir/fourth.stderr" && fail "fourth restored a cell of another config"
echo "ok: a changed config runs every cell again"
