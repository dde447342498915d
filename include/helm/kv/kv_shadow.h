// A miniature of the KV cache's eviction (kv_cache.h), without blocks, bytes or pins: per user its
// cached token count, history start, request count and eviction priority, under the same policy
// ("cost_aware" GDSF with tail trimming, or "lru"). The predictive split controller runs one per
// candidate KV size on the node's own requests and reads how many tokens each request would have
// reused at that size (a miniature simulation of the cache: Waldspurger et al., "Cache Modeling
// and Optimization using Miniature Simulations", USENIX ATC 2017). It sees what a reuse-time model
// cannot: cost-aware priorities keep long, often used histories that recency alone would drop.
//
// A request acquires and appends at once (the real cache appends when the forward is done, and
// may meet pins), so a shadow of the cache's own size reuses what the cache does on a serial
// stream exactly (tests/kv/kv_shadow_test.cc), and nearly so on a node's.
#pragma once

#include <cstdint>
#include <utility>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "helm/kv/eviction.h"
#include "helm/kv/options.h"

namespace helm::kv {

// Thread-compatible.
class KvShadow {
 public:
  // `options.eviction` and `options.allow_trim` as the cache's; `attention_ratio` as
  // KvCacheOptions'; capacity in blocks of `options.tokens_per_block` tokens.
  KvShadow(const KvOptions& options, double attention_ratio, int64_t capacity_blocks);

  // One request of `user_id` with `history_tokens` tokens whose first event has the fingerprint
  // `history_start` (HistoryStartFingerprint): the cached prefix it reuses (none when the cached
  // history starts elsewhere). Then the shadow holds the whole history, when it fits.
  int64_t Request(int64_t user_id, int64_t history_tokens, uint64_t history_start);

  int64_t capacity_blocks() const { return capacity_blocks_; }
  int64_t used_blocks() const { return used_blocks_; }
  int64_t num_users() const { return static_cast<int64_t>(users_.size()); }

 private:
  struct User {
    int64_t cached = 0;
    uint64_t start = 0;
    int64_t requests = 0;
    double priority = 0;
  };
  int64_t Blocks(int64_t tokens) const {
    return (tokens + tokens_per_block_ - 1) / tokens_per_block_;
  }
  void Reprioritize(int64_t user_id, User& u, bool used);
  // Trims the user's cache to `keep_blocks` blocks; forgets a user left with none (as the cache
  // does once its leases are gone) unless `keep_user`.
  void Trim(int64_t user_id, User& u, int64_t keep_blocks, bool keep_user);
  // Evicts until `blocks` more fit, never from `protect`; false when they cannot.
  bool MakeRoom(int64_t blocks, int64_t protect);

  const int64_t tokens_per_block_;
  const bool allow_trim_;
  const int64_t capacity_blocks_;
  int64_t used_blocks_ = 0;
  EvictionPriority priority_;
  absl::flat_hash_map<int64_t, User> users_;
  absl::btree_set<std::pair<double, int64_t>> by_priority_;
};

}  // namespace helm::kv
