// The small fixed model the safetensors target loads files for (and write_seeds writes its seed
// for): every tensor kind present (embeddings projected, since emb_dim != d_model), a few bytes
// each.
#pragma once

#include "helm/model/types.h"

namespace helm::fuzz {

inline model::ModelDims FuzzModelDims() {
  model::ModelDims d;
  d.num_layers = 1;
  d.num_heads = 1;
  d.d_qk = 2;
  d.d_v = 2;
  d.d_model = 4;
  d.emb_dim = 3;
  d.num_actions = 2;
  d.position_buckets = 2;
  d.time_buckets = 2;
  d.tokens_per_block = 4;
  return d;
}

// The .npy target's table shape.
inline constexpr int64_t kFuzzNpyRows = 4;
inline constexpr int32_t kFuzzNpyCols = 3;

}  // namespace helm::fuzz
