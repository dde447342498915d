#include "helm/control/reward.h"

#include <algorithm>
#include <cmath>

namespace helm::control {

RewardTerms Reward(const serve::StatsWindow& w, double previous_target, const FeatureScales& s,
                   const RewardWeights& weights) {
  RewardTerms t;
  const int64_t answers = w.requests.completions + w.requests.failures;
  if (answers > 0) {
    t.latency = std::min(w.latency_us.Quantile(0.99) / std::max(1.0, s.slo_us), 4.0);
    const int64_t over = w.requests.failures + w.latency_us.Count() -
                         w.latency_us.CountAtOrBelow(static_cast<int64_t>(s.slo_us));
    t.violations = std::min(1.0, double(over) / double(answers));
  }
  t.refill =
      double(w.pool.prefetch_bytes + w.pool.migration_bytes_done) / std::max(1.0, s.pool_bytes);
  t.churn = std::abs(w.target_split - previous_target) / 0.1;
  t.reward = -(t.latency + 2 * t.violations + weights.refill * t.refill + weights.churn * t.churn);
  return t;
}

}  // namespace helm::control
