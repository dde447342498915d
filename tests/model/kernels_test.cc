// Kernel paths against the reference on fresh random inputs: attention over paged blocks (every
// K/V dtype, history and candidate queries), embedding gather, KV append.
#include "helm/model/kernels.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "model/model_test_util.h"

namespace helm::model {
namespace {

using testing::MaxRelativeError;
using testing::TestSeed;

struct PagedInput {
  int32_t heads = 3, d_qk = 16, d_v = 8, layers = 2, layer = 1, tpb = 5;
  int64_t cached = 0, suffix = 0;
  Dtype dtype = Dtype::kFp32;
  std::vector<std::vector<char>> blocks;
  std::vector<const void*> block_ptrs;
  std::vector<float> k_suffix, v_suffix, q, self, pos_bias, time_bias;
  std::vector<int64_t> timestamps;
};

PagedInput MakePaged(int64_t cached, int64_t suffix, int64_t queries, Dtype dtype,
                     std::mt19937_64& rng) {
  PagedInput p;
  p.cached = cached;
  p.suffix = suffix;
  p.dtype = dtype;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t block_elems = int64_t{p.layers} * p.tpb * p.heads * (p.d_qk + p.d_v);
  for (int64_t b = 0; b < (cached + p.tpb - 1) / p.tpb; ++b) {
    p.blocks.emplace_back(block_elems * DtypeBytes(dtype));
    for (int64_t e = 0; e < block_elems; ++e)
      StoreFromFloat(p.blocks.back().data(), dtype, e, normal(rng));
  }
  for (auto& b : p.blocks) p.block_ptrs.push_back(b.data());
  auto fill = [&](std::vector<float>& v, int64_t n) {
    v.resize(n);
    for (auto& x : v) x = normal(rng);
  };
  fill(p.k_suffix, suffix * p.heads * p.d_qk);
  fill(p.v_suffix, suffix * p.heads * p.d_v);
  const int64_t stride = int64_t{p.heads} * (p.d_qk + p.d_v) + 3;
  fill(p.q, std::max<int64_t>(1, queries) * stride);
  fill(p.self, std::max<int64_t>(1, queries) * stride);
  fill(p.pos_bias, p.heads * 6);
  fill(p.time_bias, p.heads * 9);
  int64_t t = 1000;
  for (int64_t i = 0; i < cached + suffix; ++i) {
    t += std::uniform_int_distribution<int64_t>(0, 300)(rng);
    p.timestamps.push_back(t);
  }
  return p;
}

AttentionArgs ArgsFor(const PagedInput& p, int64_t queries, bool candidates, float* out) {
  AttentionArgs a;
  a.num_heads = p.heads;
  a.d_qk = p.d_qk;
  a.d_v = p.d_v;
  a.alpha = 0.25f;
  a.num_queries = queries;
  a.q = p.q.data();
  a.q_stride = int64_t{p.heads} * (p.d_qk + p.d_v) + 3;
  a.candidates = candidates;
  a.k_self = p.self.data();
  a.v_self = p.self.data() + int64_t{p.heads} * p.d_qk;
  a.self_stride = a.q_stride;
  a.blocks = p.block_ptrs.data();
  a.cached_tokens = p.cached;
  a.layer = p.layer;
  a.num_layers = p.layers;
  a.tokens_per_block = p.tpb;
  a.kv_dtype = p.dtype;
  a.k_suffix = p.k_suffix.data();
  a.v_suffix = p.v_suffix.data();
  a.suffix_tokens = p.suffix;
  a.timestamps = p.timestamps.data();
  a.pos_bias = p.pos_bias.data();
  a.time_bias = p.time_bias.data();
  a.position_buckets = 6;
  a.time_buckets = 9;
  a.out = out;
  return a;
}

// The reference and the fast CPU kernels, each with a context.
struct RefAndCpu {
  std::shared_ptr<const Kernels> ref = CreateKernels("reference").value();
  std::shared_ptr<const Kernels> cpu = CreateKernels("cpu").value();
  std::unique_ptr<KernelContext> ctx_ref = ref->CreateContext().value();
  std::unique_ptr<KernelContext> ctx_cpu = cpu->CreateContext().value();
};

TEST(Kernels, CpuAttentionMatchesReferenceForEveryKvDtype) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  RefAndCpu k;
  for (Dtype dtype : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
    for (bool candidates : {false, true}) {
      for (auto [cached, suffix] :
           {std::pair<int64_t, int64_t>{0, 70}, {23, 300}, {40, 0}, {0, 0}}) {
        const int64_t queries = candidates ? 200 : suffix;  // several query tiles
        SCOPED_TRACE(::testing::Message() << DtypeName(dtype) << " candidates " << candidates
                                          << " cached " << cached << " suffix " << suffix);
        const PagedInput p = MakePaged(cached, suffix, queries, dtype, rng);
        const int64_t n = queries * p.heads * p.d_v;
        std::vector<float> out_ref(std::max<int64_t>(n, 1)), out_cpu(std::max<int64_t>(n, 1), -1.f);
        ASSERT_TRUE(
            k.ref->Attention(*k.ctx_ref, ArgsFor(p, queries, candidates, out_ref.data())).ok());
        ASSERT_TRUE(
            k.cpu->Attention(*k.ctx_cpu, ArgsFor(p, queries, candidates, out_cpu.data())).ok());
        if (n > 0) {
          EXPECT_LE(MaxRelativeError(out_cpu, out_ref), 1e-5);
        }
      }
    }
  }
}

TEST(Kernels, CpuAttentionReusesPreparedKvOnlyForTheSameKv) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  RefAndCpu k;
  const int64_t queries = 40;
  const PagedInput first = MakePaged(23, 30, queries, Dtype::kBf16, rng);
  const PagedInput second = MakePaged(31, 12, queries, Dtype::kBf16, rng);
  std::vector<float> out_ref(queries * first.heads * first.d_v), out_cpu(out_ref.size());
  // Each step: (input, candidates, layer, the caller's same-K/V flag).
  struct Step {
    const PagedInput* input;
    bool candidates;
    int32_t layer;
    bool same_kv;
  };
  const Step steps[] = {
      {&first, false, 1, false},  // history queries: gathers
      {&first, true, 1, true},    // candidates of the same layer: reuses
      {&first, true, 1, true},
      {&second, true, 1, true},  // other blocks despite the flag: must gather again
      {&second, true, 0, true},  // another layer despite the flag: must gather again
  };
  for (const Step& step : steps) {
    SCOPED_TRACE(::testing::Message() << "cached " << step.input->cached << " layer " << step.layer
                                      << " candidates " << step.candidates);
    // History queries are the suffix's tokens.
    const int64_t n = step.candidates ? queries : step.input->suffix;
    AttentionArgs a = ArgsFor(*step.input, n, step.candidates, out_ref.data());
    a.layer = step.layer;
    ASSERT_TRUE(k.ref->Attention(*k.ctx_ref, a).ok());
    a.out = out_cpu.data();
    a.same_kv_as_last_call = step.same_kv;
    ASSERT_TRUE(k.cpu->Attention(*k.ctx_cpu, a).ok());
    EXPECT_LE(MaxRelativeError(out_cpu, out_ref), 1e-5);
  }
}

TEST(Kernels, AttentionRejectsMissingInputs) {
  auto cpu = CreateKernels("cpu").value();
  auto ctx = cpu->CreateContext().value();
  std::mt19937_64 rng(TestSeed());
  const PagedInput p = MakePaged(10, 5, 5, Dtype::kFp32, rng);
  std::vector<float> out(5 * p.heads * p.d_v);
  AttentionArgs a = ArgsFor(p, 5, false, out.data());
  a.blocks = nullptr;
  EXPECT_EQ(cpu->Attention(*ctx, a).code(), absl::StatusCode::kInvalidArgument);
  a = ArgsFor(p, 6, false, out.data());  // more history queries than suffix tokens
  EXPECT_EQ(cpu->Attention(*ctx, a).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Kernels, AppendThenAttentionSeesTheSameKeysAsTheSuffix) {
  // Attention over keys appended to blocks equals attention over the same keys as a suffix
  // (fp32 blocks: exact copy).
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  auto cpu = CreateKernels("cpu").value();
  auto ctx = cpu->CreateContext().value();
  PagedInput p = MakePaged(0, 37, 11, Dtype::kFp32, rng);
  // The scratch layout: [layers][2][tokens][H][d]; put the suffix at layer p.layer.
  const int64_t per_layer = p.suffix * p.heads * (p.d_qk + p.d_v);
  std::vector<float> scratch(p.layers * per_layer, 0.0f);
  std::copy(p.k_suffix.begin(), p.k_suffix.end(), scratch.begin() + p.layer * per_layer);
  std::copy(p.v_suffix.begin(), p.v_suffix.end(),
            scratch.begin() + p.layer * per_layer + p.suffix * p.heads * p.d_qk);
  const int64_t block_bytes = int64_t{p.layers} * p.tpb * p.heads * (p.d_qk + p.d_v) * 4;
  std::vector<std::vector<char>> blocks((37 + p.tpb - 1) / p.tpb, std::vector<char>(block_bytes));
  std::vector<void*> table;
  for (auto& b : blocks) table.push_back(b.data());
  AppendArgs ap;
  ap.src = scratch.data();
  ap.src_tokens = 37;
  ap.n = 37;
  ap.blocks = table.data();
  ap.num_layers = p.layers;
  ap.num_heads = p.heads;
  ap.d_qk = p.d_qk;
  ap.d_v = p.d_v;
  ap.tokens_per_block = p.tpb;
  ASSERT_TRUE(cpu->AppendKv(*ctx, ap).ok());
  std::vector<float> via_suffix(11 * p.heads * p.d_v), via_blocks(11 * p.heads * p.d_v);
  ASSERT_TRUE(cpu->Attention(*ctx, ArgsFor(p, 11, true, via_suffix.data())).ok());
  PagedInput cached = p;
  cached.cached = 37;
  cached.suffix = 0;
  cached.block_ptrs.assign(table.begin(), table.end());
  ASSERT_TRUE(cpu->Attention(*ctx, ArgsFor(cached, 11, true, via_blocks.data())).ok());
  EXPECT_LE(MaxRelativeError(via_blocks, via_suffix), 1e-6);
}

TEST(Kernels, CpuGatherMatchesReferenceForEveryDtype) {
  std::mt19937_64 rng(TestSeed());
  auto ref = CreateKernels("reference").value();
  auto cpu = CreateKernels("cpu").value();
  auto ctx = cpu->CreateContext().value();
  std::normal_distribution<float> normal;
  for (Dtype dtype : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
    const int dim = 13;
    std::vector<char> arena(dim * DtypeBytes(dtype) * 8 + 6), staging(dim * DtypeBytes(dtype) * 4);
    for (size_t i = 0; i + 1 < arena.size(); i += 2)
      StoreFromFloat(arena.data(), Dtype::kFp16, i / 2, normal(rng));
    for (size_t i = 0; i + 1 < staging.size(); i += 2)
      StoreFromFloat(staging.data(), Dtype::kFp16, i / 2, normal(rng));
    const std::vector<int64_t> locs = {0, -1, int64_t{dim} * DtypeBytes(dtype) * 3, -4,
                                       2 * DtypeBytes(dtype)};
    std::vector<float> a(locs.size() * dim), b(locs.size() * dim);
    GatherArgs g{arena.data(), staging.data(), locs.data(), 5, dim, dtype, a.data()};
    ASSERT_TRUE(ref->GatherEmbeddings(*ctx, g).ok());
    g.out = b.data();
    ASSERT_TRUE(cpu->GatherEmbeddings(*ctx, g).ok());
    EXPECT_EQ(a, b) << DtypeName(dtype);
    // Row 1 is staging row 0.
    EXPECT_EQ(a[dim], LoadAsFloat(staging.data(), dtype, 0));
  }
}

// fp16/bf16 conversions: tests/common/dtype_test.cc.
TEST(Log2Bucket, BucketsDoubleInWidthAndClampAtTheLast) {
  EXPECT_EQ(Log2Bucket(0, 8), 0);
  EXPECT_EQ(Log2Bucket(1, 8), 1);
  EXPECT_EQ(Log2Bucket(3, 8), 2);
  EXPECT_EQ(Log2Bucket(4, 8), 3);
  EXPECT_EQ(Log2Bucket(int64_t{1} << 40, 8), 7);
  EXPECT_EQ(Log2Bucket(-5, 8), 0);
}

}  // namespace
}  // namespace helm::model
