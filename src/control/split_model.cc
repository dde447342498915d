#include "helm/control/split_model.h"

#include <algorithm>
#include <cmath>

#include "helm/control/safety.h"

namespace helm::control {

SplitModel::SplitModel(const FeatureScales& scales, const ControlOptions& options, double r_min,
                       double r_max)
    : scales_(scales), min_answers_(std::max<int64_t>(1, options.min_window_answers)) {
  const double step = options.min_step;
  const int points = static_cast<int>(std::floor((r_max - r_min) / step + 1e-9));
  for (int i = 0; i <= points; ++i) grid_.push_back(r_min + i * step);
  if (r_max - grid_.back() > 1e-9) grid_.push_back(r_max);
}

void SplitModel::Observe(const serve::StatsWindow& w) {
  constexpr double kKeep = 0.5;  // each window's reuse times count half as much a window later
  emb_.Scale(kKeep);
  emb_.Merge(w.emb_reuse);
  kv_.Scale(kKeep);
  kv_.Merge(w.kv_reuse);
}

std::optional<SplitModel::View> SplitModel::Predict(const serve::StatsWindow& w) {
  if (SafetyGate::MoveInFlight(w) || static_cast<int64_t>(w.answers.size()) < min_answers_) {
    return std::nullopt;
  }
  const double r0 = w.committed_split;
  std::vector<double> splits = grid_;
  splits.push_back(r0);  // the current split's own prediction is the reference
  View v;
  v.price = PriceByRatio(w, scales_.attention_ratio);
  v.curve = PredictSplits(w, emb_, kv_, scales_, v.price, splits, &buffers_);
  v.now = v.curve.back();
  v.curve.pop_back();
  v.best = v.now;
  for (const SplitPrediction& p : v.curve) {
    // The lowest P99; of equals, the split nearest the current one.
    if (p.p99_us < v.best.p99_us - 1e-9 || (std::abs(p.p99_us - v.best.p99_us) <= 1e-9 &&
                                            std::abs(p.split - r0) < std::abs(v.best.split - r0))) {
      v.best = p;
    }
  }
  return v;
}

}  // namespace helm::control
