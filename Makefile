# HELM: the two commands are `make run` and `make test`; each does all of the set-up first.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
HELM_WITH_CUDA ?= AUTO
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test test-fast run serve bench bench-cluster clean format help

all: build

help:
	@echo "make run     set up, build, start a local cluster and run the demo"
	@echo "make test    set up, build, run the whole test suite"
	@echo "make build | deps | clean | serve | bench | bench-cluster"

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

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 900 -j $(JOBS)

run: build
	scripts/run_demo.sh $(BUILD_DIR)

serve: build
	scripts/serve.sh $(BUILD_DIR)

bench: build
	scripts/bench.sh $(BUILD_DIR)

bench-cluster: build
	$(BUILD_DIR)/bin/helm_bench_cluster --out out/bench-cluster

clean:
	rm -rf $(BUILD_DIR)
