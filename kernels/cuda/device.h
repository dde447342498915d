// CUDA device discovery. Compiles without CUDA; the implementation is device.cu (built with nvcc
// where HELM_WITH_CUDA is on). Any CUDA error (no driver, no device) means "no GPU".
#pragma once

#include <string>
#include <vector>

namespace helm::kernels::cuda {

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int sm_major = 0;
  int sm_minor = 0;
  long long memory_bytes = 0;
  int multiprocessors = 0;
};

// The visible CUDA devices; empty with `*why_none` set when there are none (no driver, no GPU).
std::vector<DeviceInfo> ListDevices(std::string* why_none);

// Launches a tiny kernel on device `ordinal` (c[i] = a[i] + b[i] over n values) and checks the
// result on the host: proof that the toolkit, the architectures and the driver agree. Returns ""
// on success, else what failed.
std::string RunHelloKernel(int ordinal, int n);

}  // namespace helm::kernels::cuda
