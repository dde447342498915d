// helm-cuda-info: lists CUDA devices and runs a tiny kernel on each; says "no GPU" cleanly
// (exit status 0) where there is no driver or no device.
#include <cstdio>
#include <string>

#include "device.h"

int main() {
  std::string why_none;
  const auto devices = helm::kernels::cuda::ListDevices(&why_none);
  if (devices.empty()) {
    std::printf("no GPU (%s)\n", why_none.c_str());
    return 0;
  }
  int failures = 0;
  for (const auto& d : devices) {
    const std::string result = helm::kernels::cuda::RunHelloKernel(d.ordinal, 1 << 20);
    std::printf("cuda:%d %s sm_%d%d %.1f GiB %d SMs: hello kernel %s\n", d.ordinal, d.name.c_str(),
                d.sm_major, d.sm_minor, static_cast<double>(d.memory_bytes) / (1 << 30),
                d.multiprocessors, result.empty() ? "ok" : result.c_str());
    failures += result.empty() ? 0 : 1;
  }
  return failures == 0 ? 0 : 1;
}
