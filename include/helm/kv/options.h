// Options of the paged KV cache.
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

}  // namespace helm::kv
