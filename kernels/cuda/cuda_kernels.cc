#include "cuda/cuda_kernels.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "cuda/launchers.h"
#include "helm/common/cuda_memmove.h"
#include "helm/common/dtype.h"
#include "ref/ref_kernels.h"

namespace helm::kernels::cuda {
namespace {

// The launchers' element codes are helm::Dtype's values (launchers.h keeps the .cu Abseil-free).
static_assert(kFp32 == static_cast<int32_t>(Dtype::kFp32));
static_assert(kFp16 == static_cast<int32_t>(Dtype::kFp16));
static_assert(kBf16 == static_cast<int32_t>(Dtype::kBf16));

using model::KernelContext;

absl::Status FromCuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  if (e == cudaErrorInvalidValue) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", cudaGetErrorName(e), ": ", cudaGetErrorString(e)));
  }
  return absl::InternalError(
      absl::StrCat(what, ": ", cudaGetErrorName(e), ": ", cudaGetErrorString(e)));
}

absl::Status FromCublas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": cuBLAS status ", static_cast<int>(s)));
}

class CudaContext : public KernelContext {
 public:
  ~CudaContext() override {
    if (offsets_ != nullptr) cudaFree(offsets_);
    if (blas_ != nullptr) cublasDestroy(blas_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  void* stream() const override { return stream_; }

  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  // Device scratch for relocation offsets (2 * capacity int64).
  int64_t* offsets_ = nullptr;
  int64_t offsets_capacity_ = 0;
};

class CudaKernels : public model::Kernels {
 public:
  explicit CudaKernels(int ordinal) : ordinal_(ordinal) {}

  absl::string_view name() const override { return "cuda"; }
  bool on_device() const override { return true; }

  absl::StatusOr<std::unique_ptr<KernelContext>> CreateContext() const override {
    auto ctx = std::make_unique<CudaContext>();
    if (auto s = FromCuda(cudaSetDevice(ordinal_), "cudaSetDevice"); !s.ok()) return s;
    if (auto s = FromCuda(cudaStreamCreateWithFlags(&ctx->stream_, cudaStreamNonBlocking),
                          "cudaStreamCreate");
        !s.ok()) {
      return s;
    }
    if (auto s = FromCublas(cublasCreate(&ctx->blas_), "cublasCreate"); !s.ok()) return s;
    if (auto s = FromCublas(cublasSetStream(ctx->blas_, ctx->stream_), "cublasSetStream");
        !s.ok()) {
      return s;
    }
    // Plain fp32 math (the default: no TF32): results must stay within fp32 tolerance of the
    // reference.
    if (auto s =
            FromCublas(cublasSetMathMode(ctx->blas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
        !s.ok()) {
      return s;
    }
    return std::unique_ptr<KernelContext>(std::move(ctx));
  }

  absl::StatusOr<void*> Allocate(size_t bytes) const override {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes == 0 ? 256 : bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free allocation error
      return absl::ResourceExhaustedError(
          absl::StrCat("cudaMalloc(", bytes, "): ", cudaGetErrorString(e)));
    }
    return p;
  }
  void Free(void* ptr) const override {
    if (ptr != nullptr) cudaFree(ptr);
  }
  absl::Status CopyToBackend(KernelContext& ctx, void* dst, const void* src,
                             size_t bytes) const override {
    if (bytes == 0) return absl::OkStatus();
    return FromCuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, S(ctx)), "H2D copy");
  }
  absl::Status CopyToHost(KernelContext& ctx, void* dst, const void* src,
                          size_t bytes) const override {
    if (bytes == 0) return absl::OkStatus();
    if (auto s =
            FromCuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, S(ctx)), "D2H copy");
        !s.ok()) {
      return s;
    }
    return FromCuda(cudaStreamSynchronize(S(ctx)), "D2H copy");
  }
  absl::Status CopyWithin(KernelContext& ctx, void* dst, const void* src,
                          size_t bytes) const override {
    // Memmove semantics, as the reference: overlapping ranges are defined.
    return FromCuda(MemmoveDeviceAsync(dst, src, bytes, S(ctx)), "D2D copy");
  }
  absl::Status Synchronize(KernelContext& ctx) const override {
    return FromCuda(cudaStreamSynchronize(S(ctx)), "stream synchronize");
  }

  absl::Status Gemm(KernelContext& ctx, int64_t m, int64_t n, int64_t k, const float* a,
                    int64_t lda, const float* b, const float* bias, float* c, int64_t ldc,
                    bool accumulate) const override {
    if (m < 0 || n < 0 || k < 0 || lda < k || ldc < n) {
      return absl::InvalidArgumentError("gemm: bad shape or stride");
    }
    if (m == 0 || n == 0) return absl::OkStatus();
    float beta = accumulate ? 1.0f : 0.0f;
    if (bias != nullptr) {
      if (auto s =
              FromCuda(LaunchBiasRows(c, m, n, ldc, bias, accumulate ? 1 : 0, S(ctx)), "bias rows");
          !s.ok()) {
        return s;
      }
      beta = 1.0f;
    }
    if (k == 0) {
      // An empty product (cuBLAS would also reject its lda = 0): c is bias (+ c), done above,
      // c unchanged, or zeros.
      if (bias != nullptr || accumulate) return absl::OkStatus();
      return FromCuda(cudaMemset2DAsync(c, sizeof(float) * ldc, 0, sizeof(float) * n, m, S(ctx)),
                      "gemm (k = 0)");
    }
    const float one = 1.0f;
    // Row-major C = A.B is column-major C^T = B^T.A^T.
    return FromCublas(
        cublasSgemm(static_cast<CudaContext&>(ctx).blas_, CUBLAS_OP_N, CUBLAS_OP_N,
                    static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &one, b,
                    static_cast<int>(n), a, static_cast<int>(lda), &beta, c, static_cast<int>(ldc)),
        "cublasSgemm");
  }
  absl::Status BiasSilu(KernelContext& ctx, float* x, int64_t rows, int64_t width,
                        const float* bias) const override {
    return FromCuda(LaunchBiasSilu(x, rows, width, bias, S(ctx)), "bias silu");
  }
  absl::Status LayerNorm(KernelContext& ctx, const float* x, float* y, int64_t rows, int64_t width,
                         const float* gamma, const float* beta) const override {
    return FromCuda(
        LaunchLayerNorm(x, nullptr, 0, y, rows, width, gamma, beta, kLayerNormEps, S(ctx)),
        "layer norm");
  }
  absl::Status LayerNormGate(KernelContext& ctx, const float* o, const float* u, int64_t u_stride,
                             float* out, int64_t rows, int64_t width, const float* gamma,
                             const float* beta) const override {
    return FromCuda(
        LaunchLayerNorm(o, u, u_stride, out, rows, width, gamma, beta, kLayerNormEps, S(ctx)),
        "layer norm gate");
  }
  absl::Status AddRows(KernelContext& ctx, float* x, int64_t rows, int64_t width,
                       const float* table, const int32_t* ids) const override {
    return FromCuda(LaunchAddRows(x, rows, width, table, ids, S(ctx)), "add rows");
  }
  absl::Status CopyColumns(KernelContext& ctx, const float* src, int64_t src_stride, int64_t col,
                           int64_t rows, int64_t width, float* dst) const override {
    return FromCuda(LaunchCopyColumns(src, src_stride, col, rows, width, dst, S(ctx)),
                    "copy columns");
  }
  absl::Status RowDot(KernelContext& ctx, const float* a, const float* b, int64_t rows,
                      int64_t width, float* out) const override {
    return FromCuda(LaunchRowDot(a, b, rows, width, out, S(ctx)), "row dot");
  }

  absl::Status Attention(KernelContext& ctx, const model::AttentionArgs& a) const override {
    if (auto s = CheckAttentionArgs(a); !s.ok()) return s;
    AttentionParams p{};
    p.num_heads = a.num_heads;
    p.d_qk = a.d_qk;
    p.d_v = a.d_v;
    p.alpha = a.alpha;
    p.num_queries = a.num_queries;
    p.q = a.q;
    p.q_stride = a.q_stride;
    p.candidates = a.candidates ? 1 : 0;
    p.k_self = a.k_self;
    p.v_self = a.v_self;
    p.self_stride = a.self_stride;
    p.blocks = a.blocks;
    p.cached_tokens = a.cached_tokens;
    p.layer = a.layer;
    p.num_layers = a.num_layers;
    p.tokens_per_block = a.tokens_per_block;
    p.kv_dtype = static_cast<int32_t>(a.kv_dtype);
    p.k_suffix = a.k_suffix;
    p.v_suffix = a.v_suffix;
    p.suffix_tokens = a.suffix_tokens;
    p.timestamps = a.timestamps;
    p.pos_bias = a.pos_bias;
    p.time_bias = a.time_bias;
    p.position_buckets = a.position_buckets;
    p.time_buckets = a.time_buckets;
    p.out = a.out;
    return FromCuda(LaunchAttention(p, S(ctx)), "paged attention");
  }
  absl::Status GatherEmbeddings(KernelContext& ctx, const model::GatherArgs& a) const override {
    if (auto s = CheckGatherArgs(a); !s.ok()) return s;
    return FromCuda(LaunchGather(a.arena_base, a.staging_base, a.locations, a.n, a.dim,
                                 static_cast<int32_t>(a.dtype), a.out, S(ctx)),
                    "embedding gather");
  }
  absl::Status AppendKv(KernelContext& ctx, const model::AppendArgs& a) const override {
    if (auto s = CheckAppendArgs(a); !s.ok()) return s;
    return FromCuda(LaunchAppendKv(a.src, a.src_tokens, a.src_first, a.n, a.blocks,
                                   a.dst_first_token, a.num_layers, a.num_heads, a.d_qk, a.d_v,
                                   a.tokens_per_block, static_cast<int32_t>(a.kv_dtype), S(ctx)),
                    "kv append");
  }
  absl::Status RelocateBlocks(KernelContext& base_ctx, void* arena, const int64_t* src_offsets,
                              const int64_t* dst_offsets, int64_t n,
                              int64_t block_bytes) const override {
    if (n < 0 || block_bytes <= 0) return absl::InvalidArgumentError("relocate: bad n or size");
    if (n == 0) return absl::OkStatus();
    for (int64_t i = 0; i < n; ++i) {
      if (src_offsets[i] < 0 || dst_offsets[i] < 0) {
        return absl::InvalidArgumentError(absl::StrCat("relocate: negative offset at block ", i));
      }
    }
    auto& ctx = static_cast<CudaContext&>(base_ctx);
    if (ctx.offsets_capacity_ < n) {
      // The stream may still read the old offsets: wait before freeing them.
      if (auto s = Synchronize(ctx); !s.ok()) return s;
      if (ctx.offsets_ != nullptr) cudaFree(ctx.offsets_);
      ctx.offsets_ = nullptr;
      ctx.offsets_capacity_ = 0;
      if (auto s = FromCuda(cudaMalloc(&ctx.offsets_, sizeof(int64_t) * 2 * n), "cudaMalloc");
          !s.ok()) {
        return s;
      }
      ctx.offsets_capacity_ = n;
    }
    if (auto s = CopyToBackend(ctx, ctx.offsets_, src_offsets, sizeof(int64_t) * n); !s.ok()) {
      return s;
    }
    if (auto s = CopyToBackend(ctx, ctx.offsets_ + n, dst_offsets, sizeof(int64_t) * n); !s.ok()) {
      return s;
    }
    return FromCuda(LaunchRelocate(static_cast<char*>(arena), ctx.offsets_, ctx.offsets_ + n, n,
                                   block_bytes, S(ctx)),
                    "block relocation");
  }

 private:
  static cudaStream_t S(KernelContext& ctx) { return static_cast<CudaContext&>(ctx).stream_; }
  int ordinal_;
};

}  // namespace

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

absl::StatusOr<std::shared_ptr<const model::Kernels>> NewCudaKernels(int ordinal) {
  const int count = CudaDeviceCount();
  if (ordinal < 0 || ordinal >= count) {
    return absl::UnavailableError(
        absl::StrCat("cuda: device ", ordinal, " not visible (", count, " devices)"));
  }
  return std::shared_ptr<const model::Kernels>(std::make_shared<CudaKernels>(ordinal));
}

}  // namespace helm::kernels::cuda
