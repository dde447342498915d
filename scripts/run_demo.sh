#!/usr/bin/env bash
# make run: a local cluster (router + 2 nodes, embedded configs/local.yaml) on 127.0.0.1, then
# ~80 s of open-loop demo traffic through steady -> trend -> burst with live progress, the summary
# table, and a plot of latency and per-node split over time. Ends by itself.
set -euo pipefail
build_dir=${1:-build}
bin="$build_dir/bin"
out=${HELM_DEMO_OUT:-out/demo}
mkdir -p "$out"

echo "== HELM demo: local cluster on 127.0.0.1 (router + 2 nodes), then steady -> trend -> burst"
"$bin/helm-cluster" --ephemeral-ports --log-dir "$out/logs" -- \
  "$bin/helm-bench" --target {router} --nodes {nodes} ${HELM_DEMO_PHASES:+--phases "$HELM_DEMO_PHASES"} \
    --out "$out"
echo "== summary: $out/summary.json, time series: $out/timeseries.csv, plot: $out/plot.png"
echo "== process logs: $out/logs"
