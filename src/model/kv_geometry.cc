#include "helm/model/kv_geometry.h"

#include "helm/config/config.h"

namespace helm::model {

double KvAttentionRatio(const ModelOptions& model) {
  const double linear =
      2.0 * model.d_model * model.num_heads * (2.0 * model.d_qk + 3.0 * model.d_v);
  const double attention = 2.0 * model.num_heads * (model.d_qk + model.d_v);
  return linear > 0 ? attention / linear : 0.0;
}

kv::KvCacheOptions KvCacheOptionsFor(const ModelOptions& model, const kv::KvOptions& kv) {
  kv::KvCacheOptions options;
  options.kv = kv;
  options.block_bytes = config::KvBlockBytes(model, kv);
  options.attention_ratio = KvAttentionRatio(model);
  return options;
}

}  // namespace helm::model
