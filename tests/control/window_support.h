// Statistics windows for the controller and trainer tests: one second long, `answers` requests
// arrived and answered in it, each after `latency_us` (so every quantile is latency_us), at
// `split` (committed and target).
#pragma once

#include <cmath>
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

// Counters under which the ghosts say growing EMB would save `g_emb` of the window and growing KV
// `g_kv` (control/features.h: fetch time x ghost hits / misses, ghost tokens x a row's time).
inline void SetGrowthGains(serve::StatsWindow& w, double g_emb, double g_kv) {
  const double window_ns = w.seconds() * 1e9;
  w.emb.misses = 1000;
  w.emb.fetch_ns = static_cast<int64_t>(0.5 * window_ns);
  w.emb.ghost_hits = std::llround(g_emb * 2000);
  w.requests.compute_us = static_cast<int64_t>(0.6 * window_ns / 1e3);
  w.requests.computed_rows = static_cast<int64_t>(0.1 * window_ns / 1e3);  // 1 us a row
  w.kv.ghost_hit_tokens = std::llround(g_kv * window_ns / 1e3);
}

}  // namespace helm::control
