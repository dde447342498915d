#include "ref/ref_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "absl/strings/str_cat.h"
#include "helm/common/dtype.h"

namespace helm::kernels {
namespace {

using model::AppendArgs;
using model::AttentionArgs;
using model::GatherArgs;
using model::KernelContext;

double Silu(double z) { return z / (1.0 + std::exp(-z)); }

// Pointer to token `t`'s row of head 0 for `layer`'s K (is_v == false) or V within the blocks.
const void* BlockRow(const AttentionArgs& a, int64_t t, bool is_v) {
  const int64_t tpb = a.tokens_per_block;
  const int64_t slot = t % tpb;
  const int64_t layer_elems = tpb * a.num_heads * int64_t{a.d_qk + a.d_v};
  int64_t elem = a.layer * layer_elems;
  if (is_v) {
    elem += tpb * a.num_heads * int64_t{a.d_qk} + slot * a.num_heads * int64_t{a.d_v};
  } else {
    elem += slot * a.num_heads * int64_t{a.d_qk};
  }
  return static_cast<const char*>(a.blocks[t / tpb]) + elem * DtypeBytes(a.kv_dtype);
}

}  // namespace

absl::Status CheckAttentionArgs(const AttentionArgs& a) {
  if (a.num_heads <= 0 || a.d_qk <= 0 || a.d_v <= 0) {
    return absl::InvalidArgumentError("attention: num_heads, d_qk and d_v must be positive");
  }
  if (a.num_queries < 0 || a.cached_tokens < 0 || a.suffix_tokens < 0) {
    return absl::InvalidArgumentError("attention: negative query or token count");
  }
  if (a.num_queries > 0 && (a.q == nullptr || a.out == nullptr)) {
    return absl::InvalidArgumentError("attention: q and out must be set");
  }
  if (a.q_stride < int64_t{a.num_heads} * a.d_qk) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention: q_stride ", a.q_stride, " is below num_heads * d_qk"));
  }
  if (!a.candidates && a.num_queries > a.suffix_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("attention: ", a.num_queries,
                                                   " history queries but only ", a.suffix_tokens,
                                                   " suffix tokens"));
  }
  if (a.candidates && a.num_queries > 0 &&
      (a.k_self == nullptr || a.v_self == nullptr ||
       a.self_stride < int64_t{a.num_heads} * std::max(a.d_qk, a.d_v))) {
    return absl::InvalidArgumentError("attention: candidates need k_self/v_self and a stride");
  }
  if (a.cached_tokens > 0 &&
      (a.blocks == nullptr || a.tokens_per_block <= 0 || a.layer < 0 || a.layer >= a.num_layers)) {
    return absl::InvalidArgumentError("attention: cached tokens need blocks, tpb and layer");
  }
  if (a.suffix_tokens > 0 && (a.k_suffix == nullptr || a.v_suffix == nullptr)) {
    return absl::InvalidArgumentError("attention: suffix tokens need k_suffix/v_suffix");
  }
  if (a.cached_tokens + a.suffix_tokens > 0 && a.timestamps == nullptr) {
    return absl::InvalidArgumentError("attention: timestamps must be set");
  }
  if (a.pos_bias == nullptr || a.time_bias == nullptr || a.position_buckets <= 0 ||
      a.time_buckets <= 0) {
    return absl::InvalidArgumentError("attention: relative bias tables must be set");
  }
  return absl::OkStatus();
}

absl::Status CheckGatherArgs(const GatherArgs& a) {
  if (a.n < 0 || a.dim <= 0) return absl::InvalidArgumentError("gather: bad n or dim");
  if (a.n > 0 && (a.locations == nullptr || a.out == nullptr)) {
    return absl::InvalidArgumentError("gather: locations and out must be set");
  }
  return absl::OkStatus();
}

absl::Status CheckAppendArgs(const AppendArgs& a) {
  if (a.n < 0 || a.src_first < 0 || a.dst_first_token < 0 || a.src_first + a.n > a.src_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("kv append: tokens [", a.src_first, ", ",
                                                   a.src_first + a.n, ") outside the ",
                                                   a.src_tokens, " scratch tokens"));
  }
  if (a.tokens_per_block <= 0 || a.num_layers <= 0 || a.num_heads <= 0 || a.d_qk <= 0 ||
      a.d_v <= 0) {
    return absl::InvalidArgumentError("kv append: bad shape");
  }
  if (a.n > 0 && (a.src == nullptr || a.blocks == nullptr)) {
    return absl::InvalidArgumentError("kv append: src and blocks must be set");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<KernelContext>> RefKernels::CreateContext() const {
  return std::make_unique<KernelContext>();
}

absl::StatusOr<void*> RefKernels::Allocate(size_t bytes) const {
  const size_t rounded = (bytes + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded == 0 ? 256 : rounded);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " host bytes"));
  }
  return p;
}

void RefKernels::Free(void* ptr) const { std::free(ptr); }

absl::Status RefKernels::CopyToBackend(KernelContext&, void* dst, const void* src,
                                       size_t bytes) const {
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return absl::OkStatus();
}

absl::Status RefKernels::CopyToHost(KernelContext&, void* dst, const void* src,
                                    size_t bytes) const {
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return absl::OkStatus();
}

absl::Status RefKernels::CopyWithin(KernelContext&, void* dst, const void* src,
                                    size_t bytes) const {
  if (bytes > 0) std::memmove(dst, src, bytes);
  return absl::OkStatus();
}

absl::Status RefKernels::Synchronize(KernelContext&) const { return absl::OkStatus(); }

absl::Status RefKernels::Gemm(KernelContext&, int64_t m, int64_t n, int64_t k, const float* a,
                              int64_t lda, const float* b, const float* bias, float* c, int64_t ldc,
                              bool accumulate) const {
  if (m < 0 || n < 0 || k < 0 || lda < k || ldc < n) {
    return absl::InvalidArgumentError("gemm: bad shape or stride");
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = bias != nullptr ? bias[j] : 0.0;
      if (accumulate) sum += c[i * ldc + j];
      for (int64_t p = 0; p < k; ++p) sum += double{a[i * lda + p]} * b[p * n + j];
      c[i * ldc + j] = static_cast<float>(sum);
    }
  }
  return absl::OkStatus();
}

absl::Status RefKernels::BiasSilu(KernelContext&, float* x, int64_t rows, int64_t width,
                                  const float* bias) const {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < width; ++j) {
      float& v = x[r * width + j];
      v = static_cast<float>(Silu(double{v} + (bias != nullptr ? bias[j] : 0.0f)));
    }
  }
  return absl::OkStatus();
}

absl::Status RefKernels::LayerNorm(KernelContext&, const float* x, float* y, int64_t rows,
                                   int64_t width, const float* gamma, const float* beta) const {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    double mean = 0.0;
    for (int64_t j = 0; j < width; ++j) mean += xr[j];
    mean /= static_cast<double>(width);
    double var = 0.0;
    for (int64_t j = 0; j < width; ++j) var += (xr[j] - mean) * (xr[j] - mean);
    var /= static_cast<double>(width);
    const double inv = 1.0 / std::sqrt(var + kLayerNormEps);
    float* yr = y + r * width;
    for (int64_t j = 0; j < width; ++j) {
      yr[j] = static_cast<float>((xr[j] - mean) * inv * gamma[j] + beta[j]);
    }
  }
  return absl::OkStatus();
}

absl::Status RefKernels::LayerNormGate(KernelContext& ctx, const float* o, const float* u,
                                       int64_t u_stride, float* out, int64_t rows, int64_t width,
                                       const float* gamma, const float* beta) const {
  for (int64_t r = 0; r < rows; ++r) {
    const float* orow = o + r * width;
    double mean = 0.0;
    for (int64_t j = 0; j < width; ++j) mean += orow[j];
    mean /= static_cast<double>(width);
    double var = 0.0;
    for (int64_t j = 0; j < width; ++j) var += (orow[j] - mean) * (orow[j] - mean);
    var /= static_cast<double>(width);
    const double inv = 1.0 / std::sqrt(var + kLayerNormEps);
    for (int64_t j = 0; j < width; ++j) {
      out[r * width + j] =
          static_cast<float>(((orow[j] - mean) * inv * gamma[j] + beta[j]) * u[r * u_stride + j]);
    }
  }
  return absl::OkStatus();
}

absl::Status RefKernels::AddRows(KernelContext&, float* x, int64_t rows, int64_t width,
                                 const float* table, const int32_t* ids) const {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < width; ++j) x[r * width + j] += table[int64_t{ids[r]} * width + j];
  }
  return absl::OkStatus();
}

absl::Status RefKernels::CopyColumns(KernelContext&, const float* src, int64_t src_stride,
                                     int64_t col, int64_t rows, int64_t width, float* dst) const {
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * width, src + r * src_stride + col, sizeof(float) * width);
  }
  return absl::OkStatus();
}

absl::Status RefKernels::RowDot(KernelContext&, const float* a, const float* b, int64_t rows,
                                int64_t width, float* out) const {
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int64_t j = 0; j < width; ++j) sum += double{a[r * width + j]} * b[r * width + j];
    out[r] = static_cast<float>(sum);
  }
  return absl::OkStatus();
}

absl::Status RefKernels::Attention(KernelContext&, const AttentionArgs& a) const {
  if (absl::Status s = CheckAttentionArgs(a); !s.ok()) return s;
  const int64_t history = a.cached_tokens + a.suffix_tokens;
  const int H = a.num_heads;
  std::vector<double> acc(a.d_v);
  for (int64_t qi = 0; qi < a.num_queries; ++qi) {
    const int64_t pos_q = a.candidates ? history : a.cached_tokens + qi;
    const int64_t ts_q =
        a.candidates ? (history > 0 ? a.timestamps[history - 1] : 0) : a.timestamps[pos_q];
    const int64_t visible = a.candidates ? history : pos_q + 1;  // history keys seen
    const double inv_n = 1.0 / static_cast<double>(visible + (a.candidates ? 1 : 0));
    for (int h = 0; h < H; ++h) {
      const float* q = a.q + qi * a.q_stride + int64_t{h} * a.d_qk;
      std::fill(acc.begin(), acc.end(), 0.0);
      auto add_key = [&](const float* kf, const void* kraw, const float* vf, const void* vraw,
                         int64_t pos_k, int64_t ts_k) {
        double dot = 0.0;
        for (int d = 0; d < a.d_qk; ++d) {
          const double kv = kf != nullptr ? kf[d] : LoadAsFloat(kraw, a.kv_dtype, d);
          dot += double{q[d]} * kv;
        }
        const double z = a.alpha * dot +
                         a.pos_bias[int64_t{h} * a.position_buckets +
                                    model::Log2Bucket(pos_q - pos_k, a.position_buckets)] +
                         a.time_bias[int64_t{h} * a.time_buckets +
                                     model::Log2Bucket(ts_q - ts_k, a.time_buckets)];
        const double w = Silu(z) * inv_n;
        for (int d = 0; d < a.d_v; ++d) {
          const double vv = vf != nullptr ? vf[d] : LoadAsFloat(vraw, a.kv_dtype, d);
          acc[d] += w * vv;
        }
      };
      for (int64_t t = 0; t < visible; ++t) {
        if (t < a.cached_tokens) {
          const int64_t k_off = int64_t{h} * a.d_qk * DtypeBytes(a.kv_dtype);
          const int64_t v_off = int64_t{h} * a.d_v * DtypeBytes(a.kv_dtype);
          add_key(nullptr, static_cast<const char*>(BlockRow(a, t, false)) + k_off, nullptr,
                  static_cast<const char*>(BlockRow(a, t, true)) + v_off, t, a.timestamps[t]);
        } else {
          const int64_t s = t - a.cached_tokens;
          add_key(a.k_suffix + (s * H + h) * a.d_qk, nullptr, a.v_suffix + (s * H + h) * a.d_v,
                  nullptr, t, a.timestamps[t]);
        }
      }
      if (a.candidates) {
        add_key(a.k_self + qi * a.self_stride + int64_t{h} * a.d_qk, nullptr,
                a.v_self + qi * a.self_stride + int64_t{h} * a.d_v, nullptr, pos_q, ts_q);
      }
      float* out = a.out + (qi * H + h) * a.d_v;
      for (int d = 0; d < a.d_v; ++d) out[d] = static_cast<float>(acc[d]);
    }
  }
  return absl::OkStatus();
}

absl::Status RefKernels::GatherEmbeddings(KernelContext&, const GatherArgs& a) const {
  if (absl::Status s = CheckGatherArgs(a); !s.ok()) return s;
  const int64_t row_bytes = int64_t{a.dim} * DtypeBytes(a.dtype);
  for (int64_t r = 0; r < a.n; ++r) {
    const int64_t loc = a.locations[r];
    const void* row = loc >= 0
                          ? static_cast<const char*>(a.arena_base) + loc
                          : static_cast<const char*>(a.staging_base) + (-(loc + 1)) * row_bytes;
    for (int j = 0; j < a.dim; ++j) a.out[r * a.dim + j] = LoadAsFloat(row, a.dtype, j);
  }
  return absl::OkStatus();
}

absl::Status RefKernels::AppendKv(KernelContext&, const AppendArgs& a) const {
  if (absl::Status s = CheckAppendArgs(a); !s.ok()) return s;
  const int64_t H = a.num_heads;
  const int64_t tpb = a.tokens_per_block;
  const int64_t layer_elems = tpb * H * (a.d_qk + a.d_v);
  for (int32_t l = 0; l < a.num_layers; ++l) {
    const float* src_k = a.src + int64_t{l} * a.src_tokens * H * (a.d_qk + a.d_v);
    const float* src_v = src_k + a.src_tokens * H * a.d_qk;
    for (int64_t i = 0; i < a.n; ++i) {
      const int64_t t = a.dst_first_token + i;
      void* block = a.blocks[t / tpb];
      const int64_t slot = t % tpb;
      const int64_t k_base = l * layer_elems + slot * H * a.d_qk;
      const int64_t v_base = l * layer_elems + tpb * H * a.d_qk + slot * H * a.d_v;
      const int64_t s = a.src_first + i;
      for (int64_t e = 0; e < H * a.d_qk; ++e) {
        StoreFromFloat(block, a.kv_dtype, k_base + e, src_k[s * H * a.d_qk + e]);
      }
      for (int64_t e = 0; e < H * a.d_v; ++e) {
        StoreFromFloat(block, a.kv_dtype, v_base + e, src_v[s * H * a.d_v + e]);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status RefKernels::RelocateBlocks(KernelContext&, void* arena, const int64_t* src_offsets,
                                        const int64_t* dst_offsets, int64_t n,
                                        int64_t block_bytes) const {
  if (n < 0 || block_bytes <= 0) return absl::InvalidArgumentError("relocate: bad n or size");
  char* base = static_cast<char*>(arena);
  for (int64_t i = 0; i < n; ++i) {
    if (src_offsets[i] < 0 || dst_offsets[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("relocate: negative offset at block ", i));
    }
    std::memcpy(base + dst_offsets[i], base + src_offsets[i], block_bytes);
  }
  return absl::OkStatus();
}

}  // namespace helm::kernels
