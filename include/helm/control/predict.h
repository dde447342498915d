// What a node's last window would have looked like at another split (the predictive split
// controller, split_controller.h): each sampled answer (StatsWindow::answers) replayed against the
// EMB and KV caches' miniature copies (emb/emb_shadow.h, kv/kv_shadow.h), or without them against
// the miss-ratio curves read off the ids' and users' reuse times (common/reuse_histogram.h, AET).
//
// At split r, for an answer of the window (taken at the committed split r0):
//   EMB   its misses plus its lookups x (m(r) - m(r0)), within [0, lookups], m the miss ratio the
//         miniature EMB caches on either side of r had over the window (interpolated by split;
//         StatsWindow::emb_shadow_miss_ratios). Without them (control.emb_shadows 0) m is the AET
//         curve at r x pool / row bytes, LRU's, which cannot see TinyLFU's admission. A change of
//         the miss ratio, not a ratio of them: a ratio of two small miss ratios is no measure of
//         anything;
//   KV    the prefix it reuses at r is what the miniature KV caches on either side of r reused
//         (interpolated by split). Without them (control.kv_shadows 0): its user's previous
//         history is held at r when the user's reuse time is below the KV cache's eviction time
//         T(r) at (1 - r) x pool / token bytes. The difference from r0 is recomputed or spared;
//   time  the change of its service time is those misses x the window's fetch time per miss plus
//         those tokens' recompute time (RecomputePrice: the token at position t costs a row and t
//         attended tokens, priced by the model's FLOP ratio, PriceByRatio) and their lookups (a
//         reused token's embedding is not looked up: each spares the answer's misses / lookups
//         of a miss). A batch takes its members' time together, so an answer takes its whole
//         batch's change (BatchTotals; without them its own plus the mean change x the window's
//         mean batch size less one).
//         Its wait in the queue scales as the mean wait of an M/G/1 queue (Pollaczek-Khinchine):
//         lambda E[S^2] / (2 (1 - rho)), S an answer's service time with its change, rho the
//         workers' utilisation with every answer's own change of service time added. The second
//         moment matters: sparing the longest services (long recomputed histories) shortens the
//         wait by more than the mean service alone says.
// The prediction's P99 is the P99 of those latencies. Only the changes from r0 count, so a curve's
// own bias in level cancels.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "helm/common/reuse_histogram.h"
#include "helm/control/feature_scales.h"
#include "helm/serve/stats_window.h"

namespace helm::control {

// What recomputing costs on this node, in us: a row (a history token's or a candidate's linear
// layers) and one earlier token attended to (NodeCounters::computed_attention). A prefix of p
// tokens recomputed costs row_us x p + attention_us x p (p - 1) / 2.
struct RecomputePrice {
  double row_us = 0;
  double attention_us = 0;
  double PrefixUs(double p) const {
    return p > 0 ? row_us * p + attention_us * p * (p - 1) / 2 : 0;
  }
};

// The window's price by the model's FLOP ratio (FeatureScales::attention_ratio): its compute time
// less its fetch time over rows + ratio x attention, a row one unit and an attended token ratio.
RecomputePrice PriceByRatio(const serve::StatsWindow& window, double attention_ratio);

struct SplitPrediction {
  double split = 0;
  double p99_us = 0;
  double utilisation = 0;  // rho at this split
};

// PredictSplits's working arrays, one element an answer (the miniature KV caches': one an answer
// a cache), so that the per-split loops run along contiguous doubles. A caller that predicts window
// after window keeps one, so that they are not allocated (and faulted in: ~0.6 MB at 4,096
// answers) each time.
struct PredictBuffers {
  // The answer as sampled.
  std::vector<double> misses, lookups, batch_misses, batch_lookups, service, queue;
  std::vector<uint8_t> has_batch;  // its batch's own totals are known (miniature caches ran)
  std::vector<double> own_fetch_us, batch_fetch_us;  // the fetch time a reused token spares
  // The time spared had the KV cache reused what miniature cache k did ([k * answers + i]), its
  // own and its batch's, and at the committed split.
  std::vector<double> own, batch, own_at_r0, batch_at_r0;
  std::vector<double> aet_reuse, aet_us;  // without miniatures: its reuse time, the time it spares
  // At one split: the change of its service time, its batch's, its service squared, its latency.
  std::vector<double> delta, batch_delta, square, latency;
};

// One prediction per split; empty when the window has no sampled answers. `buffers`: where to
// work (nullptr: arrays of its own).
std::vector<SplitPrediction> PredictSplits(const serve::StatsWindow& window,
                                           const ReuseHistogram& emb, const ReuseHistogram& kv,
                                           const FeatureScales& scales, const RecomputePrice& price,
                                           absl::Span<const double> splits,
                                           PredictBuffers* buffers = nullptr);

}  // namespace helm::control
