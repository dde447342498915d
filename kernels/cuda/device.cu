#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "device.h"

namespace helm::kernels::cuda {
namespace {

__global__ void AddKernel(const float* a, const float* b, float* c, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}

std::string Describe(cudaError_t error) {
  return std::string(cudaGetErrorName(error)) + ": " + cudaGetErrorString(error);
}

}  // namespace

std::vector<DeviceInfo> ListDevices(std::string* why_none) {
  std::vector<DeviceInfo> devices;
  int count = 0;
  // Without a driver this is cudaErrorInsufficientDriver, not cudaErrorNoDevice: any error
  // means no GPU.
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    if (why_none != nullptr) *why_none = Describe(error);
    return devices;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    devices.push_back(DeviceInfo{i, prop.name, prop.major, prop.minor,
                                 static_cast<long long>(prop.totalGlobalMem),
                                 prop.multiProcessorCount});
  }
  if (devices.empty() && why_none != nullptr) *why_none = "no CUDA device visible";
  return devices;
}

std::string RunHelloKernel(int ordinal, int n) {
  if (cudaError_t e = cudaSetDevice(ordinal); e != cudaSuccess) return Describe(e);
  std::vector<float> a(n), b(n), c(n);
  for (int i = 0; i < n; ++i) {
    a[i] = static_cast<float>(i);
    b[i] = 0.5f * static_cast<float>(i);
  }
  float *da = nullptr, *db = nullptr, *dc = nullptr;
  const size_t bytes = sizeof(float) * static_cast<size_t>(n);
  std::string failure;
  if (cudaMalloc(&da, bytes) != cudaSuccess || cudaMalloc(&db, bytes) != cudaSuccess ||
      cudaMalloc(&dc, bytes) != cudaSuccess) {
    failure = "cudaMalloc failed";
  } else {
    // Each step's error by name: a launch error (e.g. no kernel image for this architecture) is
    // only reported by cudaGetLastError, not by the synchronize.
    cudaError_t e = cudaMemcpy(da, a.data(), bytes, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(db, b.data(), bytes, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
      AddKernel<<<(n + 255) / 256, 256>>>(da, db, dc, n);
      e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaMemcpy(c.data(), dc, bytes, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) failure = Describe(e);
    for (int i = 0; failure.empty() && i < n; ++i) {
      if (c[i] != a[i] + b[i]) failure = "wrong result at index " + std::to_string(i);
    }
  }
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  return failure;
}

}  // namespace helm::kernels::cuda
