// The Generator implementations behind Generator::Create (private to helm::workload).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "helm/workload/generator.h"

namespace helm::workload::internal {

// Milliseconds since the Unix epoch at the start of every synthetic run (2023-11-14T22:13:20Z):
// a fixed origin keeps history timestamps deterministic for a seed.
inline constexpr int64_t kEpochMs = 1'700'000'000'000;

// `catalog_seed` orders the items by popularity (default: options.seed): two generators with the
// same profile and catalog seed share their popular items.
absl::StatusOr<std::unique_ptr<Generator>> NewSyntheticGenerator(
    const WorkloadOptions& options, std::optional<uint64_t> catalog_seed = std::nullopt);
// Two surfaces (options.mix enabled): see Generator::Create.
absl::StatusOr<std::unique_ptr<Generator>> NewMixGenerator(const WorkloadOptions& options);
absl::StatusOr<std::unique_ptr<Generator>> NewTraceGenerator(const WorkloadOptions& options);

}  // namespace helm::workload::internal
