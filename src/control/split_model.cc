#include "helm/control/split_model.h"

#include <cmath>

namespace helm::control {

SplitModel::SplitModel(const FeatureScales& scales, double min_step, double r_min, double r_max)
    : scales_(scales) {
  const int points = static_cast<int>(std::floor((r_max - r_min) / min_step + 1e-9));
  for (int i = 0; i <= points; ++i) grid_.push_back(r_min + i * min_step);
  if (r_max - grid_.back() > 1e-9) grid_.push_back(r_max);
}

void SplitModel::Observe(const serve::StatsWindow& w) {
  constexpr double kKeep = 0.5;  // each window's reuse times count half as much a window later
  emb_.Scale(kKeep);
  emb_.Merge(w.emb_reuse);
  kv_.Scale(kKeep);
  kv_.Merge(w.kv_reuse);
}

std::optional<SplitModel::View> SplitModel::Predict(const serve::StatsWindow& w) const {
  if (w.answers.empty()) return std::nullopt;
  const double r0 = w.committed_split;
  std::vector<double> splits = grid_;
  splits.push_back(r0);  // the current split's own prediction is the reference
  View v;
  v.price = PriceByRatio(w, scales_.attention_ratio);
  v.curve = PredictSplits(w, emb_, kv_, scales_, v.price, splits);
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
