// The CUDA kernel path: cuBLAS sgemm for the dense layers, HELM's own kernels (launchers.h) for
// paged attention, embedding gather, KV append, block relocation and the fused row ops. Backend
// memory is device memory. Host header: compiles without CUDA headers.
//
// Thread-safety: the kernels object is shared; each thread uses its own KernelContext (a CUDA
// stream and a cuBLAS handle bound to it).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "helm/model/kernels.h"

namespace helm::kernels::cuda {

// Visible CUDA devices; 0 on any CUDA error (no driver, no device).
int CudaDeviceCount();

// The CUDA path on device `ordinal`. Unavailable when the device cannot be used.
absl::StatusOr<std::shared_ptr<const model::Kernels>> NewCudaKernels(int ordinal);

}  // namespace helm::kernels::cuda
