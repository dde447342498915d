// The one place that chooses a storage backend (and the only pool file that knows whether this
// build has CUDA).
#include "absl/strings/str_cat.h"
#include "helm/common/logging.h"
#include "helm/pool/storage.h"
#include "spdlog/spdlog.h"

#if HELM_WITH_CUDA
#include "pool/cuda_storage.h"
#endif

namespace helm::pool {

bool CudaStorageAvailable(std::string* why_not) {
#if HELM_WITH_CUDA
  return internal::CudaDeviceUsable(0, why_not);
#else
  if (why_not != nullptr) *why_not = "this build has no CUDA support (nvcc was not found)";
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<Storage>> CreateCudaStorage(int64_t bytes, int32_t device) {
  if (bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("pool.bytes: must be > 0, got ", bytes));
  }
#if HELM_WITH_CUDA
  return internal::CreateCudaStorageImpl(bytes, device);
#else
  return absl::UnavailableError(
      "pool.backend cuda: this build has no CUDA support (nvcc was not found at configure time)");
#endif
}

absl::StatusOr<std::unique_ptr<Storage>> CreateStorage(const PoolOptions& options) {
  absl::StatusOr<std::unique_ptr<Storage>> storage;
  if (options.backend == "cpu") {
    storage = CreateCpuStorage(options.bytes, options.pcie_emulation_gbps);
  } else if (options.backend == "none") {
    storage = CreatePayloadFreeStorage(options.bytes);
  } else if (options.backend == "cuda") {
    storage = CreateCudaStorage(options.bytes, options.device);
  } else if (options.backend == "auto") {
    std::string why_not;
    if (CudaStorageAvailable(&why_not)) {
      storage = CreateCudaStorage(options.bytes, options.device);
    } else {
      spdlog::info("pool: no usable GPU ({}), using the cpu backend", why_not);
      storage = CreateCpuStorage(options.bytes, options.pcie_emulation_gbps);
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool.backend: must be one of {auto, cpu, cuda, none}, got '", options.backend, "'"));
  }
  if (storage.ok()) {
    spdlog::info("pool: storage backend {} with an arena of {} bytes", (*storage)->name(),
                 options.bytes);
  }
  return storage;
}

}  // namespace helm::pool
