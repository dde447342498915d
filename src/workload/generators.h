// The two Generator implementations behind Generator::Create (private to helm::workload).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "helm/workload/generator.h"

namespace helm::workload::internal {

// Milliseconds since the Unix epoch at the start of every synthetic run (2023-11-14T22:13:20Z):
// a fixed origin keeps history timestamps deterministic for a seed.
inline constexpr int64_t kEpochMs = 1'700'000'000'000;

absl::StatusOr<std::unique_ptr<Generator>> NewSyntheticGenerator(const WorkloadOptions& options);
absl::StatusOr<std::unique_ptr<Generator>> NewTraceGenerator(const WorkloadOptions& options);

}  // namespace helm::workload::internal
