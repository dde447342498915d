#!/usr/bin/env bash
# helm-train refuses bad flags and bad training configs at start: exit status 2, what is wrong
# named on stderr.
set -uo pipefail
train=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
check() {  # check <what> <expected text> <args...>
  local what=$1 text=$2
  shift 2
  "$train" "$@" --no-plot > "$dir/stdout" 2> "$dir/stderr"
  local rc=$?
  if [[ $rc -ne 2 ]] || ! grep -q -- "$text" "$dir/stderr"; then
    echo "FAIL: $what: exit $rc, stderr: $(cat "$dir/stderr")"
    failures=$((failures + 1))
  else
    echo "ok: $what: $(head -c 160 "$dir/stderr" | tr '\n' ' ')"
  fi
}
expect() {  # expect <key> <yaml>
  printf '%s\n' "$2" > "$dir/c.yaml"
  check "$1" "$1" --config "$dir/c.yaml" --out "$dir/out"
}
expect train.iteratons $'train:\n  iteratons: 3'
expect train.load_max $'train:\n  load_max: 20'
expect train.load_min $'train:\n  load_min: 0.9\n  load_max: 0.5'
expect train.profiles $'train:\n  profiles: [nope]'
expect train.gpus $'train:\n  gpus: [tpu]'
expect train.host_gathers $'train:\n  host_gathers: [-1]'
expect train.anneal_lr $'train:\n  anneal_lr: maybe'
expect pool.chunk_bytes $'pool:\n  chunk_bytes: 1000'
printf 'train:\n  iterations: 1\n' > "$dir/ok.yaml"
check "--iterations 0" "--iterations" --config "$dir/ok.yaml" --out "$dir/out" --iterations 0
check "--envs x" "--envs" --config "$dir/ok.yaml" --out "$dir/out" --envs x
check "--bogus" "bogus" --config "$dir/ok.yaml" --out "$dir/out" --bogus
check "missing --config" "config" --out "$dir/out"
check "unreadable --config" "cannot read" --config "$dir/none.yaml" --out "$dir/out"
exit $((failures > 0))
