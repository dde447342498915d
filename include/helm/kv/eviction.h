// The KV cache's eviction order (kv_cache.h), shared with its miniatures (kv_shadow.h): each user
// has a priority, and the lowest is evicted first.
//   "cost_aware"  Greedy-Dual-Size-Frequency: inflation + requests x cost / size, where the cost /
//                 size of a cached prefix of n tokens is the average per-token recompute cost
//                 (1 + attention_ratio x n / 2) over a constant bytes per token, and the inflation
//                 rises to each evicted victim's priority (so users not used since age out).
//   "lru"         a recency stamp, taken each time the user is used.
#pragma once

#include <algorithm>
#include <cstdint>

namespace helm::kv {

// Thread-compatible (the cache calls it under its lock).
class EvictionPriority {
 public:
  EvictionPriority(bool cost_aware, double attention_ratio)
      : cost_aware_(cost_aware), attention_ratio_(attention_ratio) {}

  bool cost_aware() const { return cost_aware_; }
  // A user's priority after a change of its request count or cached length; `used` marks a new
  // request. Under lru a change that is not a use keeps `current`.
  double Next(double current, int64_t requests, int64_t cached_tokens, bool used) {
    if (cost_aware_) {
      return inflation_ + static_cast<double>(requests) *
                              (1.0 + attention_ratio_ * static_cast<double>(cached_tokens) / 2.0);
    }
    return used ? static_cast<double>(++lru_clock_) : current;
  }
  // A victim of `priority` lost blocks: GDSF's inflation rises to it.
  void Evicted(double priority) {
    if (cost_aware_) inflation_ = std::max(inflation_, priority);
  }

 private:
  bool cost_aware_;
  double attention_ratio_;
  double inflation_ = 0;  // GDSF's L
  int64_t lru_clock_ = 0;
};

}  // namespace helm::kv
