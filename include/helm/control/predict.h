// What a node's last window would have looked like at another split (the predictive split
// controller, split_controller.h): each sampled answer (StatsWindow::answers) replayed against
// both caches' miss-ratio curves, read off their reuse times (serve/reuse.h, AET).
//
// At split r, for an answer of the window (taken at the committed split r0):
//   EMB   its misses plus its lookups x (m(r) - m(r0)), within [0, lookups], m the EMB
//         miss-ratio curve at r x pool / row bytes (a change of the miss ratio, not a ratio of
//         them: the curve's own level is LRU's, below what TinyLFU and the sampled ids show, and
//         a ratio of two small miss ratios is no measure of anything);
//   KV    its user's previous history is held at r when the user's reuse time is below the KV
//         cache's eviction time T(r) at (1 - r) x pool / token bytes; it is recomputed when held at
//         r0 and not at r, and spared when the other way round;
//   time  the change of its service time is those misses x the window's fetch time per miss plus
//         those tokens x its time per computed row (features.h), plus its batch-mates' changes (a
//         batch takes its members' time together: the mean change x the window's mean batch size
//         less one), and its wait in the queue scales
//         as Kingman's formula for a G/G/1 queue: rho / (1 - rho) x the mean service time, rho the
//         workers' utilisation with every answer's change of service time added.
// The prediction's P99 is the P99 of those latencies. The curves' own bias (TinyLFU admission and
// the KV cache's priorities are not LRU) mostly cancels, as only the changes from r0 count.
#pragma once

#include <vector>

#include "absl/types/span.h"
#include "helm/common/reuse_histogram.h"
#include "helm/control/features.h"
#include "helm/serve/stats_window.h"

namespace helm::control {

struct SplitPrediction {
  double split = 0;
  double p99_us = 0;
  double utilisation = 0;  // rho at this split
};

// One prediction per split; empty when the window has no sampled answers.
std::vector<SplitPrediction> PredictSplits(const serve::StatsWindow& window,
                                           const ReuseHistogram& emb, const ReuseHistogram& kv,
                                           const FeatureScales& scales,
                                           absl::Span<const double> splits);

}  // namespace helm::control
