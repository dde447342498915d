// Options of the paged KV cache: the YAML options (KvOptions) and what KvCache::Create takes
// (KvCacheOptions: those plus the block geometry and recompute cost, derived by the caller from the
// model that fills the blocks; helm/model/kv_geometry.h does it for the HSTU model). The cache
// knows blocks, not layers.
#pragma once

#include <cstdint>
#include <string>

#include "helm/config/describe.h"

namespace helm::kv {

struct KvOptions {
  // Tokens per KV block; a block holds K and V of these tokens for every layer.
  int32_t tokens_per_block = 16;
  // Storage dtype of cached K/V: "fp32", "fp16" or "bf16".
  std::string dtype = "fp32";
  // Eviction: "cost_aware" (recompute cost x reuse likelihood per byte, tail trimming) or "lru"
  // (least recently used user, whole user).
  std::string eviction = "cost_aware";
  // Allow trimming a user's tail blocks instead of dropping the whole user.
  bool allow_trim = true;

  template <class V>
  void Describe(V& v) {
    v.Field("tokens_per_block", tokens_per_block, "tokens per KV block",
            config::InRange<int32_t>(1, 1024));
    v.Field("dtype", dtype, "K/V dtype", config::OneOf({"fp32", "fp16", "bf16"}));
    v.Field("eviction", eviction, "eviction policy", config::OneOf({"cost_aware", "lru"}));
    v.Field("allow_trim", allow_trim, "trim a user's tail blocks instead of dropping the user");
  }
};

// Everything KvCache::Create needs: the YAML options plus figures derived from the model.
struct KvCacheOptions {
  KvOptions kv;
  // Bytes of one block (tokens_per_block tokens of K and V for every layer, in kv.dtype). Must be
  // >= 1 and fit in a pool chunk.
  int64_t block_bytes = 0;
  // Recompute cost model of cost-aware eviction: the token at position t of a user's sequence
  // costs (1 + attention_ratio * t) units to recompute, a unit being one token's position-free
  // work (the linear layers) and attention_ratio the attention work per earlier token relative to
  // it. Must be finite and >= 0; 0 makes every token cost the same.
  double attention_ratio = 0;
};

}  // namespace helm::kv
