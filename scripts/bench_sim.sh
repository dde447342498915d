#!/usr/bin/env bash
# make bench-sim: the simulator's fidelity and speed (issue 12).
#
# Fidelity: make run's cluster (helm-cluster + helm-bench, the embedded configs/local.yaml: 2 nodes
# on the CPU backend with PCIe emulation, 80 s steady -> trend -> burst) and helm-sim on
# configs/sim/demo-cpu.yaml (the same config and workload seed, so the very same request sequence,
# timed with the committed CPU calibration). Prints
#   sim_hit_error      the largest |sim - real| of the KV token hit ratio and the EMB hit rate
#   sim_p99_rel_error  |P99_sim - P99_real| / P99_real (and sim_p50_rel_error the same for P50)
#   sim_node_p99_rel_error, sim_node_p50_rel_error  the same for the time spent at the nodes
#                      (real: each reply's queue_us + compute_us from helm-bench's requests.csv;
#                      sim: node_latency_ms), which leaves out the gRPC hops and their threads
#                      (the simulator draws that time from the transport calibration that
#                      demo-cpu.yaml names, measured on another request sequence)
# Speed: helm-sim on configs/sim/speed-a100.yaml (32 A100 nodes, amazon-books, steady, 70% of
# capacity; its EMB caches simulate a 5% sample of the item ids) for HELM_BENCH_SIM_SPEED_S
# simulated seconds (default 2: the rate, not the length, is the figure; the full 600 s takes
# about an hour on one core), then the same run with every id (--emb-sample-rate 1) as the
# baseline. Prints sim_speedup_vs_realtime and sim_requests_per_s (sampled, as configured),
# sim_sampling_speedup (sampled over exact requests/s) and sim_sampling_emb_hit_error (|EMB hit
# ratio sampled - exact|; the KV token hit ratio's difference is printed beside it).
set -euo pipefail
build_dir=${1:-build}
bin="$build_dir/bin"
out=${HELM_BENCH_SIM_OUT:-out/bench-sim}
speed_s=${HELM_BENCH_SIM_SPEED_S:-2}
mkdir -p "$out"

echo "== bench-sim 1/3: the real cluster (80 s)"
"$bin/helm-cluster" --ephemeral-ports --log-dir "$out/real/logs" -- \
  "$bin/helm-bench" --target {router} --nodes {nodes} --out "$out/real" > "$out/real.log" 2>&1 || {
  tail -20 "$out/real.log"; echo "bench-sim: the real cluster run failed" >&2; exit 1; }
tail -4 "$out/real.log"

echo "== bench-sim 2/3: the simulator on the same requests"
"$bin/helm-sim" --config configs/sim/demo-cpu.yaml --out "$out/sim" 2>/dev/null | tee "$out/sim.log" |
  grep -v '^HELM_RESULT'

/usr/bin/python3 - "$out/real/summary.json" "$out/sim/summary.json" "$out/real/requests.csv" <<'PY'
import csv, json, sys
real = json.load(open(sys.argv[1]))["overall"]
sim = json.load(open(sys.argv[2]))
rl, sl, sn = real["latency_us"], sim["latency_ms"], sim["node_latency_ms"]
# The nodes' share of each OK reply, from its serving info.
node = sorted(int(r["queue_us"]) + int(r["compute_us"])
              for r in csv.DictReader(open(sys.argv[3])) if r["code"] == "0")
def quantile(values, q):
    return values[min(len(values) - 1, int(q * len(values)))] / 1000
rn = {"p50": quantile(node, 0.5), "p99": quantile(node, 0.99)}
rows = [("KV token hit", real["kv_token_hit_ratio"], sim["kv_token_hit"]),
        ("EMB hit", real["emb_hit_rate"], sim["emb_hit"]),
        ("P50 (ms)", rl["p50"] / 1000, sl["p50"]),
        ("P99 (ms)", rl["p99"] / 1000, sl["p99"]),
        ("node P50 (ms)", rn["p50"], sn["p50"]),
        ("node P99 (ms)", rn["p99"], sn["p99"]),
        ("requests", real["ok"], sim["completions"])]
print(f"{'':14s} {'real':>10s} {'sim':>10s}")
for name, r, s in rows:
    print(f"{name:14s} {r:10.3f} {s:10.3f}")
hit_error = max(abs(real["kv_token_hit_ratio"] - sim["kv_token_hit"]),
                abs(real["emb_hit_rate"] - sim["emb_hit"]))
print(f"HELM_RESULT sim_hit_error {hit_error:.4f}")
print(f"HELM_RESULT sim_p99_rel_error {abs(sl['p99'] - rl['p99'] / 1000) / (rl['p99'] / 1000):.3f}")
print(f"HELM_RESULT sim_p50_rel_error {abs(sl['p50'] - rl['p50'] / 1000) / (rl['p50'] / 1000):.3f}")
print(f"HELM_RESULT sim_node_p99_rel_error {abs(sn['p99'] - rn['p99']) / rn['p99']:.3f}")
print(f"HELM_RESULT sim_node_p50_rel_error {abs(sn['p50'] - rn['p50']) / rn['p50']:.3f}")
PY

echo "== bench-sim 3/3: speed, 32 A100 nodes at 70% of capacity, ${speed_s} simulated s"
"$bin/helm-sim" --config configs/sim/speed-a100.yaml --duration "$speed_s" --no-plot \
  --out "$out/speed" 2>/dev/null > "$out/speed.log"
sed -n '1,3p' "$out/speed.log"
grep -E '^HELM_RESULT sim_(speedup_vs_realtime|requests_per_s)' "$out/speed.log"
echo "== bench-sim 3/3: the same run with every item id (the exact baseline)"
"$bin/helm-sim" --config configs/sim/speed-a100.yaml --duration "$speed_s" --no-plot \
  --emb-sample-rate 1 --out "$out/speed-exact" 2>/dev/null > "$out/speed-exact.log"
sed -n '1p' "$out/speed-exact.log"
/usr/bin/python3 - "$out/speed/summary.json" "$out/speed-exact/summary.json" \
  "$out/speed.log" "$out/speed-exact.log" <<'PY'
import json, re, sys
sampled, exact = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
def rate(log):
    return float(re.search(r"^HELM_RESULT sim_requests_per_s (\S+)", open(log).read(), re.M)[1])
print(f"{'':14s} {'exact':>10s} {'sampled':>10s}")
for key in ("kv_token_hit", "emb_hit"):
    print(f"{key:14s} {exact[key]:10.4f} {sampled[key]:10.4f}")
for q in ("p50", "p99"):
    print(f"{q + ' (ms)':14s} {exact['latency_ms'][q]:10.3f} {sampled['latency_ms'][q]:10.3f}")
print(f"{'requests/s':14s} {rate(sys.argv[4]):10.0f} {rate(sys.argv[3]):10.0f}")
print(f"HELM_RESULT sim_sampling_speedup {rate(sys.argv[3]) / rate(sys.argv[4]):.2f}")
print(f"HELM_RESULT sim_sampling_emb_hit_error {abs(sampled['emb_hit'] - exact['emb_hit']):.4f}")
PY
