// A node's statistics as windows (DESIGN.md §4): cumulative counters with operator-, and a latency
// histogram that covers one window only. The state stream, GetStats and the split controller all
// read StatsWindow.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "helm/common/histogram.h"
#include "helm/emb/emb_cache.h"
#include "helm/kv/kv_cache.h"
#include "helm/pool/pool.h"
#include "helm/serve/reuse_tracker.h"

namespace helm::serve {

// Cumulative request counters of a node (take two and subtract for a window).
struct NodeCounters {
  int64_t arrivals = 0;            // Rank requests offered to admission
  int64_t rejected = 0;            // refused at admission (queue full, draining)
  int64_t completions = 0;         // answered OK
  int64_t failures = 0;            // admitted, then answered with an error
  int64_t deadline_exceeded = 0;   // of the failures: deadline passed before compute
  int64_t batches = 0;             // forwards run
  int64_t batched_requests = 0;    // requests in those forwards
  int64_t compute_us = 0;          // time spent in those batches (prepare to last answer)
  int64_t computed_attention = 0;  // the same rows' attention work, in earlier tokens attended
                                   // to: a history token at position t t, a candidate of a
                                   // history of h tokens h (control/predict.h prices it)
  int64_t computed_rows = 0;       // rows those forwards computed: uncached history tokens and
                                   // candidates (what a recomputed token costs: control/features.h)

  NodeCounters operator-(const NodeCounters& o) const;
};

// What an answer's whole batch (itself included) looked up, missed and would have reused in each
// miniature KV cache: a batch takes its members' time together, so the predictive controller
// replays the batch's change for each of its answers. Per cache i, with p a member's reused
// prefix there (RequestReuse::kv_shadow_prefix): the sums of p and of p (p - 1) / 2 (shadow), whose
// recompute time is then row price x sum p + attention price x sum p (p - 1) / 2 for any prices
// (control::RecomputePrice).
struct BatchTotals {
  int32_t size = 0;  // members; 0: not known
  int32_t emb_lookups = 0;
  int32_t emb_misses = 0;
  BatchShadowSums shadow;  // filled when the window closes (ReuseTracker::Replay)
};

// One OK answer of a window, as the predictive split controller reads it (control/predict.h): its
// latency and its wait in the queue, its EMB lookups and misses, its history and the part of it the
// KV cache held, its user's K/V reuse time (reuse_tracker.h), and its batch's totals.
struct AnswerSample {
  int64_t latency_us = 0;
  int64_t queue_us = 0;
  int32_t emb_lookups = 0;
  int32_t emb_misses = 0;
  int32_t history_tokens = 0;
  int32_t cached_tokens = 0;
  RequestReuse reuse;
  BatchTotals batch;
};

// A uniform sample of at most `capacity` of a window's answers (reservoir sampling, Vitter's
// Algorithm R), on a seeded stream so that a simulation replays it. Thread-compatible.
class AnswerReservoir {
 public:
  AnswerReservoir(size_t capacity, uint64_t seed) : capacity_(capacity), state_(seed) {}
  void Add(const AnswerSample& answer);
  // The sample so far; the next Add starts a new one.
  std::vector<AnswerSample> Take();

 private:
  size_t capacity_;
  uint64_t state_;
  int64_t seen_ = 0;
  std::vector<AnswerSample> sample_;
};

struct StatsWindow {
  int64_t start_us = 0;  // Clock micros
  int64_t end_us = 0;
  NodeCounters requests;                // over the window
  LatencyHistogram latency_us;          // admission to answer of the OK answers given in the window
  int32_t queue_depth = 0;              // at the window's end
  int32_t in_flight = 0;                // at the window's end (queued + computing)
  emb::EmbStats emb;                    // over the window
  kv::KvStats kv;                       // over the window
  pool::PoolStats pool;                 // over the window
  double committed_split = 0;           // at the window's end
  double target_split = 0;              // at the window's end
  int64_t pending_migration_bytes = 0;  // at the window's end (PoolSnapshot::pending_bytes)
  // One chunk's share of the pool (1 / chunks; 0: unknown). The committed split moves in whole
  // chunks, so a settled pool's committed split may differ from its target by up to this much.
  double chunk_share = 0;
  // A uniform sample of the window's OK answers, and the window's reuse times of EMB ids and of
  // K/V tokens: kept under control.policy "predictive" only (NodeCore keeps up to
  // kWindowAnswerSamples answers), empty otherwise.
  std::vector<AnswerSample> answers;
  ReuseHistogram emb_reuse;
  ReuseHistogram kv_reuse;
  // The splits whose miniature KV caches' reuse each answer carries (RequestReuse::
  // kv_shadow_prefix), ascending; empty when none ran.
  std::vector<double> kv_shadow_splits;
  // The splits of the miniature EMB caches, ascending, and each one's miss ratio over the
  // window's requests (ReuseTracker::emb_shadow_miss_ratios); empty when none ran.
  std::vector<double> emb_shadow_splits;
  std::vector<double> emb_shadow_miss_ratios;

  double seconds() const { return end_us > start_us ? (end_us - start_us) / 1e6 : 0.0; }
  double arrival_rate_per_s() const;
};

}  // namespace helm::serve
