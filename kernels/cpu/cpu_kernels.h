// The fast CPU kernel path: OpenBLAS sgemm for the dense layers and for the Q.K^T and A.V tiles of
// paged attention, and fused, vectorised loops (compiled for AVX-512 / AVX2 / baseline and picked
// at run time) for LayerNorm, SiLU, gating and the relative bias. Calls it does not override run
// the reference loops. Agrees with the reference within 1e-5 relative error in fp32.
//
// Thread-safety: the kernels object is stateless and shared; per-thread scratch lives in the
// KernelContext (one per worker thread). OpenBLAS is set to `cpu_threads` threads at creation
// (a process-wide OpenBLAS setting; 1 by default because worker threads parallelise).
#pragma once

#include <memory>

#include "ref/ref_kernels.h"

namespace helm::kernels {

class CpuKernels : public RefKernels {
 public:
  explicit CpuKernels(int32_t cpu_threads);

  absl::string_view name() const override { return "cpu"; }
  absl::StatusOr<std::unique_ptr<model::KernelContext>> CreateContext() const override;

  absl::Status Gemm(model::KernelContext& ctx, int64_t m, int64_t n, int64_t k, const float* a,
                    int64_t lda, const float* b, const float* bias, float* c, int64_t ldc,
                    bool accumulate) const override;
  absl::Status BiasSilu(model::KernelContext& ctx, float* x, int64_t rows, int64_t width,
                        const float* bias) const override;
  absl::Status LayerNorm(model::KernelContext& ctx, const float* x, float* y, int64_t rows,
                         int64_t width, const float* gamma, const float* beta) const override;
  absl::Status LayerNormGate(model::KernelContext& ctx, const float* o, const float* u,
                             int64_t u_stride, float* out, int64_t rows, int64_t width,
                             const float* gamma, const float* beta) const override;
  absl::Status RowDot(model::KernelContext& ctx, const float* a, const float* b, int64_t rows,
                      int64_t width, float* out) const override;
  absl::Status Attention(model::KernelContext& ctx,
                         const model::AttentionArgs& args) const override;
  absl::Status GatherEmbeddings(model::KernelContext& ctx,
                                const model::GatherArgs& args) const override;
};

}  // namespace helm::kernels
