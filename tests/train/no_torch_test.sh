#!/usr/bin/env bash
# Fails when one of the given binaries loads LibTorch (issue 13: serving binaries never link it).
set -euo pipefail
status=0
for bin in "$@"; do
  if ldd "$bin" | grep -Ei 'libtorch|libc10|libcaffe2'; then
    echo "FAIL: $bin links LibTorch" >&2
    status=1
  else
    echo "ok: $(basename "$bin") does not link LibTorch"
  fi
done
exit $status
