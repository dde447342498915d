// Host launchers of HELM's CUDA kernels (hstu_kernels.cu). Plain C++17 parameter structs, so the
// .cu file needs no Abseil; cuda_kernels.cc wraps them behind model::Kernels. Every launcher
// enqueues on `stream` and returns the launch's cudaError_t (cudaSuccess, or why it failed).
// Pointers are device memory; each documents its shape and layout.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace helm::kernels::cuda {

// Element types of K/V and embedding rows: helm::Dtype's values (helm/common/dtype.h), as int32_t
// codes so that this header and the .cu stay Abseil-free; cuda_kernels.cc asserts they agree.
enum : int32_t { kFp32 = 0, kFp16 = 1, kBf16 = 2 };

struct AttentionParams {
  int32_t num_heads, d_qk, d_v;
  float alpha;
  int64_t num_queries;
  const float* q;  // [num_queries, num_heads, d_qk], row stride q_stride
  int64_t q_stride;
  int32_t candidates;   // 0: history queries (causal), 1: candidates (history + own key)
  const float* k_self;  // [num_queries, num_heads, d_qk], row stride self_stride
  const float* v_self;  // [num_queries, num_heads, d_v], row stride self_stride
  int64_t self_stride;
  const void* const* blocks;  // [ceil(cached_tokens / tpb)] device pointers to KV blocks laid out
                              // [num_layers][2][tpb][num_heads][d] of kv_dtype
  int64_t cached_tokens;
  int32_t layer, num_layers, tokens_per_block, kv_dtype;
  const float* k_suffix;  // [suffix_tokens, num_heads, d_qk]
  const float* v_suffix;  // [suffix_tokens, num_heads, d_v]
  int64_t suffix_tokens;
  const int64_t* timestamps;  // [cached_tokens + suffix_tokens]
  const float* pos_bias;      // [num_heads, position_buckets]
  const float* time_bias;     // [num_heads, time_buckets]
  int32_t position_buckets, time_buckets;
  float* out;  // [num_queries, num_heads, d_v]
};

// Paged HSTU attention (semantics: model::AttentionArgs). cudaErrorInvalidValue when the head
// widths do not fit the kernel's shared memory.
cudaError_t LaunchAttention(const AttentionParams& p, cudaStream_t stream);

// out[r, :] = row at locations[r] (>= 0: byte offset into arena; < 0: staging row -(loc+1)).
// arena: bytes; staging: [*, dim] of dtype; locations: [n]; out: [n, dim] fp32.
cudaError_t LaunchGather(const void* arena, const void* staging, const int64_t* locations,
                         int64_t n, int32_t dim, int32_t dtype, float* out, cudaStream_t stream);

// KV append (semantics: model::AppendArgs). src: [num_layers][2][src_tokens][num_heads][d] fp32;
// blocks: device array of block pointers indexed by block number.
cudaError_t LaunchAppendKv(const float* src, int64_t src_tokens, int64_t src_first, int64_t n,
                           void* const* blocks, int64_t dst_first_token, int32_t num_layers,
                           int32_t num_heads, int32_t d_qk, int32_t d_v, int32_t tokens_per_block,
                           int32_t kv_dtype, cudaStream_t stream);

// Copies n blocks of block_bytes: arena + src_offsets[i] -> arena + dst_offsets[i].
// src_offsets, dst_offsets: [n] device arrays of byte offsets.
cudaError_t LaunchRelocate(char* arena, const int64_t* src_offsets, const int64_t* dst_offsets,
                           int64_t n, int64_t block_bytes, cudaStream_t stream);

// c[r, :] = bias (accumulate == 0) or c[r, :] += bias. c: [rows, width] stride ldc; bias: [width].
cudaError_t LaunchBiasRows(float* c, int64_t rows, int64_t width, int64_t ldc, const float* bias,
                           int32_t accumulate, cudaStream_t stream);
// x = SiLU(x + bias). x: [rows, width]; bias: [width] or nullptr.
cudaError_t LaunchBiasSilu(float* x, int64_t rows, int64_t width, const float* bias,
                           cudaStream_t stream);
// y = LayerNorm(x) * gamma + beta; with u != nullptr, y *= u (u: row stride u_stride).
// x, y: [rows, width]; gamma, beta: [width].
cudaError_t LaunchLayerNorm(const float* x, const float* u, int64_t u_stride, float* y,
                            int64_t rows, int64_t width, const float* gamma, const float* beta,
                            float eps, cudaStream_t stream);
// x[r, :] += table[ids[r], :]. x: [rows, width]; table: [*, width]; ids: [rows].
cudaError_t LaunchAddRows(float* x, int64_t rows, int64_t width, const float* table,
                          const int32_t* ids, cudaStream_t stream);
// dst[r, :] = src[r, col : col + width]. src: row stride src_stride; dst: [rows, width].
cudaError_t LaunchCopyColumns(const float* src, int64_t src_stride, int64_t col, int64_t rows,
                              int64_t width, float* dst, cudaStream_t stream);
// out[r] = <a[r], b[r]>. a, b: [rows, width]; out: [rows].
cudaError_t LaunchRowDot(const float* a, const float* b, int64_t rows, int64_t width, float* out,
                         cudaStream_t stream);

}  // namespace helm::kernels::cuda
