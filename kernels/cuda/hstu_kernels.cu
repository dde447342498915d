// HELM's CUDA kernels: paged HSTU attention, embedding gather, KV append, block relocation and
// the small fused row ops of the HSTU layer. Launchers: launchers.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "launchers.h"

namespace helm::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxAccPerThread = 16;  // output values a thread of the attention kernel keeps
constexpr int kMaxQueryTile = 8;      // queries per attention block
constexpr int kMaxKeyChunk = 32;      // keys staged in shared memory at a time
constexpr int kSharedFloats = 12288;  // 48 KiB of shared memory

__device__ __forceinline__ float LoadElem(const void* base, int32_t dtype, int64_t i) {
  if (dtype == kFp16) return __half2float(static_cast<const __half*>(base)[i]);
  if (dtype == kBf16) return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
  return static_cast<const float*>(base)[i];
}

__device__ __forceinline__ void StoreElem(void* base, int32_t dtype, int64_t i, float v) {
  if (dtype == kFp16) {
    static_cast<__half*>(base)[i] = __float2half_rn(v);
  } else if (dtype == kBf16) {
    static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(v);
  } else {
    static_cast<float*>(base)[i] = v;
  }
}

__device__ __forceinline__ int Log2Bucket(int64_t distance, int32_t num_buckets) {
  if (distance <= 0) return 0;
  const int bucket = 64 - __clzll(static_cast<long long>(distance));
  return bucket < num_buckets ? bucket : num_buckets - 1;
}

__device__ __forceinline__ float Silu(float z) { return z / (1.0f + expf(-z)); }

// Shape of one attention launch: query tile and key chunk sized to the head widths.
struct AttentionTiling {
  int query_tile;
  int key_chunk;
};

AttentionTiling ChooseTiling(int d_qk, int d_v) {
  AttentionTiling t{};
  t.query_tile = kMaxQueryTile;
  while (t.query_tile > 1 && t.query_tile * d_v > kThreads * kMaxAccPerThread) t.query_tile /= 2;
  if (t.query_tile * d_v > kThreads * kMaxAccPerThread) {
    t.key_chunk = 0;
    return t;
  }
  const int fixed = t.query_tile * (d_qk + 1) + t.query_tile;
  const int per_key = (d_qk + 1) + d_v + t.query_tile;
  const int chunk = (kSharedFloats - fixed) / per_key;
  t.key_chunk = chunk < kMaxKeyChunk ? chunk : kMaxKeyChunk;
  return t;
}

// grid (ceil(num_queries / QT), num_heads, splits), kThreads threads. Without a softmax the
// output is a plain sum over keys, so the keys are split across blockIdx.z and the partial sums
// added atomically (splits > 1; out zeroed first) to fill the GPU when queries are few.
// Shared memory (floats):
// qs [QT][d_qk + 1] | ks [KC][d_qk + 1] | vs [KC][d_v] | sc [QT][KC] | self [QT].
__global__ void __launch_bounds__(kThreads)
    AttentionKernel(AttentionParams p, int query_tile, int key_chunk, int splits) {
  extern __shared__ float smem[];
  const int QT = query_tile;
  const int KC = key_chunk;
  const int dqk = p.d_qk;
  const int dv = p.d_v;
  const int H = p.num_heads;
  const int h = blockIdx.y;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * QT;
  const int rows = static_cast<int>(min(static_cast<int64_t>(QT), p.num_queries - q0));
  float* qs = smem;
  float* ks = qs + QT * (dqk + 1);
  float* vs = ks + KC * (dqk + 1);
  float* sc = vs + KC * dv;
  float* self_sc = sc + QT * KC;

  const int64_t history = p.cached_tokens + p.suffix_tokens;
  const int64_t last_ts = history > 0 ? p.timestamps[history - 1] : 0;
  const int64_t tpb = p.tokens_per_block;
  const int64_t layer_elems = tpb * H * static_cast<int64_t>(dqk + dv);

  for (int e = threadIdx.x; e < QT * dqk; e += kThreads) {
    const int r = e / dqk;
    const int c = e - r * dqk;
    qs[r * (dqk + 1) + c] = r < rows ? p.q[(q0 + r) * p.q_stride + h * dqk + c] : 0.0f;
  }
  const int64_t key_end = p.candidates ? history : min(history, p.cached_tokens + q0 + rows);

  float acc[kMaxAccPerThread];
#pragma unroll
  for (int i = 0; i < kMaxAccPerThread; ++i) acc[i] = 0.0f;

  const int64_t key_begin = key_end * blockIdx.z / splits;
  const int64_t key_stop = key_end * (blockIdx.z + 1) / splits;
  for (int64_t k0 = key_begin; k0 < key_stop; k0 += KC) {
    const int kc = static_cast<int>(min(static_cast<int64_t>(KC), key_stop - k0));
    __syncthreads();  // the previous chunk's readers are done
    for (int e = threadIdx.x; e < kc * dqk; e += kThreads) {
      const int j = e / dqk;
      const int c = e - j * dqk;
      const int64_t t = k0 + j;
      float v;
      if (t < p.cached_tokens) {
        const char* block = static_cast<const char*>(p.blocks[t / tpb]);
        v = LoadElem(block, p.kv_dtype, p.layer * layer_elems + (t % tpb) * H * dqk + h * dqk + c);
      } else {
        v = p.k_suffix[(t - p.cached_tokens) * H * dqk + h * dqk + c];
      }
      ks[j * (dqk + 1) + c] = v;
    }
    for (int e = threadIdx.x; e < kc * dv; e += kThreads) {
      const int j = e / dv;
      const int c = e - j * dv;
      const int64_t t = k0 + j;
      float v;
      if (t < p.cached_tokens) {
        const char* block = static_cast<const char*>(p.blocks[t / tpb]);
        v = LoadElem(block, p.kv_dtype,
                     p.layer * layer_elems + tpb * H * dqk + (t % tpb) * H * dv + h * dv + c);
      } else {
        v = p.v_suffix[(t - p.cached_tokens) * H * dv + h * dv + c];
      }
      vs[j * dv + c] = v;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < QT * kc; e += kThreads) {
      const int r = e / kc;
      const int j = e - r * kc;
      const int64_t t = k0 + j;
      float s = 0.0f;
      if (r < rows) {
        const int64_t pos_q = p.candidates ? history : p.cached_tokens + q0 + r;
        const int64_t visible = p.candidates ? history : pos_q + 1;
        if (t < visible) {
          const int64_t ts_q = p.candidates ? last_ts : p.timestamps[pos_q];
          float dot = 0.0f;
          for (int c = 0; c < dqk; ++c) dot += qs[r * (dqk + 1) + c] * ks[j * (dqk + 1) + c];
          const float z =
              p.alpha * dot +
              p.pos_bias[h * p.position_buckets + Log2Bucket(pos_q - t, p.position_buckets)] +
              p.time_bias[h * p.time_buckets + Log2Bucket(ts_q - p.timestamps[t], p.time_buckets)];
          const float inv_n = 1.0f / static_cast<float>(visible + (p.candidates ? 1 : 0));
          s = Silu(z) * inv_n;
        }
      }
      sc[r * KC + j] = s;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kMaxAccPerThread; ++i) {
      const int e = threadIdx.x + i * kThreads;
      if (e < QT * dv) {
        const int r = e / dv;
        const int c = e - r * dv;
        float a = acc[i];
        for (int j = 0; j < kc; ++j) a += sc[r * KC + j] * vs[j * dv + c];
        acc[i] = a;
      }
    }
  }
  if (p.candidates && blockIdx.z == 0) {
    __syncthreads();
    for (int r = threadIdx.x; r < QT; r += kThreads) {
      float s = 0.0f;
      if (r < rows) {
        const float* ksf = p.k_self + (q0 + r) * p.self_stride + h * dqk;
        float dot = 0.0f;
        for (int c = 0; c < dqk; ++c) dot += qs[r * (dqk + 1) + c] * ksf[c];
        const float z =
            p.alpha * dot + p.pos_bias[h * p.position_buckets] + p.time_bias[h * p.time_buckets];
        s = Silu(z) / static_cast<float>(history + 1);
      }
      self_sc[r] = s;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kMaxAccPerThread; ++i) {
      const int e = threadIdx.x + i * kThreads;
      if (e < QT * dv) {
        const int r = e / dv;
        const int c = e - r * dv;
        if (r < rows) acc[i] += self_sc[r] * p.v_self[(q0 + r) * p.self_stride + h * dv + c];
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kMaxAccPerThread; ++i) {
    const int e = threadIdx.x + i * kThreads;
    if (e < QT * dv) {
      const int r = e / dv;
      const int c = e - r * dv;
      if (r < rows) {
        float* o = p.out + ((q0 + r) * H + h) * dv + c;
        if (splits > 1) {
          atomicAdd(o, acc[i]);
        } else {
          *o = acc[i];
        }
      }
    }
  }
}

// One block per row; blockDim.x threads over the row's values.
__global__ void GatherKernel(const char* arena, const char* staging, const int64_t* locations,
                             int32_t dim, int32_t dtype, float* out) {
  const int64_t r = blockIdx.x;
  const int64_t loc = locations[r];
  const int64_t row_bytes = static_cast<int64_t>(dim) * (dtype == kFp32 ? 4 : 2);
  const void* row = loc >= 0 ? static_cast<const void*>(arena + loc)
                             : static_cast<const void*>(staging + (-(loc + 1)) * row_bytes);
  for (int j = threadIdx.x; j < dim; j += blockDim.x) out[r * dim + j] = LoadElem(row, dtype, j);
}

// grid (n tokens, num_layers); threads over one token's K then V values of one layer.
__global__ void AppendKvKernel(const float* src, int64_t src_tokens, int64_t src_first,
                               void* const* blocks, int64_t dst_first_token, int32_t num_heads,
                               int32_t d_qk, int32_t d_v, int32_t tpb, int32_t kv_dtype) {
  const int64_t i = blockIdx.x;
  const int l = blockIdx.y;
  const int64_t H = num_heads;
  const int64_t t = dst_first_token + i;
  const int64_t s = src_first + i;
  void* block = blocks[t / tpb];
  const int64_t slot = t % tpb;
  const int64_t layer_elems = static_cast<int64_t>(tpb) * H * (d_qk + d_v);
  const float* src_k = src + static_cast<int64_t>(l) * src_tokens * H * (d_qk + d_v);
  const float* src_v = src_k + src_tokens * H * d_qk;
  for (int64_t e = threadIdx.x; e < H * d_qk; e += blockDim.x) {
    StoreElem(block, kv_dtype, l * layer_elems + slot * H * d_qk + e, src_k[s * H * d_qk + e]);
  }
  for (int64_t e = threadIdx.x; e < H * d_v; e += blockDim.x) {
    StoreElem(block, kv_dtype, l * layer_elems + tpb * H * d_qk + slot * H * d_v + e,
              src_v[s * H * d_v + e]);
  }
}

// One CUDA block per KV block: 16-byte copies when everything is 16-byte aligned, else bytes.
__global__ void RelocateKernel(char* arena, const int64_t* src_offsets, const int64_t* dst_offsets,
                               int64_t block_bytes) {
  const char* src = arena + src_offsets[blockIdx.x];
  char* dst = arena + dst_offsets[blockIdx.x];
  const bool aligned = ((reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst) |
                         static_cast<uintptr_t>(block_bytes)) &
                        15) == 0;
  if (aligned) {
    const int4* s4 = reinterpret_cast<const int4*>(src);
    int4* d4 = reinterpret_cast<int4*>(dst);
    for (int64_t i = threadIdx.x; i < block_bytes / 16; i += blockDim.x) d4[i] = s4[i];
  } else {
    for (int64_t i = threadIdx.x; i < block_bytes; i += blockDim.x) dst[i] = src[i];
  }
}

__global__ void BiasRowsKernel(float* c, int64_t rows, int64_t width, int64_t ldc,
                               const float* bias, int32_t accumulate) {
  const int64_t total = rows * width;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / width;
    const int64_t j = e - r * width;
    float* v = c + r * ldc + j;
    *v = accumulate ? *v + bias[j] : bias[j];
  }
}

__global__ void BiasSiluKernel(float* x, int64_t rows, int64_t width, const float* bias) {
  const int64_t total = rows * width;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float b = bias != nullptr ? bias[e % width] : 0.0f;
    x[e] = Silu(x[e] + b);
  }
}

__device__ float BlockSum(float v, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += scratch[w];
  return total;
}

// One block (kThreads) per row; two passes for the mean and the variance.
__global__ void LayerNormKernel(const float* x, const float* u, int64_t u_stride, float* y,
                                int64_t width, const float* gamma, const float* beta, float eps) {
  __shared__ float scratch[kThreads / 32];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * width;
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x) sum += xr[j];
  const float mean = BlockSum(sum, scratch) / static_cast<float>(width);
  float sq = 0.0f;
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x) sq += (xr[j] - mean) * (xr[j] - mean);
  const float inv = rsqrtf(BlockSum(sq, scratch) / static_cast<float>(width) + eps);
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x) {
    float v = (xr[j] - mean) * inv * gamma[j] + beta[j];
    if (u != nullptr) v *= u[r * u_stride + j];
    y[r * width + j] = v;
  }
}

__global__ void AddRowsKernel(float* x, int64_t width, const float* table, const int32_t* ids) {
  const int64_t r = blockIdx.x;
  const float* t = table + static_cast<int64_t>(ids[r]) * width;
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x) x[r * width + j] += t[j];
}

__global__ void CopyColumnsKernel(const float* src, int64_t src_stride, int64_t col, int64_t width,
                                  float* dst) {
  const int64_t r = blockIdx.x;
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x) {
    dst[r * width + j] = src[r * src_stride + col + j];
  }
}

__global__ void RowDotKernel(const float* a, const float* b, int64_t width, float* out) {
  __shared__ float scratch[kThreads / 32];
  const int64_t r = blockIdx.x;
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x)
    sum += a[r * width + j] * b[r * width + j];
  const float total = BlockSum(sum, scratch);
  if (threadIdx.x == 0) out[r] = total;
}

unsigned GridFor(int64_t total) {
  const int64_t blocks = (total + 255) / 256;
  return static_cast<unsigned>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

// Rows go on grid.x (up to 2^31 - 1).
bool RowsFit(int64_t rows) { return rows <= 0x7fffffff; }

// A launch's own error is read back with cudaGetLastError, which returns the last error of any
// earlier runtime call on this thread too (a failed cudaMalloc elsewhere, already reported there):
// clear it before launching, so that a good launch is never reported as failed. Sticky errors
// (a faulted context) are not cleared and still surface.
void ClearStaleError() { static_cast<void>(cudaGetLastError()); }

}  // namespace

cudaError_t LaunchAttention(const AttentionParams& p, cudaStream_t stream) {
  if (p.num_queries == 0) return cudaSuccess;
  const AttentionTiling t = ChooseTiling(p.d_qk, p.d_v);
  if (t.key_chunk < 1) return cudaErrorInvalidValue;
  const int64_t tiles = (p.num_queries + t.query_tile - 1) / t.query_tile;
  if (!RowsFit(tiles) || p.num_heads > 65535) return cudaErrorInvalidValue;
  const size_t smem =
      sizeof(float) * (t.query_tile * (p.d_qk + 1) + t.key_chunk * (p.d_qk + 1) +
                       t.key_chunk * p.d_v + t.query_tile * t.key_chunk + t.query_tile);
  ClearStaleError();
  // Split the keys until the grid holds ~4 blocks per SM, keeping >= 256 keys per split.
  int device = 0;
  int sms = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (e != cudaSuccess) return e;
  const int64_t history = p.cached_tokens + p.suffix_tokens;
  const int64_t blocks = tiles * p.num_heads;
  int64_t splits = (4 * int64_t{sms} + blocks - 1) / blocks;
  splits = std::min<int64_t>(splits, (history + 255) / 256);
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535));
  if (splits > 1) {
    e = cudaMemsetAsync(p.out, 0, sizeof(float) * p.num_queries * p.num_heads * p.d_v, stream);
    if (e != cudaSuccess) return e;
  }
  AttentionKernel<<<dim3(static_cast<unsigned>(tiles), p.num_heads, static_cast<unsigned>(splits)),
                    kThreads, smem, stream>>>(p, t.query_tile, t.key_chunk,
                                              static_cast<int>(splits));
  return cudaGetLastError();
}

cudaError_t LaunchGather(const void* arena, const void* staging, const int64_t* locations,
                         int64_t n, int32_t dim, int32_t dtype, float* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!RowsFit(n)) return cudaErrorInvalidValue;
  ClearStaleError();
  GatherKernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(static_cast<const char*>(arena),
                                                                  static_cast<const char*>(staging),
                                                                  locations, dim, dtype, out);
  return cudaGetLastError();
}

cudaError_t LaunchAppendKv(const float* src, int64_t src_tokens, int64_t src_first, int64_t n,
                           void* const* blocks, int64_t dst_first_token, int32_t num_layers,
                           int32_t num_heads, int32_t d_qk, int32_t d_v, int32_t tokens_per_block,
                           int32_t kv_dtype, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!RowsFit(n) || num_layers > 65535) return cudaErrorInvalidValue;
  ClearStaleError();
  AppendKvKernel<<<dim3(static_cast<unsigned>(n), num_layers), kThreads, 0, stream>>>(
      src, src_tokens, src_first, blocks, dst_first_token, num_heads, d_qk, d_v, tokens_per_block,
      kv_dtype);
  return cudaGetLastError();
}

cudaError_t LaunchRelocate(char* arena, const int64_t* src_offsets, const int64_t* dst_offsets,
                           int64_t n, int64_t block_bytes, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!RowsFit(n)) return cudaErrorInvalidValue;
  ClearStaleError();
  RelocateKernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(arena, src_offsets, dst_offsets,
                                                               block_bytes);
  return cudaGetLastError();
}

cudaError_t LaunchBiasRows(float* c, int64_t rows, int64_t width, int64_t ldc, const float* bias,
                           int32_t accumulate, cudaStream_t stream) {
  if (rows * width == 0) return cudaSuccess;
  ClearStaleError();
  BiasRowsKernel<<<GridFor(rows * width), 256, 0, stream>>>(c, rows, width, ldc, bias, accumulate);
  return cudaGetLastError();
}

cudaError_t LaunchBiasSilu(float* x, int64_t rows, int64_t width, const float* bias,
                           cudaStream_t stream) {
  if (rows * width == 0) return cudaSuccess;
  ClearStaleError();
  BiasSiluKernel<<<GridFor(rows * width), 256, 0, stream>>>(x, rows, width, bias);
  return cudaGetLastError();
}

cudaError_t LaunchLayerNorm(const float* x, const float* u, int64_t u_stride, float* y,
                            int64_t rows, int64_t width, const float* gamma, const float* beta,
                            float eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (!RowsFit(rows)) return cudaErrorInvalidValue;
  ClearStaleError();
  LayerNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, u, u_stride, y, width,
                                                                        gamma, beta, eps);
  return cudaGetLastError();
}

cudaError_t LaunchAddRows(float* x, int64_t rows, int64_t width, const float* table,
                          const int32_t* ids, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (!RowsFit(rows)) return cudaErrorInvalidValue;
  ClearStaleError();
  AddRowsKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, width, table, ids);
  return cudaGetLastError();
}

cudaError_t LaunchCopyColumns(const float* src, int64_t src_stride, int64_t col, int64_t rows,
                              int64_t width, float* dst, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (!RowsFit(rows)) return cudaErrorInvalidValue;
  ClearStaleError();
  CopyColumnsKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(src, src_stride, col,
                                                                          width, dst);
  return cudaGetLastError();
}

cudaError_t LaunchRowDot(const float* a, const float* b, int64_t rows, int64_t width, float* out,
                         cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (!RowsFit(rows)) return cudaErrorInvalidValue;
  ClearStaleError();
  RowDotKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(a, b, width, out);
  return cudaGetLastError();
}

}  // namespace helm::kernels::cuda
