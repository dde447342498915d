// The learned controller's view of a node (issue 13, DESIGN.md §4): a fixed-length feature vector
// built once per statistics window from the node's StatsWindow, every entry normalised to about
// [-1, 1] or [0, 1] so that one policy serves nodes of any size and load.
//
//   #  feature                       normalisation
//   0  committed split r             as is (EMB share of the pool, [0, 1])
//   1  target - committed            as is (a move in flight, [-1, 1])
//   2  pending migration bytes       / pool bytes
//   3  EMB hit rate                  as is
//   4  EMB miss fetch time           / the window (the share of it the lookups spent fetching
//                                    their misses: host gather and copies, clamped to 1; on a
//                                    link-bound node, the link's share the misses take)
//   5  KV token hit ratio            as is
//   6  KV recompute tokens/s         log1p(x) / 16
//   7  arrival rate, short average   log1p(x) / 12 (EWMA over ~short_windows windows)
//   8  arrival rate, long average    log1p(x) / 12 (EWMA over ~long_windows windows)
//   9  arrival slope                 (short - long) / max(long, 1), clamped to [-2, 2] / 2
//  10  EMB working set               distinct ids looked up / EMB capacity in rows, clamped to 4,
//                                    / 4 (distinct per batch, summed: an upper estimate)
//  11  KV working set                tokens requested / KV capacity in tokens, clamped to 4, / 4
//  12  queue depth                   / node.queue_capacity
//  13  P50 / SLO                     clamped to 4, / 4
//  14  P99 / SLO                     clamped to 4, / 4
//  15  SLO violations in the window  share of answers over the SLO (only OK answers are timed,
//                                    so failures count as violations too)
//  16  EMB growth gain               sqrt(g_emb), clamped to 1: g_emb is the share of the window
//                                    an EMB share larger by pool.ghost_share would have saved,
//                                    fetch_ns x ghost_hits / misses / window (EmbStats)
//  17  KV growth gain                sqrt(g_kv), clamped to 1: g_kv is the share of the window a
//                                    KV share larger by ghost_share would have saved, the ghost's
//                                    tokens x one computed row's time / window, where a row costs
//                                    (compute_us - fetch time) / computed_rows (NodeCounters)
//  18  which way memory pays         (g_emb - g_kv) / (g_emb + g_kv), 0 when both are < 1e-4:
//                                    the slope of the two hit-rate curves where the split stands
//                                    (Cliffhanger's shadow-queue gradient), in [-1, 1]
//  19  the model's best split        r* - target, clamped to [-1, 1]: r* the split of the lowest
//                                    P99 the predictive model (split_model.h, the predictive
//                                    controller's) predicts for the window at any split
//  20  the model's predicted gain    1 - P99(r*) / P99(committed split), in [0, 1]
//      Features 19-20 are 0 unless the extractor runs the model (a policy that reads them:
//      ReadsModel), and on windows with a move in flight or fewer than
//      control.min_window_answers sampled answers. The node then keeps the miniature caches the
//      model reads (NeedsReuseTracking, split_controller.h).
// A policy file may read only the first N features (policy.h): features are only ever appended.
//
// Thread-compatible: one control loop calls Extract (it keeps the arrival-rate averages).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "helm/control/feature_scales.h"
#include "helm/control/options.h"
#include "helm/control/split_model.h"
#include "helm/serve/stats_window.h"

namespace helm::control {

inline constexpr int kNumFeatures = 21;
inline constexpr int kFirstModelFeature = 19;  // features 19-20 need the predictive model
// Whether a policy reading the first `inputs` features reads the model's.
inline bool ReadsModel(int inputs) { return inputs > kFirstModelFeature; }

using Features = std::array<float, kNumFeatures>;

// A window's time per EMB miss fetched (EmbStats::fetch_ns / misses) and per row computed
// ((compute_us - fetch time) / computed_rows), in ns; 0 without misses or rows.
double FetchNsPerMiss(const serve::StatsWindow& window);
double ComputeNsPerRow(const serve::StatsWindow& window);
// The value at quantile q of `v` by rank (element ceil(q n) - 1); may reorder v. REQUIRES: v not
// empty.
double QuantileOf(std::vector<double>& v, double q);

class FeatureExtractor {
 public:
  // Features 0-18; 19-20 are 0.
  explicit FeatureExtractor(const FeatureScales& scales);
  // All of them: the predictive model (split_model.h) on the grid r_min to r_max by
  // options.min_step, predicting windows of at least options.min_window_answers answers.
  FeatureExtractor(const FeatureScales& scales, const ControlOptions& options, double r_min,
                   double r_max);
  // The extractor a policy reading the first `inputs` features needs: with the model when
  // ReadsModel(inputs).
  static FeatureExtractor For(int inputs, const FeatureScales& scales,
                              const ControlOptions& options, double r_min, double r_max);

  Features Extract(const serve::StatsWindow& window);
  double short_rate() const { return short_rate_; }
  double long_rate() const { return long_rate_; }
  // The predictive model's P99 at `split` (the nearest split of its grid) over its P99 at the
  // current split, at the last window Extract saw; none without the model or when it did not
  // predict that window (a move in flight, too few answers).
  std::optional<double> PredictedP99Ratio(double split) const;
  // g_emb and g_kv (features 16-18) of a window.
  static double EmbGrowthGain(const serve::StatsWindow& window);
  static double KvGrowthGain(const serve::StatsWindow& window);

 private:
  FeatureScales s_;
  std::optional<SplitModel> model_;       // none: features 19-20 are 0
  std::optional<SplitModel::View> view_;  // the model's prediction of the last window, if any
  bool primed_ = false;
  double short_rate_ = 0, long_rate_ = 0;
};

}  // namespace helm::control
