// OpenBLAS kernel selection for main(). OpenBLAS 0.3.21 (Debian 12) picks its kernels when it loads
// and falls back to its SSE3 "Prescott" kernels on CPU models it does not know (e.g. Emerald
// Rapids): about 5x slower than its AVX-512 kernels. The choice can only be changed through the
// OPENBLAS_CORETYPE environment variable, read at load time, so main() re-executes itself.
#pragma once

namespace helm::kernels::cpu {

// Call first thing in main(), before any thread starts. When OpenBLAS fell back to Prescott on a
// CPU with AVX-512 (or AVX2) and OPENBLAS_CORETYPE is unset, sets it (SkylakeX, or Haswell) and
// re-executes /proc/self/exe with the same argv; otherwise returns.
void ReexecWithFastBlasIfNeeded(char** argv);

// The OpenBLAS core in use, e.g. "SkylakeX"; "(set by OPENBLAS_CORETYPE)" appended when chosen.
const char* BlasCoreDescription();

}  // namespace helm::kernels::cpu
