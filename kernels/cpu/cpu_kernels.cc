#include "cpu/cpu_kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "helm/common/dtype.h"

namespace helm::kernels {
namespace {

using model::AttentionArgs;
using model::KernelContext;

// Hot loops are compiled three times and the best version for the CPU is picked at load time:
// the binaries run on dev machines and on GPU hosts of different generations.
#define HELM_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))

// Per-thread scratch of the attention tiles, reused across calls.
struct CpuContext : KernelContext {
  std::vector<float> keys;       // [history, H, d_qk]
  std::vector<float> values;     // [history, H, d_v]
  std::vector<float> scores;     // [tile, history]
  std::vector<uint8_t> buckets;  // [tile, history] time buckets
  std::vector<float> dist_bias;  // [H, history + 1] reversed position-bias rows
  std::vector<float> bias_row;   // [history] the candidates' relative bias for one head
  // What keys, values and dist_bias were prepared from (checked before reusing them).
  struct Prepared {
    const void* const* blocks = nullptr;
    int64_t cached_tokens = -1;
    int32_t layer = -1;
    Dtype kv_dtype = Dtype::kFp32;
    const float* k_suffix = nullptr;
    const float* v_suffix = nullptr;
    int64_t suffix_tokens = -1;
    const float* pos_bias = nullptr;
    int32_t position_buckets = 0;
    bool operator==(const Prepared&) const = default;
  } prepared;
};

constexpr int64_t kQueryTile = 128;

// exp(x) in fp32, branch-free so that loops calling it vectorise: Cephes' polynomial on
// x - n*ln2, relative error ~2e-7 over the clamped range.
inline float FastExp(float x) {
  // Ternaries (not std::min/max) so GCC turns the clamp into vector min/max.
  x = x < 88.3762626647949f ? x : 88.3762626647949f;
  x = x > -87.3365478515625f ? x : -87.3365478515625f;
  const float fx = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t e = static_cast<int32_t>(fx) + 127;
  const int32_t bits = e << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline float Silu(float z) { return z / (1.0f + FastExp(-z)); }

HELM_MULTIVERSION
void BiasSiluRow(float* __restrict x, const float* __restrict bias, int64_t width) {
  for (int64_t j = 0; j < width; ++j) x[j] = Silu(x[j] + bias[j]);
}

HELM_MULTIVERSION
void SiluRow(float* x, int64_t width) {
  for (int64_t j = 0; j < width; ++j) x[j] = Silu(x[j]);
}

// Sums in kLanes independent partial sums: a single running fp32 sum is one long dependency
// chain that GCC may not reorder (no -ffast-math); independent lanes vectorise.
constexpr int kLanes = 16;

inline float ReduceLanes(const float* lanes) {
  float sum = 0.0f;
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

// Mean and 1/sqrt(var + eps) of one row (two passes).
HELM_MULTIVERSION
void RowMoments(const float* x, int64_t width, float* mean_out, float* inv_out) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= width; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += x[j + l];
  }
  float sum = ReduceLanes(lanes);
  for (; j < width; ++j) sum += x[j];
  const float mean = sum / static_cast<float>(width);
  float sq_lanes[kLanes] = {};
  j = 0;
  for (; j + kLanes <= width; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) sq_lanes[l] += (x[j + l] - mean) * (x[j + l] - mean);
  }
  float sq = ReduceLanes(sq_lanes);
  for (; j < width; ++j) sq += (x[j] - mean) * (x[j] - mean);
  *mean_out = mean;
  *inv_out = 1.0f / std::sqrt(sq / static_cast<float>(width) + kLayerNormEps);
}

HELM_MULTIVERSION
void NormRow(const float* x, float* y, int64_t width, float mean, float inv, const float* gamma,
             const float* beta) {
  for (int64_t j = 0; j < width; ++j) y[j] = (x[j] - mean) * inv * gamma[j] + beta[j];
}

HELM_MULTIVERSION
void NormGateRow(const float* o, const float* u, float* out, int64_t width, float mean, float inv,
                 const float* gamma, const float* beta) {
  for (int64_t j = 0; j < width; ++j) out[j] = ((o[j] - mean) * inv * gamma[j] + beta[j]) * u[j];
}

HELM_MULTIVERSION
float Dot(const float* a, const float* b, int64_t n) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[j + l] * b[j + l];
  }
  float sum = ReduceLanes(lanes);
  for (; j < n; ++j) sum += a[j] * b[j];
  return sum;
}

// Scores of one query row: s[j] = SiLU(alpha*s[j] + dist[j] + time_bias[bucket[j]]) * inv_n for
// the `visible` keys, 0 for the rest up to `width`.
HELM_MULTIVERSION
void TransformScores(float* __restrict s, const float* __restrict dist,
                     const uint8_t* __restrict bucket, const float* __restrict time_bias,
                     float alpha, float inv_n, int64_t visible, int64_t width) {
  for (int64_t j = 0; j < visible; ++j) {
    const float z = alpha * s[j] + dist[j] + time_bias[bucket[j]];
    s[j] = Silu(z) * inv_n;
  }
  for (int64_t j = visible; j < width; ++j) s[j] = 0.0f;
}

// bias[j] = dist[j] + time_bias[bucket[j]]: the relative bias of one query row.
HELM_MULTIVERSION
void BiasRow(const float* __restrict dist, const uint8_t* __restrict bucket,
             const float* __restrict time_bias, int64_t n, float* __restrict bias) {
  for (int64_t j = 0; j < n; ++j) bias[j] = dist[j] + time_bias[bucket[j]];
}

// s[j] = SiLU(alpha*s[j] + bias[j]) * inv_n for every key (candidates see all of them).
HELM_MULTIVERSION
void TransformScoresWithBias(float* __restrict s, const float* __restrict bias, float alpha,
                             float inv_n, int64_t n) {
  for (int64_t j = 0; j < n; ++j) s[j] = Silu(alpha * s[j] + bias[j]) * inv_n;
}

void TimeBuckets(const int64_t* ts, int64_t ts_q, int64_t n, int32_t num_buckets, uint8_t* out) {
  for (int64_t j = 0; j < n; ++j) {
    out[j] = static_cast<uint8_t>(model::Log2Bucket(ts_q - ts[j], num_buckets));
  }
}

// Copies the history's K (is_v false) or V of one layer into a contiguous [history, H, d]
// fp32 buffer: cached tokens from the paged blocks (converted from kv_dtype), then the suffix.
void GatherLayerKv(const AttentionArgs& a, bool is_v, float* out) {
  const int64_t H = a.num_heads;
  const int64_t d = is_v ? a.d_v : a.d_qk;
  const int64_t tpb = a.tokens_per_block;
  const int64_t row = H * d;
  const int64_t layer_elems = tpb * H * int64_t{a.d_qk + a.d_v};
  const int64_t offset = a.layer * layer_elems + (is_v ? tpb * H * a.d_qk : 0);
  const int esize = DtypeBytes(a.kv_dtype);
  for (int64_t t0 = 0; t0 < a.cached_tokens; t0 += tpb) {
    const int64_t count = std::min(tpb, a.cached_tokens - t0);
    const char* src = static_cast<const char*>(a.blocks[t0 / tpb]) + offset * esize;
    float* dst = out + t0 * row;
    if (a.kv_dtype == Dtype::kFp32) {
      std::memcpy(dst, src, sizeof(float) * count * row);
    } else {
      for (int64_t e = 0; e < count * row; ++e) dst[e] = LoadAsFloat(src, a.kv_dtype, e);
    }
  }
  const float* suffix = is_v ? a.v_suffix : a.k_suffix;
  if (a.suffix_tokens > 0) {
    std::memcpy(out + a.cached_tokens * row, suffix, sizeof(float) * a.suffix_tokens * row);
  }
}

}  // namespace

CpuKernels::CpuKernels(int32_t cpu_threads) {
  openblas_set_num_threads(std::max<int32_t>(1, cpu_threads));
}

absl::StatusOr<std::unique_ptr<KernelContext>> CpuKernels::CreateContext() const {
  return std::make_unique<CpuContext>();
}

absl::Status CpuKernels::Gemm(KernelContext&, int64_t m, int64_t n, int64_t k, const float* a,
                              int64_t lda, const float* b, const float* bias, float* c, int64_t ldc,
                              bool accumulate) const {
  if (m < 0 || n < 0 || k < 0 || lda < k || ldc < n) {
    return absl::InvalidArgumentError("gemm: bad shape or stride");
  }
  if (m == 0 || n == 0) return absl::OkStatus();
  float beta = accumulate ? 1.0f : 0.0f;
  if (bias != nullptr) {
    for (int64_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
      if (accumulate) {
        for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
      } else {
        std::memcpy(row, bias, sizeof(float) * n);
      }
    }
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), 1.0f, a, static_cast<int>(lda), b, static_cast<int>(n), beta, c,
              static_cast<int>(ldc));
  return absl::OkStatus();
}

absl::Status CpuKernels::BiasSilu(KernelContext&, float* x, int64_t rows, int64_t width,
                                  const float* bias) const {
  for (int64_t r = 0; r < rows; ++r) {
    if (bias != nullptr) {
      BiasSiluRow(x + r * width, bias, width);
    } else {
      SiluRow(x + r * width, width);
    }
  }
  return absl::OkStatus();
}

absl::Status CpuKernels::LayerNorm(KernelContext&, const float* x, float* y, int64_t rows,
                                   int64_t width, const float* gamma, const float* beta) const {
  for (int64_t r = 0; r < rows; ++r) {
    float mean, inv;
    RowMoments(x + r * width, width, &mean, &inv);
    NormRow(x + r * width, y + r * width, width, mean, inv, gamma, beta);
  }
  return absl::OkStatus();
}

absl::Status CpuKernels::LayerNormGate(KernelContext&, const float* o, const float* u,
                                       int64_t u_stride, float* out, int64_t rows, int64_t width,
                                       const float* gamma, const float* beta) const {
  for (int64_t r = 0; r < rows; ++r) {
    float mean, inv;
    RowMoments(o + r * width, width, &mean, &inv);
    NormGateRow(o + r * width, u + r * u_stride, out + r * width, width, mean, inv, gamma, beta);
  }
  return absl::OkStatus();
}

absl::Status CpuKernels::RowDot(KernelContext&, const float* a, const float* b, int64_t rows,
                                int64_t width, float* out) const {
  for (int64_t r = 0; r < rows; ++r) out[r] = Dot(a + r * width, b + r * width, width);
  return absl::OkStatus();
}

absl::Status CpuKernels::GatherEmbeddings(KernelContext& ctx, const model::GatherArgs& a) const {
  if (a.dtype != Dtype::kFp32) return RefKernels::GatherEmbeddings(ctx, a);
  if (absl::Status s = CheckGatherArgs(a); !s.ok()) return s;
  const int64_t row_bytes = int64_t{a.dim} * sizeof(float);
  for (int64_t r = 0; r < a.n; ++r) {
    const int64_t loc = a.locations[r];
    const char* row = loc >= 0
                          ? static_cast<const char*>(a.arena_base) + loc
                          : static_cast<const char*>(a.staging_base) + (-(loc + 1)) * row_bytes;
    std::memcpy(a.out + r * a.dim, row, row_bytes);
  }
  return absl::OkStatus();
}

absl::Status CpuKernels::Attention(KernelContext& base_ctx, const AttentionArgs& a) const {
  if (absl::Status s = CheckAttentionArgs(a); !s.ok()) return s;
  if (a.num_queries == 0) return absl::OkStatus();
  auto& ctx = static_cast<CpuContext&>(base_ctx);
  const int64_t H = a.num_heads;
  const int64_t history = a.cached_tokens + a.suffix_tokens;
  const int64_t k_row = H * a.d_qk;
  const int64_t v_row = H * a.d_v;

  // The layer's K/V as contiguous rows and the position-bias rows: prepared once per layer when
  // the caller says the K/V did not change since the last call (and they came from the same
  // arguments), else now.
  const CpuContext::Prepared wanted{a.blocks,        a.cached_tokens, a.layer,
                                    a.kv_dtype,      a.k_suffix,      a.v_suffix,
                                    a.suffix_tokens, a.pos_bias,      a.position_buckets};
  if (!a.same_kv_as_last_call || !(ctx.prepared == wanted)) {
    ctx.prepared = {};  // invalid while being rebuilt
    ctx.keys.resize(std::max<int64_t>(1, history * k_row));
    ctx.values.resize(std::max<int64_t>(1, history * v_row));
    if (history > 0) {
      GatherLayerKv(a, false, ctx.keys.data());
      GatherLayerKv(a, true, ctx.values.data());
    }
    // dist_bias[h][i] = pos_bias[h][bucket(history - i)], so that a query at position p reads the
    // bias of key j at index history - p + j: a contiguous, vectorisable row.
    ctx.dist_bias.resize(H * (history + 1));
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i <= history; ++i) {
        ctx.dist_bias[h * (history + 1) + i] =
            a.pos_bias[h * a.position_buckets + model::Log2Bucket(history - i, a.position_buckets)];
      }
    }
    ctx.prepared = wanted;
  }
  const int64_t tile = std::min<int64_t>(kQueryTile, a.num_queries);
  ctx.scores.resize(std::max<int64_t>(1, tile * history));
  ctx.buckets.resize(std::max<int64_t>(1, tile * history));
  const int64_t last_ts = history > 0 ? a.timestamps[history - 1] : 0;

  for (int64_t q0 = 0; q0 < a.num_queries; q0 += tile) {
    const int64_t rows = std::min(tile, a.num_queries - q0);
    // Keys any query of the tile sees (causal: up to the tile's last query).
    const int64_t keys = a.candidates ? history : a.cached_tokens + q0 + rows;
    // Candidates share one position and timestamp, so one row of buckets serves the tile.
    for (int64_t r = 0; r < (a.candidates ? 1 : rows); ++r) {
      const int64_t ts_q = a.candidates ? last_ts : a.timestamps[a.cached_tokens + q0 + r];
      TimeBuckets(a.timestamps, ts_q, keys, a.time_buckets, ctx.buckets.data() + r * keys);
    }
    for (int64_t h = 0; h < H; ++h) {
      float* out = a.out + q0 * v_row + h * a.d_v;
      if (keys == 0) {
        for (int64_t r = 0; r < rows; ++r) std::fill(out + r * v_row, out + r * v_row + a.d_v, 0.f);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
                    static_cast<int>(keys), a.d_qk, 1.0f, a.q + q0 * a.q_stride + h * a.d_qk,
                    static_cast<int>(a.q_stride), ctx.keys.data() + h * a.d_qk,
                    static_cast<int>(k_row), 0.0f, ctx.scores.data(), static_cast<int>(keys));
        if (a.candidates) {
          // One bias row (position L, the last timestamp) for every candidate of the tile.
          ctx.bias_row.resize(keys);
          BiasRow(ctx.dist_bias.data() + h * (history + 1), ctx.buckets.data(),
                  a.time_bias + h * a.time_buckets, keys, ctx.bias_row.data());
          const float inv_n = 1.0f / static_cast<float>(history + 1);
          for (int64_t r = 0; r < rows; ++r) {
            TransformScoresWithBias(ctx.scores.data() + r * keys, ctx.bias_row.data(), a.alpha,
                                    inv_n, keys);
          }
        } else {
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t pos_q = a.cached_tokens + q0 + r;
            const float inv_n = 1.0f / static_cast<float>(pos_q + 1);
            TransformScores(ctx.scores.data() + r * keys,
                            ctx.dist_bias.data() + h * (history + 1) + (history - pos_q),
                            ctx.buckets.data() + r * keys, a.time_bias + h * a.time_buckets,
                            a.alpha, inv_n, pos_q + 1, keys);
          }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), a.d_v,
                    static_cast<int>(keys), 1.0f, ctx.scores.data(), static_cast<int>(keys),
                    ctx.values.data() + h * a.d_v, static_cast<int>(v_row), 0.0f, out,
                    static_cast<int>(v_row));
      }
      if (a.candidates) {
        // The candidate's own key: distance 0, same timestamp (bucket 0 of both biases).
        const float inv_n = 1.0f / static_cast<float>(history + 1);
        const float bias = a.pos_bias[h * a.position_buckets] + a.time_bias[h * a.time_buckets];
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t qi = q0 + r;
          const float z = a.alpha * Dot(a.q + qi * a.q_stride + h * a.d_qk,
                                        a.k_self + qi * a.self_stride + h * a.d_qk, a.d_qk) +
                          bias;
          const float w = Silu(z) * inv_n;
          const float* v = a.v_self + qi * a.self_stride + h * a.d_v;
          float* o = out + r * v_row;
          for (int64_t d = 0; d < a.d_v; ++d) o[d] += w * v[d];
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace helm::kernels
