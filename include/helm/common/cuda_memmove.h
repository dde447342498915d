// Device-to-device memmove on a stream, for the CUDA backends (include only where the CUDA
// runtime is available). cudaMemcpyAsync leaves overlapping ranges undefined, while the CPU
// backends memmove: disjoint ranges copy directly, overlapping ones go through a stream-ordered
// temporary (rare: the caches and the model move into free space).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace helm {

inline cudaError_t MemmoveDeviceAsync(void* dst, const void* src, size_t bytes,
                                      cudaStream_t stream) {
  if (bytes == 0 || dst == src) return cudaSuccess;
  const auto d = reinterpret_cast<uintptr_t>(dst);
  const auto s = reinterpret_cast<uintptr_t>(src);
  if (d >= s + bytes || s >= d + bytes) {
    return cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
  }
  void* tmp = nullptr;
  cudaError_t e = cudaMallocAsync(&tmp, bytes, stream);
  if (e != cudaSuccess) return e;
  e = cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, stream);
  if (e == cudaSuccess) e = cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, stream);
  const cudaError_t freed = cudaFreeAsync(tmp, stream);
  return e != cudaSuccess ? e : freed;
}

}  // namespace helm
