#!/usr/bin/env bash
# helm_bench_node --calibrate --spread-from: the service-time spread comes from a real cluster's
# requests.csv. 150 answers of the same work with compute_us 1000..1149 (plus rows it must skip: an
# error, a batch of two) give a spread whose maximum over its median is 1149 / 1075.
set -euo pipefail
bench=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
{
  echo "seq,scheduled_ms,phase,code,node,send_lag_us,latency_us,queue_us,compute_us,batch_size,attempts,cached_tokens,computed_tokens,emb_hits,emb_misses"
  for i in $(seq 0 149); do
    echo "$i,$i.000,steady,0,node-0,10,5000,200,$((1000 + i)),1,1,0,10,128,10"
  done
  echo "150,150.000,steady,4,,0,0,0,0,0,0,0,0,0,0"
  echo "151,151.000,steady,0,node-0,10,5000,200,99999,2,1,0,10,128,10"
} > "$dir/requests.csv"
"$bench" --quick --calibrate "$dir/calibration.json" --spread-from "$dir/requests.csv" \
  > "$dir/out.log" 2>&1 || { cat "$dir/out.log"; exit 1; }
/usr/bin/python3 - "$dir/calibration.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
q = dict((round(a, 3), b) for a, b in j["service_ratio_quantiles"])
ratio = q[1.0] / q[0.5]
assert abs(ratio - 1149 / 1075) < 0.002, f"max / median {ratio}, expected {1149 / 1075}"
assert "from 150 answers of a real cluster" in j["method"], j["method"]
print(f"ok: spread max / median {ratio:.4f} from 150 answers")
PY
printf 'seq,code\n0,0\n' > "$dir/short.csv"
if "$bench" --quick --calibrate "$dir/c2.json" --spread-from "$dir/short.csv" > "$dir/err.log" 2>&1; then
  echo "FAIL: a requests.csv without the columns was accepted"; exit 1
fi
grep -q "has no column batch_size" "$dir/err.log" || { echo "FAIL: $(cat "$dir/err.log")"; exit 1; }
echo "ok: a bad requests.csv is refused naming the missing column"
