#!/usr/bin/env bash
# GPU check of the HSTU runtime's CUDA path, in two halves:
#
#   scripts/device_check.sh build [BUNDLE]   here (nvcc, no GPU): builds the CUDA test and
#       benchmark binaries and bundles them with the non-system shared libraries they link
#       (found with ldd) into BUNDLE (default .device/model, git-ignored). cuBLAS is not bundled
#       (libcublasLt alone is ~540 MB): the GPU machine's CUDA toolkit or PyTorch wheel provides it.
#   scripts/device_check.sh run [BUNDLE]     on the GPU machine: runs helm-cuda-info, the
#       CUDA-vs-reference tests (model kernels; pool CUDA backend vs CPU), the GPU benchmarks
#       and, where compute-sanitizer is found, a memcheck of the smaller model tests, and prints
#       a short table. Exit status 0 when every step passed (memcheck counts only when it ran to
#       the end: a missing sanitizer or its time limit is reported, not failed). Every step has
#       a time limit and memcheck gets only what is left of a 270 s budget, so the run ends within
#       about 4.5 minutes even when everything hangs; a normal run takes one to two.
#
# With the device tool: build here, then one call
#   run(command="scripts/device_check.sh run", carry=[".device/model"], timeout_s=300)
# Environment: BUILD_DIR (default build), JOBS (default 2).
set -uo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
bundle="${2:-.device/model}"
build_dir="${BUILD_DIR:-build}"
bins=(helm_model_cuda_test helm_pool_gpu_test helm_bench_model helm_bench_node helm-cuda-info)

# Libraries the GPU machine has itself, or that must come from its driver/toolkit.
is_system_lib() {
  case "$(basename "$1")" in
    linux-vdso*|ld-linux*|libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|libstdc++.so*|\
    libgcc_s.so*|libcuda.so*|libcublas.so*|libcublasLt.so*) return 0 ;;
  esac
  return 1
}

do_build() {
  set -e
  if [[ ! -f "$build_dir/build.ninja" ]] || ! grep -q "HELM_WITH_CUDA:STRING=\(AUTO\|ON\)" "$build_dir/CMakeCache.txt"; then
    cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHELM_WITH_CUDA=ON
  fi
  ninja -C "$build_dir" -j "${JOBS:-2}" "${bins[@]}"
  rm -rf "$bundle"
  mkdir -p "$bundle/lib"
  for b in "${bins[@]}"; do
    [[ -x "$build_dir/bin/$b" ]] || { echo "device_check: $b was not built (is nvcc there?)" >&2; exit 1; }
    cp "$build_dir/bin/$b" "$bundle/"
    strip --strip-unneeded "$bundle/$b" 2>/dev/null || true
    ldd "$build_dir/bin/$b" | awk '/=> \//{print $3}' | while read -r lib; do
      if ! is_system_lib "$lib" && [[ ! -e "$bundle/lib/$(basename "$lib")" ]]; then
        cp -L "$lib" "$bundle/lib/"
      fi
    done
  done
  git rev-parse --short HEAD > "$bundle/COMMIT" 2>/dev/null || true
  echo "device_check: bundle $bundle ($(du -sh "$bundle" | cut -f1)):"
  ls "$bundle" "$bundle/lib" | tr '\n' ' '
  echo
}

# compute-sanitizer on the GPU machine (PATH or the toolkit), or nothing.
find_sanitizer() {
  local d
  command -v compute-sanitizer 2>/dev/null && return
  for d in "${CUDA_HOME:-/usr/local/cuda}" /usr/local/cuda /usr/local/cuda-13*; do
    [[ -x "$d/bin/compute-sanitizer" ]] && { echo "$d/bin/compute-sanitizer"; return; }
  done
  d=$(find /usr/local /opt -name compute-sanitizer -type f -perm -u+x -print -quit 2>/dev/null)
  [[ -n "$d" ]] && echo "$d"
}

# Directory holding libcublas.so.13 on the GPU machine (toolkit or PyTorch's nvidia-cublas wheel).
find_cublas() {
  local d
  for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" "${CUDA_HOME:-/usr/local/cuda}/lib" \
           /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
           /usr/lib/x86_64-linux-gnu; do
    [[ -e "$d/libcublas.so.13" ]] && { echo "$d"; return; }
  done
  # PyTorch's wheels: nvidia/cublas/lib (cu12 layout) or nvidia/cu13/lib.
  for d in $(python3 -c 'import nvidia, os
for p in nvidia.__path__:
    print(os.path.join(p, "cublas", "lib")); print(os.path.join(p, "cu13", "lib"))' 2>/dev/null); do
    [[ -e "$d/libcublas.so.13" ]] && { echo "$d"; return; }
  done
  d=$(find /usr /opt -name libcublas.so.13 -print -quit 2>/dev/null) && [[ -n "$d" ]] &&
    { dirname "$d"; return; }
}

do_run() {
  [[ -d "$bundle" ]] || { echo "device_check: no bundle at $bundle (run 'build' first, carry it)" >&2; exit 2; }
  chmod +x "$bundle"/helm* 2>/dev/null  # in case the copy lost the executable bits
  local cublas_dir
  cublas_dir=$(find_cublas)
  export LD_LIBRARY_PATH="$PWD/$bundle/lib${cublas_dir:+:$cublas_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "device_check: bundle of commit $(cat "$bundle/COMMIT" 2>/dev/null || echo '?'), cuBLAS from ${cublas_dir:-NOT FOUND}"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  local status=0 info test_out test_rc bench_out bench_rc
  info=$(timeout 30 "$bundle/helm-cuda-info" 2>&1); echo "$info"
  test_out=$(timeout 90 "$bundle/helm_model_cuda_test" --gtest_brief=1 2>&1); test_rc=$?
  echo "$test_out" | tail -40
  local pool_out pool_rc
  pool_out=$(timeout 40 "$bundle/helm_pool_gpu_test" --gtest_brief=1 2>&1); pool_rc=$?
  echo "$pool_out" | tail -20
  bench_out=$(timeout 90 "$bundle/helm_bench_model" --gpu-only 2>&1); bench_rc=$?
  echo "$bench_out"
  # The node core on the GPU (the embedded config's pool.backend auto picks CUDA): max_batch 8 vs 1.
  local node_out node_rc
  node_out=$(timeout 60 "$bundle/helm_bench_node" --requests 200 --rounds 1 2>&1 |
    grep -v '\[info\]'; exit "${PIPESTATUS[0]}"); node_rc=$?
  echo "$node_out"
  # The simulator's cost-model calibration of this GPU (issue 12), under $OUT when set, else in the
  # bundle; reported, never counted.
  timeout 60 "$bundle/helm_bench_model" --gpu-only \
    --calibrate "${OUT:-$bundle}/calibration-gpu.json" 2>&1 | tail -16 || true
  # Memcheck of every CUDA path test but the long forward sweep (each kernel, both attention
  # modes with split-K, cached bf16 blocks, relocation, copies): out-of-bounds or misaligned
  # accesses the value comparisons can miss.
  local sanitizer san_out san_rc san_errors san_verdict san_limit
  sanitizer=$(find_sanitizer)
  san_limit=$((270 - SECONDS))
  ((san_limit > 75)) && san_limit=75
  if [[ -z "$sanitizer" ]]; then
    san_verdict="NOT RUN (compute-sanitizer not found; not counted)"
  elif ((san_limit < 20)); then
    san_verdict="NOT RUN (no time left; not counted)"
  else
    san_out=$(timeout "$san_limit" "$sanitizer" --tool memcheck --report-api-errors no --error-exitcode 3 \
      "$bundle/helm_model_cuda_test" --gtest_brief=1 \
      --gtest_filter='CudaPath.*-CudaPath.ForwardMatchesReferenceForEveryKvDtypeAndSplit' 2>&1)
    san_rc=$?
    echo "$san_out" | tail -30
    san_errors=$(echo "$san_out" | sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' | tail -1)
    if [[ $san_rc -eq 124 || $san_rc -eq 137 ]]; then
      san_verdict="NOT RUN (time limit ${san_limit} s; not counted)"
    elif [[ $san_rc -eq 0 && "${san_errors:-x}" == 0 ]]; then
      san_verdict="PASS (0 errors)"
    else
      san_verdict="FAIL (errors ${san_errors:-?}, exit $san_rc)"
      status=1
    fi
  fi
  echo
  echo "================ device_check summary ================"
  printf '%-34s %s\n' "helm-cuda-info" "$(echo "$info" | grep -q 'hello kernel ok' && echo PASS || echo FAIL)"
  echo "$info" | grep -q 'hello kernel ok' || status=1
  local passed failed skipped
  passed=$(echo "$test_out" | sed -n 's/.*\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  # Each failed test appears twice (as it fails, and in the summary): count names once.
  failed=$(echo "$test_out" | sed -n 's/^\[  FAILED  \] \([A-Za-z][A-Za-z0-9_./]*\).*/\1/p' | sort -u | wc -l)
  skipped=$(echo "$test_out" | sed -n 's/.*\[  SKIPPED \] \([0-9]*\) test.*/\1/p' | tail -1)
  printf '%-34s %s (passed %s, failed %s, skipped %s, exit %s)\n' "helm_model_cuda_test" \
    "$([[ $test_rc -eq 0 && ${skipped:-0} -le 1 ]] && echo PASS || echo FAIL)" "${passed:-0}" \
    "$failed" "${skipped:-0}" "$test_rc"
  [[ $test_rc -eq 0 && ${skipped:-0} -le 1 ]] || status=1
  printf '%-34s %s (exit %s)\n' "helm_pool_gpu_test (CUDA vs CPU)" \
    "$([[ $pool_rc -eq 0 ]] && ! echo "$pool_out" | grep -q SKIPPED && echo PASS || echo FAIL)" "$pool_rc"
  [[ $pool_rc -eq 0 ]] && ! echo "$pool_out" | grep -q SKIPPED || status=1
  printf '%-34s %s (exit %s)\n' "helm_bench_model --gpu-only" \
    "$([[ $bench_rc -eq 0 ]] && echo PASS || echo FAIL)" "$bench_rc"
  [[ $bench_rc -eq 0 ]] || status=1
  echo "$bench_out" | awk '/^HELM_RESULT/{printf "  %-32s %s\n", $2, $3}'
  printf '%-34s %s (exit %s)\n' "helm_bench_node (cuda pool)" \
    "$([[ $node_rc -eq 0 ]] && echo PASS || echo FAIL)" "$node_rc"
  [[ $node_rc -eq 0 ]] || status=1
  echo "$node_out" | awk '/^HELM_RESULT/{printf "  %-32s %s\n", $2, $3}'
  printf '%-34s %s\n' "memcheck (model tests)" "$san_verdict"
  echo "======================================================"
  exit $status
}

case "$mode" in
  build) do_build ;;
  run) do_run ;;
  *) echo "usage: scripts/device_check.sh build|run [BUNDLE]" >&2; exit 2 ;;
esac
