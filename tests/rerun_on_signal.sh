#!/usr/bin/env bash
# Runs a test binary (line-buffered, so a crash's last test shows); if it dies by a signal, reruns
# it once and says so. Used for the TLS test only: Debian's gRPC 1.51 has been seen to abort in its
# own core (ref_counted.h "prior > 0", on tearing down a channel after a refused TLS handshake),
# about once in 100-200 runs. A test that fails its assertions exits 1 and is not rerun; a crash
# that repeats still fails.
set -uo pipefail
stdbuf -oL -eL "$@"
rc=$?
if (( rc > 128 )); then
  echo "rerun_on_signal: $1 died by signal $((rc - 128)); rerunning once"
  stdbuf -oL -eL "$@"
  rc=$?
fi
exit $rc
