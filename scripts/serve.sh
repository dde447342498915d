#!/usr/bin/env bash
# make serve: a local cluster (router on 127.0.0.1:50060, nodes on :50061, :50062) serving until
# Ctrl-C. Try it with: /usr/bin/python3 examples/python_client.py --target 127.0.0.1:50060
set -euo pipefail
build_dir=${1:-build}
exec "$build_dir/bin/helm-cluster" --log-dir "${HELM_SERVE_LOGS:-out/serve-logs}"
