// What the controller needs to know of a node to normalise its statistics (features.h) and to
// replay a window at other splits (predict.h): the node's sizes, its SLO and its model's cost
// ratio.
#pragma once

namespace helm::control {

struct FeatureScales {
  double slo_us = 50'000;
  double pool_bytes = 1;
  double emb_row_bytes = 1;   // bytes of one EMB row in the pool
  double kv_token_bytes = 1;  // bytes of one token's K/V in the pool
  double queue_capacity = 1;
  double workers = 1;  // compute workers (node.workers): the predictive controller's utilisation
  // The model's attention work per earlier token over a token's linear work
  // (model::KvAttentionRatio): the predictive controller prices a recomputed prefix with it.
  double attention_ratio = 0;
  double short_windows = 3;  // EWMA spans, in windows (Knative's panic window is 1/10 the stable)
  double long_windows = 30;
};

}  // namespace helm::control
