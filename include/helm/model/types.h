// Shapes, dtypes and the small numeric conventions shared by every kernel path of the HSTU runtime
// (reference, fast CPU, CUDA): the KV block layout, the relative-bias buckets and fp16/bf16
// conversion. Header-only and dependency-light so kernels/ can use it without linking helm::model.
// Thread-safety: value types and pure functions; safe to use from any thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace helm::model {

// Element type of embedding rows and of cached K/V.
enum class Dtype : int32_t { kFp32 = 0, kFp16 = 1, kBf16 = 2 };

inline absl::StatusOr<Dtype> ParseDtype(absl::string_view name) {
  if (name == "fp32") return Dtype::kFp32;
  if (name == "fp16") return Dtype::kFp16;
  if (name == "bf16") return Dtype::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype: must be one of {fp32, fp16, bf16}, got '", name, "'"));
}

inline const char* DtypeName(Dtype dtype) {
  switch (dtype) {
    case Dtype::kFp32:
      return "fp32";
    case Dtype::kFp16:
      return "fp16";
    case Dtype::kBf16:
      return "bf16";
  }
  return "?";
}

inline int DtypeSize(Dtype dtype) { return dtype == Dtype::kFp32 ? 4 : 2; }

// IEEE binary16 -> fp32 (exact).
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal half: renormalise.
    exponent = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// fp32 -> IEEE binary16, round to nearest even (as CUDA's __float2half_rn).
inline uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {  // subnormal or zero in half
    if (abs < 0x33000000u) return sign;
    const uint32_t exponent = abs >> 23;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exponent;  // 14..24
    uint32_t result = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (result & 1u))) ++result;
    return static_cast<uint16_t>(sign | result);
  }
  uint32_t result = ((abs >> 13) - (112u << 10));
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (result & 1u))) ++result;
  return static_cast<uint16_t>(sign | result);
}

inline float Bf16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// fp32 -> bfloat16, round to nearest even (as CUDA's __float2bfloat16_rn).
inline uint16_t FloatToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
  const uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

// Reads element `i` of an array of `dtype` as fp32.
inline float LoadAsFloat(const void* base, Dtype dtype, int64_t i) {
  switch (dtype) {
    case Dtype::kFp32: {
      float f;  // memcpy: host callers may hand rows at any byte offset
      std::memcpy(&f, static_cast<const char*>(base) + 4 * i, sizeof(f));
      return f;
    }
    case Dtype::kFp16:
      return HalfToFloat(static_cast<const uint16_t*>(base)[i]);
    case Dtype::kBf16:
      return Bf16ToFloat(static_cast<const uint16_t*>(base)[i]);
  }
  return 0.0f;
}

// Writes fp32 `value` as element `i` of an array of `dtype` (round to nearest even).
inline void StoreFromFloat(void* base, Dtype dtype, int64_t i, float value) {
  switch (dtype) {
    case Dtype::kFp32:
      static_cast<float*>(base)[i] = value;
      break;
    case Dtype::kFp16:
      static_cast<uint16_t*>(base)[i] = FloatToHalf(value);
      break;
    case Dtype::kBf16:
      static_cast<uint16_t*>(base)[i] = FloatToBf16(value);
      break;
  }
}

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
  int64_t block_bytes() const { return block_elems() * DtypeSize(kv_dtype); }
  // K/V values of one token for every layer (the KV footprint per token, in elements).
  int64_t kv_elems_per_token() const { return int64_t{num_layers} * num_heads * (d_qk + d_v); }
};

}  // namespace helm::model
