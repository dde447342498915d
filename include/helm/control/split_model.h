// The predictive model over a run of windows (predict.h): the reuse-time histograms averaged over
// windows (each window's weight halves a window later), and each window's predicted P99 on a grid
// of splits, r_min to r_max by control.min_step, against the committed split's own prediction.
// The predictive controller (split_controller.h) decides on it; the learned controller reads it as
// features 19-20 (features.h) when its policy reads them.
//
// Thread-compatible: one control loop calls Observe and Predict.
#pragma once

#include <optional>
#include <vector>

#include "helm/common/reuse_histogram.h"
#include "helm/control/feature_scales.h"
#include "helm/control/options.h"
#include "helm/control/predict.h"
#include "helm/serve/stats_window.h"

namespace helm::control {

class SplitModel {
 public:
  struct View {
    std::vector<SplitPrediction> curve;  // one per grid split
    SplitPrediction now;                 // at the window's committed split
    SplitPrediction best;  // the curve's lowest P99; of equals, the split nearest the committed one
    RecomputePrice price;
  };

  // The grid r_min to r_max by options.min_step; windows of at least options.min_window_answers
  // sampled answers are predicted.
  SplitModel(const FeatureScales& scales, const ControlOptions& options, double r_min,
             double r_max);

  // Folds the window's reuse times into the averages. Every window, whether predicted or not.
  void Observe(const serve::StatsWindow& window);
  // The window's predicted curve; nullopt while a move is in flight (the window is no one split's)
  // and on a window with too few sampled answers (or none).
  std::optional<View> Predict(const serve::StatsWindow& window);

 private:
  FeatureScales scales_;
  int64_t min_answers_;
  std::vector<double> grid_;
  ReuseHistogram emb_, kv_;
  PredictBuffers buffers_;  // reused window after window
};

}  // namespace helm::control
