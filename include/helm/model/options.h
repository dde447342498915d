// Options of the HSTU model a node serves (the runtime: helm/model/model.h; weights file layout:
// helm/model/weights.h).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "helm/config/describe.h"

namespace helm::model {

struct ModelOptions {
  int32_t num_layers = 2;
  int32_t num_heads = 2;
  int32_t d_qk = 32;        // per-head query/key width
  int32_t d_v = 32;         // per-head value width
  int32_t d_model = 64;     // model width D; item embeddings are projected to D when emb.dim != D
  int32_t num_actions = 8;  // distinct action ids in histories (0 .. num_actions-1)
  // Relative attention bias: buckets of log2(position distance) and of log2(time delta seconds).
  int32_t position_buckets = 32;
  int32_t time_buckets = 32;
  // Candidates are scored in microbatches of this many (M-FALCON); results do not depend on it.
  int32_t candidate_microbatch = 64;
  // Weights: a safetensors file, or "" for seeded random weights.
  std::string weights_path;
  uint64_t seed = 7;
  // Kernel path: "auto" (fast CPU path, or CUDA on a GPU node), "reference" (plain C++ oracle),
  // "cpu" (fast CPU path), "cuda".
  std::string kernels = "auto";
  // Threads the fast CPU path may use per forward (1: single-threaded; workers parallelise). It
  // sets OpenBLAS's thread count, a process-wide setting, when the kernels are created.
  int32_t cpu_threads = 1;

  template <class V>
  void Describe(V& v) {
    v.Field("num_layers", num_layers, "HSTU layers", config::InRange<int32_t>(1, 64));
    v.Field("num_heads", num_heads, "attention heads", config::InRange<int32_t>(1, 64));
    v.Field("d_qk", d_qk, "per-head query/key width", config::InRange<int32_t>(1, 1024));
    v.Field("d_v", d_v, "per-head value width", config::InRange<int32_t>(1, 1024));
    v.Field("d_model", d_model, "model width D", config::InRange<int32_t>(1, 8192));
    v.Field("num_actions", num_actions, "distinct action ids",
            config::InRange<int32_t>(1, 1 << 16));
    v.Field("position_buckets", position_buckets, "log-bucketed position-distance biases",
            config::InRange<int32_t>(1, 256));
    v.Field("time_buckets", time_buckets, "log-bucketed time-delta biases",
            config::InRange<int32_t>(1, 256));
    v.Field("candidate_microbatch", candidate_microbatch, "candidates per M-FALCON microbatch",
            config::InRange<int32_t>(1, 1 << 16));
    v.Field("weights_path", weights_path, "safetensors weights (\"\": seeded random weights)");
    v.Field("seed", seed, "seed of the random weights");
    v.Field("kernels", kernels, "kernel path", config::OneOf({"auto", "reference", "cpu", "cuda"}));
    v.Field("cpu_threads", cpu_threads, "threads per forward on the CPU path",
            config::InRange<int32_t>(1, 256));
  }

  absl::Status Validate() const {
    if (num_heads * d_v > 65536) {
      return absl::InvalidArgumentError(
          absl::StrCat("num_heads * d_v: must be <= 65536, got ", num_heads * d_v));
    }
    return absl::OkStatus();
  }
};

}  // namespace helm::model
