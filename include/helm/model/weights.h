// Weights of the HSTU model: loaded from a safetensors file (header parsed with nlohmann-json,
// tensor bytes mmapped) or generated from a seed; written back as safetensors by `helm-weights`.
//
// Tensor names and shapes (all F32, row-major; D = d_model, H = num_heads, E = emb_dim,
// W = 2*H*(d_v + d_qk), the fused U|V|Q|K width):
//   item_proj.weight        [E, D]      only when E != D: item embedding -> model width
//   item_proj.bias          [D]         only when E != D
//   action_emb              [num_actions, D]   added to history tokens by action id
//   layers.{i}.norm_in.weight / .bias   [D]    LayerNorm before the fused projection
//   layers.{i}.uvqk.weight  [D, W]      columns: U [H*d_v] | V [H*d_v] | Q [H*d_qk] | K [H*d_qk]
//   layers.{i}.uvqk.bias    [W]
//   layers.{i}.pos_bias     [H, position_buckets]   relative bias by log2 position distance
//   layers.{i}.time_bias    [H, time_buckets]       relative bias by log2 time delta (seconds)
//   layers.{i}.norm_attn.weight / .bias [H*d_v]     LayerNorm of the attention output
//   layers.{i}.out.weight   [H*d_v, D]
//   layers.{i}.out.bias     [D]
//   final_norm.weight / .bias           [D]    LayerNorm of a candidate's final state
//   head.weight             [D, D]      scoring head: score = <final_norm(y_c), head(x0_c)>
//   head.bias               [D]
// A file must hold exactly these tensors; every name, dtype, shape and byte range is checked and
// an error names the tensor. "__metadata__" may carry free-form strings.
//
// Thread-safety: immutable after creation; share freely.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "helm/model/types.h"

namespace helm::model {

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t elements() const;
};

// The tensors a model of `dims` needs, in file order.
std::vector<TensorSpec> WeightSpecs(const ModelDims& dims);

class Weights {
 public:
  // Seeded random weights (uniform, scaled by 1/sqrt(fan-in); LayerNorm gains near 1): the
  // embedded default and the tests' weights. Same seed and dims: same weights.
  // REQUIRES: valid dims (as DimsFromOptions returns them).
  static std::unique_ptr<Weights> Random(const ModelDims& dims, uint64_t seed);

  // Maps a safetensors file and checks it against `dims`. NotFound when the file cannot be
  // opened; InvalidArgument naming the tensor (or the header) for anything else.
  static absl::StatusOr<std::unique_ptr<Weights>> Load(const std::string& path,
                                                       const ModelDims& dims);

  ~Weights();
  Weights(const Weights&) = delete;
  Weights& operator=(const Weights&) = delete;

  // Writes these weights as a safetensors file (F32 tensors in WeightSpecs order).
  absl::Status Save(const std::string& path) const;

  // The tensor `name` (host memory, fp32, its WeightSpecs shape). REQUIRES: name is one of
  // WeightSpecs(dims()); programmer error otherwise.
  const float* Get(absl::string_view name) const;
  const ModelDims& dims() const { return dims_; }
  const std::vector<TensorSpec>& specs() const { return specs_; }

 private:
  explicit Weights(const ModelDims& dims);

  ModelDims dims_;
  std::vector<TensorSpec> specs_;
  std::vector<float> owned_;  // all tensors back to back (random weights, or unaligned files)
  void* mapping_ = nullptr;   // mmapped file, when tensors point into it
  size_t mapping_bytes_ = 0;
  absl::flat_hash_map<std::string, const float*> tensors_;
};

}  // namespace helm::model
