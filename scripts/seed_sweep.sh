#!/usr/bin/env bash
# Runs test binaries over a range of GoogleTest random seeds and lists every (test, seed) that
# fails. Tests that draw their inputs from ::testing::UnitTest::random_seed() are properties over
# seeds; `make test` runs each of them on one fixed seed (cmake/helm.cmake), and this sweep checks
# that the property holds on the others.
#
#   scripts/seed_sweep.sh [-n SEEDS] [-f FIRST] BINARY_NAME...   e.g. scripts/seed_sweep.sh sim emb
#
# BINARY_NAME is the component (build/bin/helm_<name>_test). Prints a line per failing seed with
# the failing tests and the command that reproduces it; exit status 1 when any seed failed.
# Environment: BUILD_DIR (default build).
set -uo pipefail
cd "$(dirname "$0")/.."

seeds=50
first=1
while getopts "n:f:" opt; do
  case "$opt" in
    n) seeds="$OPTARG" ;;
    f) first="$OPTARG" ;;
    *) echo "usage: $0 [-n SEEDS] [-f FIRST] BINARY_NAME..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [[ $# -eq 0 ]]; then
  echo "usage: $0 [-n SEEDS] [-f FIRST] BINARY_NAME..." >&2
  exit 2
fi

build_dir="${BUILD_DIR:-build}"
failed=0
for name in "$@"; do
  bin="$build_dir/bin/helm_${name}_test"
  if [[ ! -x "$bin" ]]; then
    echo "$name: no $bin (build first)" >&2
    exit 2
  fi
  bad=0
  for ((s = first; s < first + seeds; ++s)); do
    out=$("$bin" --gtest_brief=1 --gtest_random_seed="$s" 2>&1)
    rc=$?
    if [[ $rc -ne 0 ]]; then
      tests=$(grep -o '^\[  FAILED  \] [A-Za-z0-9_./]*' <<<"$out" | awk '{print $4}' | sort -u |
        paste -sd, -)
      echo "$name seed $s (exit $rc): ${tests:-no test named}" \
        "-> $bin --gtest_random_seed=$s --gtest_filter='${tests:-*}'"
      bad=$((bad + 1))
    fi
  done
  echo "$name: $bad of $seeds seeds failed (seeds $first..$((first + seeds - 1)))"
  [[ $bad -eq 0 ]] || failed=1
done
exit $failed
