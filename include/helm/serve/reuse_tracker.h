// Follows a node's requests to measure both caches' reuse times (common/reuse_histogram.h) for
// the predictive split controller (control/predict.h).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "helm/common/reuse_histogram.h"
#include "helm/emb/id_sampler.h"
#include "helm/kv/kv_shadow.h"

namespace helm::serve {

inline constexpr int kMaxKvShadows = 16;

// Per request, what the tracker saw: the user's K/V reuse time in tokens (-1: first request seen),
// the prefix a large enough cache would hold for it (the longest history the user sent before, up
// to this request's length), and the prefix each miniature KV cache reused (ShadowKv).
struct RequestReuse {
  int64_t kv_reuse_tokens = -1;
  int64_t kv_prefix_tokens = 0;
  std::array<int32_t, kMaxKvShadows> kv_shadow_prefix{};
};

// Follows a node's requests to measure both caches' reuse times: every user for K/V, a hashed
// sample of the item ids for EMB (`emb_sample_rate`, as SHARDS samples keys; weights scaled back
// up). Remembers at most `max_keys` ids (then starts afresh). Thread-compatible.
class ReuseTracker {
 public:
  ReuseTracker(double emb_sample_rate, uint64_t salt, size_t max_keys = size_t{1} << 22);
  // Runs miniature KV caches (kv/kv_shadow.h) of these capacities (at most kMaxKvShadows) beside
  // the node's, under its options and attention ratio.
  void ShadowKv(const kv::KvOptions& options, double attention_ratio,
                absl::Span<const int64_t> capacity_blocks);
  // One request: its user, the tokens of its history and its first event's fingerprint
  // (HistoryStartFingerprint), and the item ids it looks up.
  RequestReuse Observe(int64_t user_id, int64_t history_tokens, uint64_t history_start,
                       absl::Span<const int64_t> ids);
  // The window's histograms so far; the next Observe starts new ones.
  void Take(ReuseHistogram* emb, ReuseHistogram* kv);

 private:
  struct UserSeen {
    int64_t at = 0;      // the token clock at its last request
    int64_t tokens = 0;  // the longest history it sent (a cache keeps the longest)
    uint64_t start = 0;  // that history's first event's fingerprint
  };
  emb::IdSampler sampler_;
  size_t max_keys_;
  int64_t id_clock_ = 0, token_clock_ = 0;
  absl::flat_hash_map<int64_t, int64_t> id_seen_;
  absl::flat_hash_map<int64_t, UserSeen> user_seen_;
  std::vector<kv::KvShadow> kv_shadows_;
  ReuseHistogram emb_, kv_;
};

}  // namespace helm::serve
