#include "helm/model/kv_geometry.h"

#include "gtest/gtest.h"
#include "helm/config/config.h"
#include "helm/model/types.h"

namespace helm::model {
namespace {

ModelOptions Production() {  // DESIGN.md §10: DLRMv3-style HSTU
  ModelOptions m;
  m.num_layers = 3;
  m.num_heads = 4;
  m.d_qk = 128;
  m.d_v = 128;
  m.d_model = 512;
  return m;
}

TEST(KvGeometry, BlockBytesFollowTheKernelsBlockLayout) {
  kv::KvOptions kv;
  kv.tokens_per_block = 16;
  kv.dtype = "bf16";
  const kv::KvCacheOptions o = KvCacheOptionsFor(Production(), kv);
  EXPECT_EQ(o.block_bytes, 16 * (6 << 10));  // 6 KiB of K/V per token in bf16
  EXPECT_EQ(o.block_bytes, config::KvBlockBytes(Production(), kv));
  ModelDims dims;
  dims.num_layers = 3;
  dims.num_heads = 4;
  dims.d_qk = 128;
  dims.d_v = 128;
  dims.tokens_per_block = 16;
  dims.kv_dtype = Dtype::kBf16;
  EXPECT_EQ(o.block_bytes, dims.block_bytes());
  kv.dtype = "fp32";
  EXPECT_EQ(KvCacheOptionsFor(Production(), kv).block_bytes, 2 * dims.block_bytes());
  kv.dtype = "int8";
  EXPECT_EQ(KvCacheOptionsFor(Production(), kv).block_bytes, 0);  // KvCache::Create rejects it
}

TEST(KvGeometry, AttentionRatioIsAttentionOverLinearFlopsPerToken) {
  kv::KvOptions kv;
  kv.eviction = "lru";
  const kv::KvCacheOptions o = KvCacheOptionsFor(Production(), kv);
  // 2*H*(d_qk + d_v) = 2048 over 2*D*H*(2*d_qk + 3*d_v) = 2621440.
  EXPECT_DOUBLE_EQ(o.attention_ratio, 1.0 / 1280.0);
  EXPECT_EQ(o.kv.eviction, "lru");  // the YAML options pass through
  ModelOptions wider = Production();
  wider.d_model = 1024;  // twice the linear work per token, same attention work
  EXPECT_DOUBLE_EQ(KvAttentionRatio(wider), o.attention_ratio / 2);
  ModelOptions none = Production();
  none.d_model = 0;
  EXPECT_EQ(KvAttentionRatio(none), 0.0);
}

}  // namespace
}  // namespace helm::model
