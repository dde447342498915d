// The one place that picks a kernel path (and the only file of src/model that knows whether CUDA
// was built).
#include "absl/strings/str_cat.h"
#include "cpu/cpu_kernels.h"
#include "helm/model/kernels.h"
#include "ref/ref_kernels.h"

#if HELM_WITH_CUDA
#include "cuda/cuda_kernels.h"
#endif

namespace helm::model {

bool CudaAvailable() {
#if HELM_WITH_CUDA
  return kernels::cuda::CudaDeviceCount() > 0;
#else
  return false;
#endif
}

absl::StatusOr<std::shared_ptr<const Kernels>> CreateKernels(absl::string_view name,
                                                             int32_t cpu_threads) {
  if (name == "reference") return std::make_shared<const kernels::RefKernels>();
  if (name == "cpu") return std::make_shared<const kernels::CpuKernels>(cpu_threads);
  if (name == "cuda" || name == "auto") {
#if HELM_WITH_CUDA
    if (kernels::cuda::CudaDeviceCount() > 0) return kernels::cuda::NewCudaKernels(0);
#endif
    if (name == "auto") return std::make_shared<const kernels::CpuKernels>(cpu_threads);
    return absl::UnavailableError(
        "model.kernels: 'cuda' needs a CUDA build (HELM_WITH_CUDA) and a visible GPU");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("model.kernels: must be one of {auto, reference, cpu, cuda}, got '", name, "'"));
}

}  // namespace helm::model
