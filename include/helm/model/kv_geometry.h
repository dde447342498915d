// What the paged KV cache needs to know of the HSTU model whose K/V it holds, derived from the
// model's dimensions: the bytes of one block and the recompute-cost ratio of cost-aware eviction.
// The KV cache knows blocks, not layers; this is where layers become blocks.
//
// Thread-safety: pure functions.
#pragma once

#include "helm/kv/options.h"
#include "helm/model/options.h"

namespace helm::model {

// Attention work per earlier token over the position-free (linear) work per token, of one HSTU
// layer (the layer count cancels): linear 2*D*H*(2*d_qk + 3*d_v) FLOPs for the U,V,Q,K projection
// and the output projection, attention 2*H*(d_qk + d_v) FLOPs per earlier token (Q.K and A.V).
// 0 when d_model or num_heads is not positive.
double KvAttentionRatio(const ModelOptions& model);

// KvCache::Create's options for a cache holding `model`'s K/V: `kv`, the block bytes of the
// kernels' block layout (config::KvBlockBytes, equal to ModelDims::block_bytes(); 0 for an
// unknown kv.dtype) and KvAttentionRatio. KvCache::Create validates the result.
kv::KvCacheOptions KvCacheOptionsFor(const ModelOptions& model, const kv::KvOptions& kv);

}  // namespace helm::model
