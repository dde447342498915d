#!/usr/bin/env bash
# Installs the Debian 12 packages HELM builds and tests with. Idempotent: a no-op (no apt-get
# call, no root needed) when every package is already installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libspdlog-dev libfmt-dev libyaml-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-dev nlohmann-json3-dev libcli11-dev libxxhash-dev libcpp-httplib-dev prometheus
  python3-grpcio python3-protobuf python3-yaml python3-matplotlib python3-numpy openssl
)
# LibTorch is only for the offline PPO trainer; install it with HELM_WITH_TORCH=1.
if [[ "${HELM_WITH_TORCH:-0}" == "1" ]]; then packages+=(libtorch-dev); fi
# clang-14 for `make check-threads` (HELM_WITH_CLANG=1) and, with libFuzzer and the sanitizer
# runtimes, for `make fuzz` (HELM_WITH_FUZZ=1).
if [[ "${HELM_WITH_CLANG:-0}" == "1" ]]; then packages+=(clang-14); fi
if [[ "${HELM_WITH_FUZZ:-0}" == "1" ]]; then
  packages+=(clang-14 libfuzzer-14-dev libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "deps: installing ${#missing[@]} missing Debian packages: ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
echo "deps: done"
