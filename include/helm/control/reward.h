// The learned controller's reward (issue 13, DESIGN.md §4): one number per node per control
// window, what PPO maximises in helm-train and what the online residual adapter climbs in the node.
// It is read from the window just closed, i.e. it judges the split that was in force during it.
//
//   reward = -( min(P99 / SLO, 4)                          latency against the SLO
//             + 2 * violations                            share of answers over the SLO or failed
//             + refill_weight * refill_bytes / pool_bytes  prefetch + relocated bytes of resizes
//             + churn_weight * |target - previous| / 0.1 ) the move made at the window's start (0.1
//             units)
//
// with refill_weight = 0.5 and churn_weight = 0.05 by default. A window with no answers scores
// only its refill and churn terms (latency 0, violations 0): an idle node is not punished.
// Bounded: reward is in [-(4 + 2 + refill_weight * r + churn_weight * 10), 0] for refill share r.
#pragma once

#include "helm/control/features.h"
#include "helm/serve/stats_window.h"

namespace helm::control {

struct RewardWeights {
  double refill = 0.5;
  double churn = 0.05;
};

struct RewardTerms {
  double latency = 0;     // min(P99 / SLO, 4)
  double violations = 0;  // share of answers over the SLO, failures included
  double refill = 0;      // refill bytes / pool bytes
  double churn = 0;       // |target - previous target| / 0.1
  double reward = 0;      // the weighted sum, negated
};

// `window.target_split` is the target set at the window's start (the decision being judged) and
// `previous_target` the one before it; `scales` gives the SLO and the pool's bytes.
RewardTerms Reward(const serve::StatsWindow& window, double previous_target,
                   const FeatureScales& scales, const RewardWeights& weights = {});

}  // namespace helm::control
