// The kernel interface of the HSTU runtime: every piece of math the forward needs, behind one
// abstract class with three implementations:
//   "reference"  plain C++ loops with double accumulation (always built; the test oracle),
//   "cpu"        the fast CPU path (OpenBLAS sgemm for dense layers and attention tiles, fused
//                vectorised LayerNorm / SiLU / gating / relative bias),
//   "cuda"       cuBLAS for dense layers and our own CUDA kernels (paged HSTU attention,
//                embedding gather, KV append, block relocation); built where nvcc is found.
// CreateKernels() is the one factory that picks a path.
//
// Memory spaces: every pointer argument lives in the backend's memory ("backend memory": host
// memory for reference/cpu, device memory for cuda) unless its comment says "host". Each
// pointer parameter documents its shape and layout, e.g. `// [n, width] row-major`.
//
// Thread-safety: a Kernels object is immutable after creation and may be shared by all threads.
// A KernelContext (CUDA: a stream and a cuBLAS handle) belongs to one thread at a time; calls
// with the same context run in order. Kernel calls may be asynchronous on the context (CUDA):
// Synchronize() waits for them. Every call returns a Status (InvalidArgument for bad arguments,
// Internal for a device failure); none throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "helm/model/types.h"

namespace helm::model {

// Per-thread execution state of a backend (CUDA stream + cuBLAS handle; empty on the CPU).
class KernelContext {
 public:
  virtual ~KernelContext() = default;
  // The CUDA stream (cudaStream_t) of this context as an opaque handle; nullptr on the CPU.
  virtual void* stream() const { return nullptr; }
};

// Paged HSTU attention for one layer:
//   A[q, j] = SiLU(alpha * <Q[q,h], K[j,h]> + pos_bias[h][PositionBucket] +
//   time_bias[h][TimeBucket])
//             / N_q, masked to the keys query q may see,     O[q, h] = sum_j A[q, j] * V[j, h].
// The history's keys are tokens [0, cached_tokens) in paged blocks followed by tokens
// [cached_tokens, cached_tokens + suffix_tokens) in a contiguous suffix buffer.
//  - History queries (candidates == false): query i is history token cached_tokens + i; it sees
//    history keys 0 .. cached_tokens + i (causal), N = cached_tokens + i + 1.
//  - Candidate queries (candidates == true): every query sits at position L = cached_tokens +
//    suffix_tokens with the timestamp of the last history event (0 when L == 0); it sees all L
//    history keys and its own key (k_self/v_self), not other candidates. N = L + 1.
// N (the number of keys a query sees) depends only on the query's position, so a cached prefix and
// a full recompute compute the same values.
struct AttentionArgs {
  int32_t num_heads = 0;
  int32_t d_qk = 0;
  int32_t d_v = 0;
  float alpha = 1.0f;  // scale of Q.K (1/sqrt(d_qk))
  int64_t num_queries = 0;
  const float* q = nullptr;  // [num_queries, num_heads, d_qk], row stride q_stride floats
  int64_t q_stride = 0;
  bool candidates = false;
  const float* k_self = nullptr;  // candidates: [num_queries, num_heads, d_qk], stride self_stride
  const float* v_self = nullptr;  // candidates: [num_queries, num_heads, d_v], stride self_stride
  int64_t self_stride = 0;
  // Cached prefix: block b holds tokens [b*tpb, (b+1)*tpb) in the KV block layout (types.h).
  const void* const* blocks = nullptr;  // [ceil(cached_tokens / tpb)] block pointers
  int64_t cached_tokens = 0;
  int32_t layer = 0;
  int32_t num_layers = 0;
  int32_t tokens_per_block = 1;
  Dtype kv_dtype = Dtype::kFp32;
  // Suffix keys: tokens [cached_tokens, cached_tokens + suffix_tokens).
  const float* k_suffix = nullptr;  // [suffix_tokens, num_heads, d_qk] contiguous
  const float* v_suffix = nullptr;  // [suffix_tokens, num_heads, d_v] contiguous
  int64_t suffix_tokens = 0;
  const int64_t* timestamps = nullptr;  // [cached_tokens + suffix_tokens] (seconds)
  // The caller's promise that the history K/V (blocks and their contents, cached_tokens, layer,
  // kv_dtype, suffix) and pos_bias are those of the previous Attention call on this context:
  // a backend may reuse what it prepared from them then (the CPU path gathers the paged K/V
  // into contiguous rows once per layer instead of once per call).
  bool same_kv_as_last_call = false;
  const float* pos_bias = nullptr;   // [num_heads, position_buckets]
  const float* time_bias = nullptr;  // [num_heads, time_buckets]
  int32_t position_buckets = 1;
  int32_t time_buckets = 1;
  float* out = nullptr;  // [num_queries, num_heads, d_v] contiguous
};

// Embedding gather: row r of `out` is the embedding at `locations[r]`: loc >= 0 is a byte offset
// into the pool arena (a multiple of the element size), loc < 0 is row -(loc + 1) of the staging
// buffer. Rows hold `dim` values of `dtype`; out is fp32.
struct GatherArgs {
  const void* arena_base = nullptr;    // pool arena (bytes)
  const void* staging_base = nullptr;  // [staging_rows, dim] of dtype
  const int64_t* locations = nullptr;  // [n]
  int64_t n = 0;
  int32_t dim = 0;
  Dtype dtype = Dtype::kFp32;
  float* out = nullptr;  // [n, dim] row-major
};

// KV append: writes tokens [src_first, src_first + n) of a suffix K/V scratch into the paged
// blocks at token positions [dst_first_token, dst_first_token + n) (token t goes to block
// t / tpb, slot t % tpb), converting fp32 to kv_dtype.
struct AppendArgs {
  const float* src = nullptr;  // [num_layers][2: K then V][src_tokens][num_heads][d] fp32
  int64_t src_tokens = 0;
  int64_t src_first = 0;
  int64_t n = 0;
  void* const* blocks = nullptr;  // [>= ceil((dst_first_token + n) / tpb)] block pointers
  int64_t dst_first_token = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t d_qk = 0;
  int32_t d_v = 0;
  int32_t tokens_per_block = 1;
  Dtype kv_dtype = Dtype::kFp32;
};

class Kernels {
 public:
  virtual ~Kernels() = default;

  // "reference", "cpu" or "cuda".
  virtual absl::string_view name() const = 0;
  // True when backend memory is device memory (CUDA).
  virtual bool on_device() const { return false; }

  // A fresh per-thread context. Internal when a device resource cannot be created.
  virtual absl::StatusOr<std::unique_ptr<KernelContext>> CreateContext() const = 0;

  // Backend memory. Allocate returns 256-byte aligned memory or ResourceExhausted; Free(nullptr)
  // is a no-op. Copies between host and backend memory are ordered on `ctx`; CopyToHost
  // returns once the bytes are on the host.
  virtual absl::StatusOr<void*> Allocate(size_t bytes) const = 0;
  virtual void Free(void* ptr) const = 0;
  virtual absl::Status CopyToBackend(KernelContext& ctx, void* dst, const void* host_src,
                                     size_t bytes) const = 0;
  virtual absl::Status CopyToHost(KernelContext& ctx, void* host_dst, const void* src,
                                  size_t bytes) const = 0;
  virtual absl::Status CopyWithin(KernelContext& ctx, void* dst, const void* src,
                                  size_t bytes) const = 0;
  // Waits for every call issued on `ctx`; Internal on a device error.
  virtual absl::Status Synchronize(KernelContext& ctx) const = 0;

  // c = a . b (+ bias) (+ c when accumulate).
  // a: [m, k] row stride lda; b: [k, n] row-major; bias: [n] or nullptr; c: [m, n] row stride ldc.
  virtual absl::Status Gemm(KernelContext& ctx, int64_t m, int64_t n, int64_t k, const float* a,
                            int64_t lda, const float* b, const float* bias, float* c, int64_t ldc,
                            bool accumulate) const = 0;
  // In place: x = SiLU(x + bias). x: [rows, width] row-major; bias: [width].
  virtual absl::Status BiasSilu(KernelContext& ctx, float* x, int64_t rows, int64_t width,
                                const float* bias) const = 0;
  // y = LayerNorm(x) * gamma + beta over the last dim (eps 1e-5).
  // x, y: [rows, width] row-major (may alias); gamma, beta: [width].
  virtual absl::Status LayerNorm(KernelContext& ctx, const float* x, float* y, int64_t rows,
                                 int64_t width, const float* gamma, const float* beta) const = 0;
  // out = (LayerNorm(o) * gamma + beta) ⊙ u.  o, out: [rows, width]; u: [rows, width] with row
  // stride u_stride.
  virtual absl::Status LayerNormGate(KernelContext& ctx, const float* o, const float* u,
                                     int64_t u_stride, float* out, int64_t rows, int64_t width,
                                     const float* gamma, const float* beta) const = 0;
  // x[r] += table[ids[r]].  x: [rows, width]; table: [table_rows, width]; ids: [rows], each in
  // [0, table_rows) (checked by the caller).
  virtual absl::Status AddRows(KernelContext& ctx, float* x, int64_t rows, int64_t width,
                               const float* table, const int32_t* ids) const = 0;
  // Copies columns [col, col + width) of `rows` rows: dst[r] = src[r * src_stride + col ...].
  // dst: [rows, width] contiguous.
  virtual absl::Status CopyColumns(KernelContext& ctx, const float* src, int64_t src_stride,
                                   int64_t col, int64_t rows, int64_t width, float* dst) const = 0;
  // out[r] = <a[r], b[r]>.  a, b: [rows, width] row-major; out: [rows].
  virtual absl::Status RowDot(KernelContext& ctx, const float* a, const float* b, int64_t rows,
                              int64_t width, float* out) const = 0;

  virtual absl::Status Attention(KernelContext& ctx, const AttentionArgs& args) const = 0;
  virtual absl::Status GatherEmbeddings(KernelContext& ctx, const GatherArgs& args) const = 0;
  virtual absl::Status AppendKv(KernelContext& ctx, const AppendArgs& args) const = 0;
  // Copies n blocks of block_bytes within an arena: block at arena + src_offsets[i] to arena +
  // dst_offsets[i], as a pool resize does. REQUIRES: no destination overlaps any source or
  // another destination (the caller moves blocks into free space).
  // src_offsets, dst_offsets: [n] (host), byte offsets, each block inside the arena.
  virtual absl::Status RelocateBlocks(KernelContext& ctx, void* arena, const int64_t* src_offsets,
                                      const int64_t* dst_offsets, int64_t n,
                                      int64_t block_bytes) const = 0;
};

// The kernel path named `name`: "reference", "cpu", "cuda", or "auto" (cuda where built and a GPU
// is visible, else cpu). `cpu_threads` bounds the BLAS threads of one call on the CPU path (1:
// single-threaded; workers parallelise). InvalidArgument for an unknown name; Unavailable for
// "cuda" when the build has no CUDA or no GPU is visible.
absl::StatusOr<std::shared_ptr<const Kernels>> CreateKernels(absl::string_view name,
                                                             int32_t cpu_threads = 1);

// Whether this build includes the CUDA path and a GPU is visible (any CUDA error: false).
bool CudaAvailable();

}  // namespace helm::model
