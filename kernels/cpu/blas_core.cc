#include "blas_core.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

extern "C" char* openblas_get_corename(void);

namespace helm::kernels::cpu {

void ReexecWithFastBlasIfNeeded(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  if (std::strcmp(openblas_get_corename(), "Prescott") != 0) return;
  const char* core = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
    core = "SkylakeX";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    core = "Haswell";
  }
  if (core == nullptr) return;
  setenv("OPENBLAS_CORETYPE", core, 1);
  execv("/proc/self/exe", argv);  // returns only on failure: carry on with the slow kernels
}

const char* BlasCoreDescription() {
  static const std::string description =
      std::string(openblas_get_corename()) +
      (std::getenv("OPENBLAS_CORETYPE") != nullptr ? " (set by OPENBLAS_CORETYPE)" : "");
  return description.c_str();
}

}  // namespace helm::kernels::cpu
