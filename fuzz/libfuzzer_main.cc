// The libFuzzer driver of one target: HELM_FUZZ_ENTRY names its entry function (fuzz_targets.h).
// Built only with clang and HELM_FUZZ=ON (make fuzz).
#include <cstddef>
#include <cstdint>

#include "fuzz_targets.h"
#include "spdlog/spdlog.h"

#ifndef HELM_FUZZ_ENTRY
#error "HELM_FUZZ_ENTRY must name the target's entry function"
#endif

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // The code under test logs the errors it handles; millions of inputs would drown the output.
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return HELM_FUZZ_ENTRY(data, size);
}
