// The CUDA kernel path against the reference on fresh random inputs, on a GPU; every test skips
// cleanly where there is none. Tolerances per K/V dtype: the CUDA path and the reference read the
// same rounded K/V, so only the summation order differs (fp32 dense math, no TF32).
#include <random>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "helm/model/kernels.h"
#include "helm/model/model.h"
#include "model/model_test_util.h"

namespace helm::model {
namespace {

using testing::BackendArray;
using testing::BlockArena;
using testing::ExpectBatchMatchesOneByOne;
using testing::MakeRequest;
using testing::MaxRelativeError;
using testing::RandomRequest;
using testing::RunForward;
using testing::SmallDims;
using testing::TestSeed;

double Tolerance(Dtype kv_dtype) {
  switch (kv_dtype) {
    case Dtype::kFp32:
      return 1e-4;
    case Dtype::kFp16:
      return 1e-3;
    case Dtype::kBf16:
      return 1e-2;
  }
  return 0.0;
}

class CudaPath : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device (or no CUDA build)";
  }
  static std::unique_ptr<Model> MakeModel(const ModelDims& dims, const std::string& kernels,
                                          uint64_t seed, int32_t microbatch = 16) {
    auto k = CreateKernels(kernels);
    EXPECT_TRUE(k.ok()) << k.status();
    auto m =
        Model::Create(std::shared_ptr<const Weights>(Weights::Random(dims, seed)), *k, microbatch);
    EXPECT_TRUE(m.ok()) << m.status();
    return std::move(*m);
  }
};

// Cold, partly cached (on and off block boundaries) and fully cached forwards on the GPU match
// the reference's full recompute, for every K/V dtype and a larger model than the CPU tests.
TEST_F(CudaPath, ForwardMatchesReferenceForEveryKvDtypeAndSplit) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (Dtype dtype : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
    ModelDims dims = SmallDims(dtype, 48, 16);
    dims.num_heads = 4;
    dims.d_qk = 32;
    dims.d_v = 64;
    dims.d_model = 64;
    auto ref = MakeModel(dims, "reference", seed);
    auto gpu = MakeModel(dims, "cuda", seed);
    auto ws_ref = ref->NewWorkspace().value();
    auto ws_gpu = gpu->NewWorkspace().value();
    const int64_t L = 500;
    const RandomRequest r = MakeRequest(dims, L, 40, rng);
    // Reference: cold full recompute, plus a cached prefix for the split runs.
    const std::vector<float> full_ref = RunForward(*ref, *ws_ref, r, L, 0, nullptr, false);
    for (int64_t split : {int64_t{0}, int64_t{256}, int64_t{333}, L}) {
      SCOPED_TRACE(::testing::Message() << DtypeName(dtype) << " cached " << split);
      BlockArena ref_arena(*ref, 64);
      RunForward(*ref, *ws_ref, r, split, 0, &ref_arena, true);
      const std::vector<float> want = RunForward(*ref, *ws_ref, r, L, split, &ref_arena, true);
      EXPECT_LE(MaxRelativeError(want, full_ref),
                dtype == Dtype::kFp32 ? 1e-5 : Tolerance(dtype) * 30);
      // GPU: build its own cache the same way (its own prefix forward and KV append).
      BlockArena gpu_arena(*gpu, 64);
      RunForward(*gpu, *ws_gpu, r, split, 0, &gpu_arena, true);
      const std::vector<float> got = RunForward(*gpu, *ws_gpu, r, L, split, &gpu_arena, true);
      EXPECT_LE(MaxRelativeError(got, want), Tolerance(dtype));
      // The suffix the GPU appended makes a fully cached forward agree too, with the reference's
      // fully cached forward: both now read every token's K/V rounded to the cache dtype (the
      // split runs above computed the suffix's in fp32).
      const std::vector<float> cached = RunForward(*gpu, *ws_gpu, r, L, L, &gpu_arena, false);
      const std::vector<float> want_cached = RunForward(*ref, *ws_ref, r, L, L, &ref_arena, false);
      EXPECT_LE(MaxRelativeError(cached, want_cached), Tolerance(dtype));
    }
  }
}

TEST_F(CudaPath, ScoresDoNotDependOnMicrobatchSize) {
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  const ModelDims dims = SmallDims();
  auto gpu = MakeModel(dims, "cuda", seed);
  auto ws = gpu->NewWorkspace().value();
  const RandomRequest r = MakeRequest(dims, 300, 37, rng);
  const auto one = RunForward(*gpu, *ws, r, 300, 0, nullptr, false, 1);
  for (int32_t mb : {5, 16, 37}) {
    EXPECT_LE(MaxRelativeError(RunForward(*gpu, *ws, r, 300, 0, nullptr, false, mb), one), 1e-5)
        << "microbatch " << mb;
  }
}

// A batch of requests of every shape (see ExpectBatchMatchesOneByOne) on the GPU scores and appends
// K/V as each request alone on the GPU does, for a model with and without the item projection.
// Tolerance: the fp32 one of this file (cuBLAS may pick another algorithm, with another summation
// order, for the batch's larger GEMMs); a row that saw another request's K/V would be off by far
// more.
TEST_F(CudaPath, BatchMatchesOneByOneForwardsAndAppends) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  for (int32_t emb_dim : {64, 48}) {
    ModelDims dims = SmallDims(Dtype::kFp32, emb_dim, 16);
    dims.num_heads = 4;
    dims.d_qk = 32;
    dims.d_v = 64;
    dims.d_model = 64;
    auto gpu = MakeModel(dims, "cuda", seed);
    for (uint64_t trial = 0; trial < 3; ++trial) {
      ExpectBatchMatchesOneByOne(*gpu, seed + 1000 * trial, Tolerance(Dtype::kFp32));
    }
  }
}

TEST_F(CudaPath, OutputsUnchangedAfterBlocksAreRelocatedOnDevice) {
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  const ModelDims dims = SmallDims(Dtype::kBf16);
  auto gpu = MakeModel(dims, "cuda", seed);
  auto ws = gpu->NewWorkspace().value();
  const RandomRequest r = MakeRequest(dims, 50, 8, rng);
  BlockArena arena(*gpu, 40);
  RunForward(*gpu, *ws, r, 50, 0, &arena, true);
  const auto before = RunForward(*gpu, *ws, r, 50, 50, &arena, false);
  std::vector<int64_t> src = arena.offsets();
  std::vector<int64_t> dst;
  for (size_t i = 0; i < src.size(); ++i)
    dst.push_back(arena.free_blocks()[i] * arena.block_bytes());
  ASSERT_TRUE(gpu->RelocateBlocks(*ws, arena.arena(), src, dst).ok());
  std::vector<char> poison(arena.block_bytes(), 0x7f);
  for (int64_t off : src) {
    ASSERT_TRUE(gpu->kernels()
                    .CopyToBackend(ws->context(), arena.Block(off), poison.data(), poison.size())
                    .ok());
  }
  for (size_t i = 0; i < dst.size(); ++i) arena.table()[i] = arena.Block(dst[i]);
  // 50 keys make one attention split (each split takes >= 256 keys), so the same K/V bytes give
  // the same sums; the bound only allows for a device that split anyway (atomic partial sums).
  EXPECT_LE(MaxRelativeError(RunForward(*gpu, *ws, r, 50, 50, &arena, false), before), 1e-6);
}

TEST_F(CudaPath, GatherMatchesReferenceForEveryDtype) {
  std::mt19937_64 rng(TestSeed());
  auto ref = CreateKernels("reference").value();
  auto gpu = CreateKernels("cuda").value();
  auto ctx_ref = ref->CreateContext().value();
  auto ctx = gpu->CreateContext().value();
  std::normal_distribution<float> normal;
  for (Dtype dtype : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
    const int dim = 100;
    const int64_t row_bytes = int64_t{dim} * DtypeBytes(dtype);
    std::vector<char> arena(row_bytes * 64), staging(row_bytes * 16);
    for (int64_t i = 0; i < 64 * dim; ++i) StoreFromFloat(arena.data(), dtype, i, normal(rng));
    for (int64_t i = 0; i < 16 * dim; ++i) StoreFromFloat(staging.data(), dtype, i, normal(rng));
    std::vector<int64_t> locs;
    for (int i = 0; i < 300; ++i) {
      locs.push_back(i % 3 == 0 ? -1 - (i % 16) : (i * 7 % 64) * row_bytes);
    }
    std::vector<float> want(locs.size() * dim), got(locs.size() * dim);
    GatherArgs g{arena.data(), staging.data(), locs.data(), 300, dim, dtype, want.data()};
    ASSERT_TRUE(ref->GatherEmbeddings(*ctx_ref, g).ok());
    BackendArray d_arena(*gpu, *ctx, arena.data(), arena.size());
    BackendArray d_staging(*gpu, *ctx, staging.data(), staging.size());
    BackendArray d_locs(*gpu, *ctx, locs.data(), sizeof(int64_t) * locs.size());
    BackendArray d_out(*gpu, *ctx, got.data(), sizeof(float) * got.size());
    GatherArgs dg{d_arena.get(), d_staging.get(), static_cast<const int64_t*>(d_locs.get()), 300,
                  dim,           dtype,           static_cast<float*>(d_out.get())};
    ASSERT_TRUE(gpu->GatherEmbeddings(*ctx, dg).ok());
    ASSERT_TRUE(gpu->CopyToHost(*ctx, got.data(), d_out.get(), sizeof(float) * got.size()).ok());
    EXPECT_EQ(got, want) << DtypeName(dtype);
  }
}

TEST_F(CudaPath, AppendWritesTheSameBlockBytesAsTheReference) {
  std::mt19937_64 rng(TestSeed());
  auto ref = CreateKernels("reference").value();
  auto gpu = CreateKernels("cuda").value();
  auto ctx_ref = ref->CreateContext().value();
  auto ctx = gpu->CreateContext().value();
  std::normal_distribution<float> normal;
  for (Dtype dtype : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
    AppendArgs a;
    a.num_layers = 2;
    a.num_heads = 3;
    a.d_qk = 16;
    a.d_v = 24;
    a.tokens_per_block = 8;
    a.kv_dtype = dtype;
    a.src_tokens = 45;
    a.src_first = 3;
    a.n = 40;
    a.dst_first_token = 13;  // starts mid-block
    std::vector<float> src(a.num_layers * a.src_tokens * a.num_heads * (a.d_qk + a.d_v));
    for (auto& v : src) v = normal(rng);
    const int64_t blocks = (a.dst_first_token + a.n + a.tokens_per_block - 1) / a.tokens_per_block;
    const int64_t block_bytes = int64_t{a.num_layers} * a.tokens_per_block * a.num_heads *
                                (a.d_qk + a.d_v) * DtypeBytes(dtype);
    std::vector<char> host_blocks(blocks * block_bytes, 0);
    std::vector<void*> table;
    for (int64_t b = 0; b < blocks; ++b) table.push_back(host_blocks.data() + b * block_bytes);
    a.src = src.data();
    a.blocks = table.data();
    ASSERT_TRUE(ref->AppendKv(*ctx_ref, a).ok());
    std::vector<char> zeros(blocks * block_bytes, 0), got(blocks * block_bytes);
    BackendArray d_blocks(*gpu, *ctx, zeros.data(), zeros.size());
    BackendArray d_src(*gpu, *ctx, src.data(), sizeof(float) * src.size());
    std::vector<void*> d_table;
    for (int64_t b = 0; b < blocks; ++b)
      d_table.push_back(static_cast<char*>(d_blocks.get()) + b * block_bytes);
    BackendArray d_table_dev(*gpu, *ctx, d_table.data(), sizeof(void*) * d_table.size());
    AppendArgs da = a;
    da.src = d_src.floats();
    da.blocks = static_cast<void* const*>(d_table_dev.get());
    ASSERT_TRUE(gpu->AppendKv(*ctx, da).ok());
    ASSERT_TRUE(gpu->CopyToHost(*ctx, got.data(), d_blocks.get(), got.size()).ok());
    EXPECT_EQ(got, host_blocks) << DtypeName(dtype);
  }
}

TEST_F(CudaPath, DenseRowOpsMatchReference) {
  std::mt19937_64 rng(TestSeed());
  auto ref = CreateKernels("reference").value();
  auto gpu = CreateKernels("cuda").value();
  auto ctx_ref = ref->CreateContext().value();
  auto ctx = gpu->CreateContext().value();
  std::normal_distribution<float> normal;
  const int64_t m = 37, k = 70, n = 53;
  std::vector<float> a(m * k), b(k * n), bias(n), c(m * n), gamma(n), beta(n);
  for (auto* v : {&a, &b, &bias, &c, &gamma, &beta}) {
    for (auto& x : *v) x = normal(rng);
  }
  std::vector<float> want = c;
  ASSERT_TRUE(
      ref->Gemm(*ctx_ref, m, n, k, a.data(), k, b.data(), bias.data(), want.data(), n, true).ok());
  ASSERT_TRUE(ref->BiasSilu(*ctx_ref, want.data(), m, n, bias.data()).ok());
  ASSERT_TRUE(
      ref->LayerNorm(*ctx_ref, want.data(), want.data(), m, n, gamma.data(), beta.data()).ok());
  BackendArray da(*gpu, *ctx, a.data(), sizeof(float) * a.size());
  BackendArray db(*gpu, *ctx, b.data(), sizeof(float) * b.size());
  BackendArray dbias(*gpu, *ctx, bias.data(), sizeof(float) * bias.size());
  BackendArray dc(*gpu, *ctx, c.data(), sizeof(float) * c.size());
  BackendArray dg(*gpu, *ctx, gamma.data(), sizeof(float) * gamma.size());
  BackendArray dbeta(*gpu, *ctx, beta.data(), sizeof(float) * beta.size());
  float* out = static_cast<float*>(dc.get());
  ASSERT_TRUE(
      gpu->Gemm(*ctx, m, n, k, da.floats(), k, db.floats(), dbias.floats(), out, n, true).ok());
  ASSERT_TRUE(gpu->BiasSilu(*ctx, out, m, n, dbias.floats()).ok());
  ASSERT_TRUE(gpu->LayerNorm(*ctx, out, out, m, n, dg.floats(), dbeta.floats()).ok());
  std::vector<float> got(m * n);
  ASSERT_TRUE(gpu->CopyToHost(*ctx, got.data(), out, sizeof(float) * got.size()).ok());
  EXPECT_LE(MaxRelativeError(got, want), 1e-5);
}

// Overlapping CopyWithin (memmove on the reference) and an empty GEMM product (k = 0).
TEST_F(CudaPath, EdgeCopiesAndEmptyGemmMatchReference) {
  std::mt19937_64 rng(TestSeed());
  auto ref = CreateKernels("reference").value();
  auto gpu = CreateKernels("cuda").value();
  auto ctx_ref = ref->CreateContext().value();
  auto ctx = gpu->CreateContext().value();
  std::vector<char> want(4096);
  for (auto& b : want) b = static_cast<char>(rng());
  BackendArray d(*gpu, *ctx, want.data(), want.size());
  char* dev = static_cast<char*>(d.get());
  for (const auto& [dst, src, bytes] : {std::tuple{100, 0, 1000}, std::tuple{0, 37, 2000}}) {
    ASSERT_TRUE(ref->CopyWithin(*ctx_ref, want.data() + dst, want.data() + src, bytes).ok());
    ASSERT_TRUE(gpu->CopyWithin(*ctx, dev + dst, dev + src, bytes).ok());
  }
  std::vector<char> got(want.size());
  ASSERT_TRUE(gpu->CopyToHost(*ctx, got.data(), dev, got.size()).ok());
  EXPECT_EQ(got, want);

  const int64_t m = 5, n = 7;
  std::vector<float> bias(n, 1.5f), c(m * n, 2.0f);
  BackendArray dbias(*gpu, *ctx, bias.data(), sizeof(float) * n);
  for (const bool with_bias : {false, true}) {
    for (const bool accumulate : {false, true}) {
      std::vector<float> w = c;
      const float* b = with_bias ? bias.data() : nullptr;
      ASSERT_TRUE(
          ref->Gemm(*ctx_ref, m, n, 0, nullptr, 0, nullptr, b, w.data(), n, accumulate).ok());
      BackendArray dc(*gpu, *ctx, c.data(), sizeof(float) * c.size());
      float* out = static_cast<float*>(dc.get());
      ASSERT_TRUE(gpu->Gemm(*ctx, m, n, 0, nullptr, 0, nullptr,
                            with_bias ? dbias.floats() : nullptr, out, n, accumulate)
                      .ok());
      std::vector<float> g(c.size());
      ASSERT_TRUE(gpu->CopyToHost(*ctx, g.data(), out, sizeof(float) * g.size()).ok());
      EXPECT_EQ(g, w) << "bias " << with_bias << " accumulate " << accumulate;
    }
  }
}

TEST(CudaAvailability, FactoryAnswersUnavailableWithoutAGpu) {
  if (CudaAvailable()) GTEST_SKIP() << "a GPU is present";
  const auto k = CreateKernels("cuda");
  EXPECT_EQ(k.status().code(), absl::StatusCode::kUnavailable);
  // "auto" falls back to the fast CPU path.
  EXPECT_EQ(CreateKernels("auto").value()->name(), "cpu");
}

}  // namespace
}  // namespace helm::model
