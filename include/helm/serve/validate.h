// Validation of Rank requests, before any work: every rule names the field that breaks it.
// Thread-safe (pure functions).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "helm/v1/recommender.pb.h"

namespace helm::serve {

struct RequestLimits {
  int32_t max_history = 16384;
  int32_t max_candidates = 4096;
  int64_t num_items = 0;    // item ids must be in [0, num_items)
  int32_t num_actions = 1;  // actions must be in [0, num_actions)
};

// OK, or InvalidArgument naming the field: history columns of unequal length, a negative user or
// item id, an item id outside the catalog, an action outside [0, num_actions), decreasing
// timestamps, no candidates, more history or candidates than the limits, top_k outside
// [0, number of candidates].
absl::Status ValidateRankRequest(const v1::RankRequest& request, const RequestLimits& limits);

}  // namespace helm::serve
