#!/usr/bin/env bash
# make soak (not in CI): the local cluster (router + 2 nodes, the embedded configs/local.yaml) under
# steady load for SOAK_SECONDS (default 1800) at SOAK_RATE requests/s (default 225: 70% of the
# ~320/s capacity helm_bench_cluster measures on the 2-core development VM), while every node's split
# is moved between 0.35 and 0.65 every SOAK_MOVE_SECONDS (default 5) with helm-ctl set-split. The
# router's and the nodes' resident memory and open file descriptors are sampled every 10 s; growth
# is measured from the end of the warm-up (the first 10% of the run, at least 20 s) to the end.
# Prints HELM_RESULT soak_rss_growth (relative, aim <= 0.05), soak_fd_growth (aim 0) and
# soak_errors (requests not OK, aim 0); the samples go to out/soak/samples.csv.
set -euo pipefail
build_dir=${1:-build}
bin="$build_dir/bin"
out=${HELM_SOAK_OUT:-out/soak}
seconds=${SOAK_SECONDS:-1800}
rate=${SOAK_RATE:-225}
move_s=${SOAK_MOVE_SECONDS:-5}
mkdir -p "$out"
warmup=$(( seconds / 10 > 20 ? seconds / 10 : 20 ))

cat > "$out/inner.sh" <<INNER
#!/usr/bin/env bash
# Runs inside helm-cluster: \$1 router, \$2 nodes (comma-separated).
set -uo pipefail
"$bin/helm-bench" --target "\$1" --nodes "\$2" --regime steady --duration $seconds --rate $rate \
  --out "$out/bench" --no-plot > "$out/bench.log" 2>&1 &
bench=\$!
echo "t_s,rss_kb,fds" > "$out/samples.csv"
start=\$(date +%s); next_move=0; next_sample=0; share=0.35
while kill -0 \$bench 2>/dev/null; do
  now=\$(( \$(date +%s) - start ))
  if (( now >= next_move )); then
    share=\$([[ \$share == 0.35 ]] && echo 0.65 || echo 0.35)
    for node in \${2//,/ }; do "$bin/helm-ctl" set-split --target "\$node" --emb-share \$share >/dev/null 2>&1 || echo "set-split failed on \$node"; done
    next_move=\$(( now + $move_s ))
  fi
  if (( now >= next_sample )); then
    rss=0; fds=0
    for pid in \$(pgrep -P \$PPID -f 'helm-(node|router)'); do
      rss=\$(( rss + \$(awk '/VmRSS/ {print \$2}' /proc/\$pid/status) ))
      fds=\$(( fds + \$(ls /proc/\$pid/fd | wc -l) ))
    done
    echo "\$now,\$rss,\$fds" >> "$out/samples.csv"
    printf '\r[soak %5d/%d s] rss %d kB, fds %d' \$now $seconds \$rss \$fds
    next_sample=\$(( now + 10 ))
  fi
  sleep 1
done
echo
wait \$bench
INNER
chmod +x "$out/inner.sh"
echo "== soak: ${seconds} s at ${rate} req/s, splits moving every ${move_s} s; warm-up ${warmup} s"
"$bin/helm-cluster" --ephemeral-ports --log-dir "$out/logs" -- "$out/inner.sh" {router} {nodes}
tail -3 "$out/bench.log"
/usr/bin/python3 - "$out/samples.csv" "$out/bench/summary.json" "$warmup" <<'PY'
import csv, json, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))]
warm = [r for r in rows if int(r["t_s"]) >= int(sys.argv[3])]
if len(warm) < 2:
    sys.exit("soak: too few samples after the warm-up; run longer")
first, last = warm[0], warm[-1]
rss_growth = (int(last["rss_kb"]) - int(first["rss_kb"])) / int(first["rss_kb"])
fd_growth = int(last["fds"]) - int(first["fds"])
overall = json.load(open(sys.argv[2]))["overall"]
errors = overall["errors"] + overall["dropped"]
print(f"rss {first['rss_kb']} -> {last['rss_kb']} kB, fds {first['fds']} -> {last['fds']}, "
      f"{overall['ok']} OK of {overall['sent']} sent")
print(f"HELM_RESULT soak_rss_growth {rss_growth:.4f}")
print(f"HELM_RESULT soak_fd_growth {fd_growth}")
print(f"HELM_RESULT soak_errors {errors}")
PY
