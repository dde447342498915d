#!/usr/bin/env bash
# make run: starts helm-node on the embedded default config, shows its health answering SERVING,
# then stops it with SIGTERM and checks it exits cleanly.
set -euo pipefail
build_dir=${1:-build}
bin="$build_dir/bin"
log=$(mktemp -t helm-node-XXXXXX.log)

"$bin/helm-node" --listen 127.0.0.1:0 >"$log" 2>&1 &
node_pid=$!
trap 'kill -9 $node_pid 2>/dev/null || true' EXIT

port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/^LISTENING \([0-9]*\)$/\1/p' "$log")
  [[ -n "$port" ]] && break
  kill -0 $node_pid 2>/dev/null || { cat "$log"; echo "helm-node exited early"; exit 1; }
  sleep 0.1
done
[[ -n "$port" ]] || { cat "$log"; echo "helm-node did not start"; exit 1; }

echo "== helm-node on 127.0.0.1:$port (embedded configs/local.yaml)"
"$bin/helm-ctl" --target "127.0.0.1:$port" health --wait-ms 5000
echo "== SIGTERM"
kill -TERM $node_pid
status=0
wait $node_pid || status=$?
trap - EXIT
cat "$log"
echo "== helm-node exited with status $status"
exit $status
