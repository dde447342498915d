// The CUDA storage backend (cuda_storage.cc, built only where HELM_CUDA_ENABLED). Reached only
// through the factory in storage_factory.cc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "helm/pool/storage.h"

namespace helm::pool::internal {

absl::StatusOr<std::unique_ptr<Storage>> CreateCudaStorageImpl(int64_t bytes, int32_t device);
bool CudaDeviceUsable(int32_t device, std::string* why_not);

}  // namespace helm::pool::internal
