// Shapes, dtypes and the small numeric conventions shared by every kernel path of the HSTU runtime
// (reference, fast CPU, CUDA): the KV block layout and the relative-bias buckets (dtypes and their
// conversions: helm/common/dtype.h). Header-only and dependency-light so kernels/ can use it
// without linking helm::model. Thread-safety: value types and pure functions; safe to use from any
// thread.
#pragma once

#include <cstdint>

#include "helm/common/dtype.h"

namespace helm::model {

// Relative attention bias buckets. A query at position p (timestamp t) attending a key at
// position p' <= p (timestamp t') adds pos_bias[h][PositionBucket(p - p')] +
// time_bias[h][TimeBucket(t - t')]. Bucket 0 is distance 0 (the token itself, or the same
// second); bucket b >= 1 holds distances in [2^(b-1), 2^b); the last bucket takes everything
// beyond. Time deltas are in the timestamps' unit (seconds); a negative delta (timestamps out of
// order) falls in bucket 0.
inline int32_t Log2Bucket(int64_t distance, int32_t num_buckets) {
  if (distance <= 0) return 0;
  const int32_t bucket = 64 - __builtin_clzll(static_cast<uint64_t>(distance));
  return bucket < num_buckets ? bucket : num_buckets - 1;
}

// Every shape the runtime needs, derived once from ModelOptions, EmbOptions and KvOptions.
//
// KV block layout (contract with the paged KV cache): a block holds `tokens_per_block` tokens of
// K and V for every layer, `[num_layers][2: K then V][tokens_per_block][num_heads][d]` with d =
// d_qk for K and d_v for V, elements of `kv_dtype`. Token t of a user lives in block
// t / tokens_per_block at slot t % tokens_per_block.
struct ModelDims {
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t d_qk = 0;
  int32_t d_v = 0;
  int32_t d_model = 0;
  int32_t emb_dim = 0;
  int32_t num_actions = 0;
  int32_t position_buckets = 0;
  int32_t time_buckets = 0;
  int32_t tokens_per_block = 0;
  Dtype emb_dtype = Dtype::kFp32;
  Dtype kv_dtype = Dtype::kFp32;

  // Width of the fused U|V|Q|K projection: U and V are num_heads*d_v wide, Q and K
  // num_heads*d_qk.
  int64_t uvqk_width() const { return 2 * int64_t{num_heads} * (d_v + d_qk); }
  int64_t u_offset() const { return 0; }
  int64_t v_offset() const { return int64_t{num_heads} * d_v; }
  int64_t q_offset() const { return 2 * int64_t{num_heads} * d_v; }
  int64_t k_offset() const { return 2 * int64_t{num_heads} * d_v + int64_t{num_heads} * d_qk; }
  // Width of the attention output (all heads' values).
  int64_t attn_width() const { return int64_t{num_heads} * d_v; }
  bool projects_embeddings() const { return emb_dim != d_model; }

  // Elements of one layer's K then V within a block, and of a whole block.
  int64_t block_k_elems() const { return int64_t{tokens_per_block} * num_heads * d_qk; }
  int64_t block_layer_elems() const { return int64_t{tokens_per_block} * num_heads * (d_qk + d_v); }
  int64_t block_elems() const { return block_layer_elems() * num_layers; }
  int64_t block_bytes() const { return block_elems() * DtypeBytes(kv_dtype); }
  // K/V values of one token for every layer (the KV footprint per token, in elements).
  int64_t kv_elems_per_token() const { return int64_t{num_layers} * num_heads * (d_qk + d_v); }
};

}  // namespace helm::model
