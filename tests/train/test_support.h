// A tiny training setup for helm-train's tests: one small cell (the DLRMv3-style HSTU on the a100
// cost profile, a pool at scale 8 of amazon-books, one node at 60% load) simulated for a few
// seconds with 250 ms statistics windows, so that an episode takes well under a second of wall
// time.
#pragma once

#include <cstdlib>
#include <string>

#include "helm/control/policy.h"
#include "helm/train/options.h"
#include "helm/train/rollout.h"

namespace helm::train {

struct Tiny {
  static constexpr const char* kYaml = R"(
node:
  workers: 1
  queue_capacity: 256
  max_batch: 4
  max_batch_wait_us: 500
  max_history: 4096
  max_candidates: 1024
pool:
  bytes: 64MiB
  chunk_bytes: 1MiB
  r_min: 0.05
  r_max: 0.95
  max_step_bytes: 64MiB
  prefetch_bytes_per_s: 2000000000
emb:
  num_items: 10000000
  dim: 256
  dtype: bf16
kv:
  tokens_per_block: 16
  dtype: bf16
model:
  num_layers: 3
  num_heads: 4
  d_qk: 128
  d_v: 128
  d_model: 512
  num_actions: 16
  candidate_microbatch: 256
router:
  policy: helm
control:
  interval_ms: 250
workload:
  candidates: 64
  max_history: 1024
  slo_ms: 5
train:
  episodes_per_iteration: 2
  episode_s: 4
  envs: 2
  profiles: [amazon-books]
  regimes: [steady]
  scales: [8]
  load_min: 0.6
  load_max: 0.6
  nodes_min: 1
  nodes_max: 1
  gpus: [a100]
)";

  static TrainConfig Config() {
    absl::StatusOr<TrainConfig> c = ParseTrainConfig(kYaml, "tiny");
    if (!c.ok()) std::abort();
    return *std::move(c);
  }

  static EnvSpec Env() {
    EnvSpec e;
    e.profile = "amazon-books";
    e.regime = "steady";
    e.scale = 8;
    e.load = 0.6;
    e.nodes = 1;
    e.gpu = "a100";
    e.initial_split = 0.5;
    e.seed = 7;
    return e;
  }

  static control::Policy Random(uint64_t seed) {
    return control::Policy{control::Mlp::Random({control::kFirstModelFeature, 64, 64, 7}, seed),
                           {-0.10, -0.05, -0.02, 0, 0.02, 0.05, 0.10}};
  }
};

}  // namespace helm::train
