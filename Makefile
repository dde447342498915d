# HELM: the two commands are `make run` and `make test`; each does all of the set-up first.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
HELM_WITH_CUDA ?= AUTO
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test test-fast run serve bench bench-cluster bench-sim soak clean format help \
        check-threads fuzz train

all: build

help:
	@echo "make run     set up, build, start a local cluster and run the demo"
	@echo "make test    set up, build, run the whole test suite"
	@echo "make build | deps | clean | serve | bench | bench-cluster | bench-sim | soak"
	@echo "make train   PPO training of the split controller's base policy (LibTorch; ~1 h)"
	@echo "make check-threads   clang-14 build with -Werror=thread-safety (build-clang-threads)"
	@echo "make fuzz            libFuzzer + ASan/UBSan on every fuzz target (build-fuzz;"
	@echo "                     FUZZ_SECONDS per target, default 60)"

deps:
	@scripts/deps.sh

$(BUILD_DIR)/build.ninja: CMakeLists.txt
	@$(MAKE) --no-print-directory deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DHELM_WITH_CUDA=$(HELM_WITH_CUDA) $(CMAKE_FLAGS)

configure: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DHELM_WITH_CUDA=$(HELM_WITH_CUDA) $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The test suite includes the trainer's LibTorch tests (the hand-written policy against torch's
# forward, a few PPO iterations), so it installs libtorch-dev first; the serving binaries never link it.
test:
	@HELM_WITH_TORCH=1 scripts/deps.sh
	@$(MAKE) --no-print-directory build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 900 -j $(JOBS)

run: build
	scripts/run_demo.sh $(BUILD_DIR)

serve: build
	scripts/serve.sh $(BUILD_DIR)

bench: build
	scripts/bench.sh $(BUILD_DIR)

bench-cluster: build
	$(BUILD_DIR)/bin/helm_bench_cluster --controller-rounds 3 --out out/bench-cluster

bench-sim: build
	scripts/bench_sim.sh $(BUILD_DIR)

# Not in CI: 30 minutes of load on the local cluster with the split moving (SOAK_SECONDS to change).
soak: build
	scripts/soak.sh $(BUILD_DIR)

# Not in CI: trains the split controller's base policy with PPO in the simulator (helm-train,
# LibTorch: installed here with HELM_WITH_TORCH=1) into out/train (TRAIN_ARGS: e.g.
# "--iterations 10 --envs 2"); about an hour on a 2-core machine with configs/train/base.yaml.
TRAIN_ARGS ?=
train:
	@HELM_WITH_TORCH=1 scripts/deps.sh
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DHELM_WITH_CUDA=$(HELM_WITH_CUDA) -DHELM_WITH_TORCH=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS) --target helm-train
	$(BUILD_DIR)/bin/helm-train --config configs/train/base.yaml --out out/train $(TRAIN_ARGS)

clean:
	rm -rf $(BUILD_DIR)

# ---- Development checks (README "Development checks"); not part of `make test` -----------------
# The lock annotations (ABSL_GUARDED_BY, ...) checked by clang: the whole tree, tests included,
# must build without a thread-safety warning.
CLANG_THREADS_DIR ?= build-clang-threads
check-threads:
	@HELM_WITH_CLANG=1 scripts/deps.sh
	CC=clang-14 CXX=clang++-14 cmake -S . -B $(CLANG_THREADS_DIR) -G Ninja \
	  -DCMAKE_BUILD_TYPE=Release -DHELM_WITH_CUDA=OFF -DCMAKE_CXX_FLAGS=-Werror=thread-safety
	cmake --build $(CLANG_THREADS_DIR) -j $(JOBS)
	@echo "check-threads: clean"

# libFuzzer targets (fuzz/) under ASan and UBSan: each runs FUZZ_RUNS executions or FUZZ_SECONDS
# seconds, whichever comes first; crashing inputs are left in build-fuzz/crashes/<target>/.
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= 1000000
FUZZ_TARGETS := rank_request config safetensors npy trace_csv node_state
fuzz:
	@HELM_WITH_FUZZ=1 scripts/deps.sh
	CC=clang-14 CXX=clang++-14 cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DHELM_WITH_CUDA=OFF -DHELM_BUILD_TESTS=OFF -DHELM_BUILD_BENCHMARKS=OFF -DHELM_FUZZ=ON \
	  -DHELM_SANITIZE=address,undefined "-DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link -g"
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target $(addprefix helm-fuzz-,$(FUZZ_TARGETS))
	fuzz/run_fuzz.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_RUNS)
