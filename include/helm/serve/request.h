// A Rank request and its answer as plain C++ values: what the node core works on. The gRPC edge
// (node_server) converts helm.v1 messages to and from these once; the simulator builds them from
// the workload generator directly.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace helm::serve {

// A validated request. The spans point into storage the caller keeps alive until the job is done
// (the gRPC request message, or the simulator's generated request).
struct RankInput {
  int64_t user_id = 0;
  // The user's whole history, oldest first; the three columns have equal lengths.
  absl::Span<const int64_t> history_item_ids;
  absl::Span<const int32_t> history_actions;
  absl::Span<const int64_t> history_timestamps_ms;
  absl::Span<const int64_t> candidate_item_ids;
  int32_t top_k = 0;  // 0: every candidate in request order; else the k best, best first

  int64_t history_length() const { return static_cast<int64_t>(history_item_ids.size()); }
};

struct ScoredItem {
  int64_t item_id = 0;
  float score = 0;
};

// The answer and how it was served (helm.v1.ServingInfo without the router's fields).
struct RankOutput {
  std::vector<ScoredItem> items;
  int32_t cached_tokens = 0;    // history tokens whose K/V came from the KV cache
  int32_t computed_tokens = 0;  // history tokens computed
  int32_t emb_hits = 0;
  int32_t emb_misses = 0;
  // History tokens of the user the KV cache holds once this request is done.
  int32_t resident_tokens = 0;
  bool kv_appended = false;  // the computed suffix's K/V were kept for the next request
  int64_t queue_us = 0;    // admission to the start of its batch's compute (batching wait included)
  int64_t compute_us = 0;  // its batch's compute, start to this request's answer
  int32_t batch_size = 0;  // requests computed in that batch
};

}  // namespace helm::serve
