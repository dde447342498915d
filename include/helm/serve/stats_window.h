// A node's statistics as windows (DESIGN.md §4): cumulative counters with operator-, and a latency
// histogram that covers one window only. The state stream, GetStats and the split controller all
// read StatsWindow.
#pragma once

#include <cstdint>

#include "helm/common/histogram.h"
#include "helm/emb/emb_cache.h"
#include "helm/kv/kv_cache.h"
#include "helm/pool/pool.h"

namespace helm::serve {

// Cumulative request counters of a node (take two and subtract for a window).
struct NodeCounters {
  int64_t arrivals = 0;           // Rank requests offered to admission
  int64_t rejected = 0;           // refused at admission (queue full, draining)
  int64_t completions = 0;        // answered OK
  int64_t failures = 0;           // admitted, then answered with an error
  int64_t deadline_exceeded = 0;  // of the failures: deadline passed before compute
  int64_t batches = 0;            // forwards run
  int64_t batched_requests = 0;   // requests in those forwards
  int64_t compute_us = 0;         // time spent in those batches (prepare to last answer)
  int64_t computed_rows = 0;      // rows those forwards computed: uncached history tokens and
                                  // candidates (what a recomputed token costs: control/features.h)

  NodeCounters operator-(const NodeCounters& o) const;
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

  double seconds() const { return end_us > start_us ? (end_us - start_us) / 1e6 : 0.0; }
  double arrival_rate_per_s() const;
};

}  // namespace helm::serve
