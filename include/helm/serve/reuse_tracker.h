// Follows a node's requests to measure both caches' reuse times (common/reuse_histogram.h) for
// the predictive split controller (control/predict.h).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "helm/common/reuse_histogram.h"
#include "helm/emb/emb_shadow.h"
#include "helm/emb/id_sampler.h"
#include "helm/emb/options.h"
#include "helm/kv/kv_shadow.h"

namespace helm::serve {

inline constexpr int kMaxKvShadows = 16;
inline constexpr int kMaxEmbShadows = 16;

// Per request, what the tracker saw: the user's K/V reuse time in tokens (-1: first request seen),
// the prefix a large enough cache would hold for it (the longest history the user sent before, up
// to this request's length), its place in the tracker's request log (-1: no miniature caches
// run), and, once the log is replayed (Replay, FillShadowReuse), the prefix each miniature KV cache
// reused.
struct RequestReuse {
  int64_t kv_reuse_tokens = -1;
  int64_t kv_prefix_tokens = 0;
  int64_t seq = -1;
  int64_t batch = -1;  // the batch it was computed in (the caller's numbering; -1: none)
  std::array<int32_t, kMaxKvShadows> kv_shadow_prefix{};
};

// The sums over one batch's requests of the prefix p each miniature KV cache reused, and of
// p (p - 1) / 2 (serve::BatchTotals).
struct BatchShadowSums {
  std::array<float, kMaxKvShadows> tokens{};
  std::array<float, kMaxKvShadows> pairs{};
};

// Follows a node's requests to measure both caches' reuse times: every user for K/V, a hashed
// sample of the item ids for EMB (`emb_sample_rate`, as SHARDS samples keys; weights scaled back
// up). Remembers at most `max_keys` ids (then starts afresh).
//
// The miniature caches (ShadowKv: ~1.3 us a cache a request; ShadowEmb) cost too much for the
// request path: Observe only logs the request (user, history, start, batch, and the EMB
// miniatures' sample of its ids), and Replay, once a window on the control thread, runs the log
// through the caches in arrival order. What each logged request reused, and each batch's sums,
// are kept for two replays, so that a request answered in the window after the one it was logged
// in still finds them. Thread-compatible.
class ReuseTracker {
 public:
  ReuseTracker(double emb_sample_rate, uint64_t salt, size_t max_keys = size_t{1} << 22);
  // Runs miniature KV caches (kv/kv_shadow.h) of these capacities (at most kMaxKvShadows) beside
  // the node's, under its options and attention ratio.
  void ShadowKv(const kv::KvOptions& options, double attention_ratio,
                absl::Span<const int64_t> capacity_blocks);
  // Runs miniature EMB caches (emb/emb_shadow.h) of these capacities (at most kMaxEmbShadows) on
  // a hashed `rate` of the ids, under the cache's options, their sketches sized for `sketch_rows`
  // rows; capacities and sketch rows are the sample's (a full-size cache's x rate). With them the
  // EMB reuse times (Take's `emb`) are no longer measured.
  void ShadowEmb(const emb::EmbOptions& options, double rate,
                 absl::Span<const int64_t> capacity_rows, int64_t sketch_rows);
  // One request: its user, the tokens of its history and its first event's fingerprint
  // (HistoryStartFingerprint), the item ids it looks up, and the batch it is computed in.
  RequestReuse Observe(int64_t user_id, int64_t history_tokens, uint64_t history_start,
                       absl::Span<const int64_t> ids, int64_t batch = -1);
  // Runs the requests logged since the last replay through the miniature caches.
  void Replay();
  // The miss ratio each miniature EMB cache had over the last replay's requests: its sample's
  // misses / rate over every id those requests looked up (SHARDS-adj: the sample's own lookups
  // swing with whether it holds a few of the hottest ids, which hit at every size). Empty without
  // miniature EMB caches, or when the replay had no lookups.
  const std::vector<double>& emb_shadow_miss_ratios() const { return emb_miss_ratios_; }
  // Fills `r`'s kv_shadow_prefix and `sums` (its batch's; zeros without a batch) from the last two
  // replays; false (and nothing filled) when the request is no longer, or not yet, known.
  bool FillShadowReuse(RequestReuse* r, BatchShadowSums* sums) const;
  // The window's histograms so far; the next Observe starts new ones.
  void Take(ReuseHistogram* emb, ReuseHistogram* kv);

 private:
  struct UserSeen {
    int64_t at = 0;      // the token clock at its last request
    int64_t tokens = 0;  // the longest history it sent (a cache keeps the longest)
    uint64_t start = 0;  // that history's first event's fingerprint
  };
  uint64_t salt_;
  emb::IdSampler sampler_;
  size_t max_keys_;
  int64_t id_clock_ = 0, token_clock_ = 0;
  absl::flat_hash_map<int64_t, int64_t> id_seen_;
  absl::flat_hash_map<int64_t, UserSeen> user_seen_;
  std::vector<kv::KvShadow> kv_shadows_;
  emb::IdSampler emb_shadow_sampler_;
  std::vector<emb::EmbShadow> emb_shadows_;
  std::vector<double> emb_miss_ratios_;
  ReuseHistogram emb_, kv_;

  struct Logged {
    int64_t user_id, history_tokens, batch;
    uint64_t history_start;
    size_t emb_end;  // its sampled ids end here in emb_log_ (begin: the previous one's end)
  };
  // One replay's results: each request's reuse, by seq - first, and each batch's sums.
  struct Replayed {
    int64_t first = 0;
    std::vector<std::array<int32_t, kMaxKvShadows>> reused;
    absl::flat_hash_map<int64_t, BatchShadowSums> batches;
  };
  int64_t next_seq_ = 0;
  std::vector<Logged> log_;       // since the last replay, in seq order, ending at next_seq_ - 1
  std::vector<int64_t> emb_log_;  // the logged requests' sampled ids
  int64_t emb_log_lookups_ = 0;   // every id the logged requests looked up
  Replayed replayed_[2];          // [0] the one before the last, [1] the last
};

}  // namespace helm::serve
