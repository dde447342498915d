// Statistics windows for the controller and trainer tests: one second long, `answers` requests
// arrived and answered in it, each after `latency_us` (so every quantile is latency_us), at
// `split` (committed and target).
#pragma once

#include <cstdint>

#include "helm/serve/stats_window.h"

namespace helm::control {

inline serve::StatsWindow SteadyWindow(double split, int64_t answers, int64_t latency_us) {
  serve::StatsWindow w;
  w.start_us = 0;
  w.end_us = 1'000'000;
  w.committed_split = w.target_split = split;
  w.requests.arrivals = w.requests.completions = answers;
  w.latency_us.RecordN(latency_us, answers);
  return w;
}

// The window's cache counters: EMB hits of 1000 lookups, and K/V tokens requested and hit.
inline void SetCacheCounters(serve::StatsWindow& w, int64_t emb_hits_per_1000,
                             int64_t kv_requested_tokens, int64_t kv_hit_tokens) {
  w.emb.lookups = 1000;
  w.emb.hits = emb_hits_per_1000;
  w.kv.requested_tokens = kv_requested_tokens;
  w.kv.hit_tokens = kv_hit_tokens;
}

}  // namespace helm::control
