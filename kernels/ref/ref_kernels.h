// The plain C++ reference kernels: straightforward loops with double accumulation, host memory.
// They are the oracle every other kernel path is tested against, and the base class of the fast
// CPU path (which overrides the heavy calls). Thread-safe: stateless.
#pragma once

#include <memory>

#include "helm/model/kernels.h"

namespace helm::kernels {

class RefKernels : public model::Kernels {
 public:
  absl::string_view name() const override { return "reference"; }
  absl::StatusOr<std::unique_ptr<model::KernelContext>> CreateContext() const override;
  absl::StatusOr<void*> Allocate(size_t bytes) const override;
  void Free(void* ptr) const override;
  absl::Status CopyToBackend(model::KernelContext& ctx, void* dst, const void* host_src,
                             size_t bytes) const override;
  absl::Status CopyToHost(model::KernelContext& ctx, void* host_dst, const void* src,
                          size_t bytes) const override;
  absl::Status CopyWithin(model::KernelContext& ctx, void* dst, const void* src,
                          size_t bytes) const override;
  absl::Status Synchronize(model::KernelContext& ctx) const override;

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
  absl::Status AddRows(model::KernelContext& ctx, float* x, int64_t rows, int64_t width,
                       const float* table, const int32_t* ids) const override;
  absl::Status CopyColumns(model::KernelContext& ctx, const float* src, int64_t src_stride,
                           int64_t col, int64_t rows, int64_t width, float* dst) const override;
  absl::Status RowDot(model::KernelContext& ctx, const float* a, const float* b, int64_t rows,
                      int64_t width, float* out) const override;
  absl::Status Attention(model::KernelContext& ctx,
                         const model::AttentionArgs& args) const override;
  absl::Status GatherEmbeddings(model::KernelContext& ctx,
                                const model::GatherArgs& args) const override;
  absl::Status AppendKv(model::KernelContext& ctx, const model::AppendArgs& args) const override;
  absl::Status RelocateBlocks(model::KernelContext& ctx, void* arena, const int64_t* src_offsets,
                              const int64_t* dst_offsets, int64_t n,
                              int64_t block_bytes) const override;
};

// Argument checks shared by every kernel path (they hold no pointers' contents, only shapes).
absl::Status CheckAttentionArgs(const model::AttentionArgs& args);
absl::Status CheckGatherArgs(const model::GatherArgs& args);
absl::Status CheckAppendArgs(const model::AppendArgs& args);

// Layer-norm epsilon of every path.
inline constexpr float kLayerNormEps = 1e-5f;

}  // namespace helm::kernels
