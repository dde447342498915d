// Forward semantics: KV reuse equals full recompute, M-FALCON microbatching, candidate order,
// top_k, block relocation, fast CPU path vs reference, request validation.
#include "helm/model/model.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "model/model_test_util.h"

namespace helm::model {
namespace {

using testing::BlockArena;
using testing::ExpectBatchMatchesOneByOne;
using testing::MakeRequest;
using testing::MaxRelativeError;
using testing::RandomRequest;
using testing::RunForward;
using testing::SmallDims;
using testing::TestSeed;

std::unique_ptr<Model> MakeModel(const ModelDims& dims, const std::string& kernels, uint64_t seed,
                                 int32_t microbatch = 5) {
  auto k = CreateKernels(kernels);
  EXPECT_TRUE(k.ok()) << k.status();
  auto m =
      Model::Create(std::shared_ptr<const Weights>(Weights::Random(dims, seed)), *k, microbatch);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(*m);
}

class CachedForward : public ::testing::TestWithParam<std::string> {};

TEST_P(CachedForward, MatchesFullRecomputeAtEverySplitKind) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed << " kernels " << GetParam());
  std::mt19937_64 rng(seed);
  const ModelDims dims = SmallDims();
  auto model = MakeModel(dims, GetParam(), seed);
  auto ws = model->NewWorkspace().value();
  for (int trial = 0; trial < 6; ++trial) {
    const int64_t L = std::uniform_int_distribution<int64_t>(1, 70)(rng);
    const RandomRequest r = MakeRequest(dims, L, 7, rng);
    const std::vector<float> full = RunForward(*model, *ws, r, L, 0, nullptr, false);
    // Split points: 0, block boundaries, off-boundary, L - 1 and L.
    std::vector<int64_t> splits = {0, L};
    splits.push_back(std::min<int64_t>(L, dims.tokens_per_block));
    splits.push_back(std::uniform_int_distribution<int64_t>(0, L)(rng));
    splits.push_back(std::max<int64_t>(0, L - 1));
    splits.push_back(L / dims.tokens_per_block * dims.tokens_per_block);
    for (int64_t split : splits) {
      SCOPED_TRACE(::testing::Message() << "L " << L << " cached " << split);
      BlockArena arena(*model, 64);
      // Cache the prefix the way a node does: compute it cold, append its K/V.
      RunForward(*model, *ws, r, split, 0, &arena, true);
      const std::vector<float> partial = RunForward(*model, *ws, r, L, split, &arena, true);
      EXPECT_LE(MaxRelativeError(partial, full), 1e-5);
      // Now the whole history is cached: only the candidates are computed.
      const std::vector<float> cached = RunForward(*model, *ws, r, L, L, &arena, false);
      EXPECT_LE(MaxRelativeError(cached, full), 1e-5);
    }
  }
}

TEST_P(CachedForward, ScoresDoNotDependOnMicrobatchSize) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const ModelDims dims = SmallDims();
  auto model = MakeModel(dims, GetParam(), seed);
  auto ws = model->NewWorkspace().value();
  const RandomRequest r = MakeRequest(dims, 33, 23, rng);
  const std::vector<float> one = RunForward(*model, *ws, r, 33, 0, nullptr, false, 1);
  for (int32_t mb : {2, 7, 23, 64}) {
    const std::vector<float> other = RunForward(*model, *ws, r, 33, 0, nullptr, false, mb);
    // fp32 rounding only: a candidate's row position changes the BLAS blocking it goes through
    // (up to 1.2e-6 seen over 400 seeds); a candidate that saw another would be off by far more.
    EXPECT_LE(MaxRelativeError(other, one), 1e-5) << "microbatch " << mb;
  }
}

TEST_P(CachedForward, ScoresFollowCandidatesWhenTheyArePermuted) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const ModelDims dims = SmallDims();
  auto model = MakeModel(dims, GetParam(), seed);
  auto ws = model->NewWorkspace().value();
  RandomRequest r = MakeRequest(dims, 20, 11, rng);
  const std::vector<float> base = RunForward(*model, *ws, r, 20, 0, nullptr, false);
  std::vector<int> perm(11);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  RandomRequest shuffled = r;
  for (int i = 0; i < 11; ++i) {
    std::copy_n(r.candidate_emb.begin() + perm[i] * dims.emb_dim, dims.emb_dim,
                shuffled.candidate_emb.begin() + i * dims.emb_dim);
  }
  const std::vector<float> out = RunForward(*model, *ws, shuffled, 20, 0, nullptr, false);
  std::vector<float> expected(11);
  for (int i = 0; i < 11; ++i) expected[i] = base[perm[i]];
  EXPECT_LE(MaxRelativeError(out, expected), 1e-5);  // fp32 rounding, as above
  // Scores differ between candidates (the test would not notice a constant head otherwise).
  EXPECT_NE(base[0], base[1]);
}

TEST_P(CachedForward, OutputsUnchangedAfterBlocksAreRelocated) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const ModelDims dims = SmallDims();
  auto model = MakeModel(dims, GetParam(), seed);
  auto ws = model->NewWorkspace().value();
  const RandomRequest r = MakeRequest(dims, 30, 6, rng);
  BlockArena arena(*model, 32);
  RunForward(*model, *ws, r, 30, 0, &arena, true);
  const std::vector<float> before = RunForward(*model, *ws, r, 30, 30, &arena, false);
  // Move every block to a free slot (as a pool resize does) and poison the old copies.
  std::vector<int64_t> src = arena.offsets();
  std::vector<int64_t> dst;
  for (size_t i = 0; i < src.size(); ++i) {
    dst.push_back(arena.free_blocks()[i] * arena.block_bytes());
  }
  ASSERT_TRUE(model->RelocateBlocks(*ws, arena.arena(), src, dst).ok());
  std::vector<char> poison(arena.block_bytes(), 0x7f);
  for (int64_t off : src) {
    ASSERT_TRUE(model->kernels()
                    .CopyToBackend(ws->context(), arena.Block(off), poison.data(), poison.size())
                    .ok());
  }
  for (size_t i = 0; i < dst.size(); ++i) arena.table()[i] = arena.Block(dst[i]);
  const std::vector<float> after = RunForward(*model, *ws, r, 30, 30, &arena, false);
  EXPECT_EQ(after, before);
}

// A batch of requests of every shape (see ExpectBatchMatchesOneByOne) scores and appends K/V as
// each request alone does. Tolerances: the reference's batch is bit-identical to its one-by-one
// forwards (its GEMMs sum in double), so 1e-5 as the tests above. On the CPU path a row's GEMM
// rounding depends on where it sits in OpenBLAS's blocking, and a request with few keys (an empty
// history: a candidate sees only itself) averages none of that away: up to 2e-5 seen over 2000
// seeds, so 1e-4, the fp32 tolerance of the CUDA tests. A row that saw another request's K/V, or
// K/V appended from another request's rows, is off by far more.
TEST_P(CachedForward, BatchMatchesOneByOneForwardsAndAppends) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed << " kernels " << GetParam());
  const double tolerance = GetParam() == "reference" ? 1e-5 : 1e-4;
  for (int32_t emb_dim : {16, 24}) {  // without and with the item projection
    SCOPED_TRACE(::testing::Message() << "emb_dim " << emb_dim);
    auto model = MakeModel(SmallDims(Dtype::kFp32, emb_dim), GetParam(), seed);
    for (uint64_t trial = 0; trial < 3; ++trial) {
      ExpectBatchMatchesOneByOne(*model, seed + 1000 * trial, tolerance);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, CachedForward, ::testing::Values("reference", "cpu"));

TEST(ModelForward, FastCpuPathMatchesReference) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (int32_t emb_dim : {16, 24}) {  // without and with the item projection
    const ModelDims dims = SmallDims(Dtype::kFp32, emb_dim);
    auto ref = MakeModel(dims, "reference", seed);
    auto cpu = MakeModel(dims, "cpu", seed);
    auto ws_ref = ref->NewWorkspace().value();
    auto ws_cpu = cpu->NewWorkspace().value();
    const RandomRequest r = MakeRequest(dims, 150, 70, rng);
    BlockArena arena_ref(*ref, 64);
    BlockArena arena_cpu(*cpu, 64);
    const auto cold_ref = RunForward(*ref, *ws_ref, r, 150, 0, nullptr, false);
    const auto cold_cpu = RunForward(*cpu, *ws_cpu, r, 150, 0, nullptr, false);
    EXPECT_LE(MaxRelativeError(cold_cpu, cold_ref), 1e-5);
    RunForward(*ref, *ws_ref, r, 101, 0, &arena_ref, true);
    RunForward(*cpu, *ws_cpu, r, 101, 0, &arena_cpu, true);
    const auto warm_ref = RunForward(*ref, *ws_ref, r, 150, 101, &arena_ref, false);
    const auto warm_cpu = RunForward(*cpu, *ws_cpu, r, 150, 101, &arena_cpu, false);
    EXPECT_LE(MaxRelativeError(warm_cpu, warm_ref), 1e-5);
  }
}

TEST(ModelForward, LowPrecisionKvCacheStaysCloseToFp32) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const RandomRequest r = MakeRequest(SmallDims(), 40, 9, rng);
  std::vector<float> fp32_scores;
  for (Dtype dtype : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
    const ModelDims dims = SmallDims(dtype);
    auto model = MakeModel(dims, "cpu", seed);
    auto ws = model->NewWorkspace().value();
    BlockArena arena(*model, 16);
    RunForward(*model, *ws, r, 40, 0, &arena, true);
    const auto scores = RunForward(*model, *ws, r, 40, 40, &arena, false);
    if (dtype == Dtype::kFp32) {
      fp32_scores = scores;
    } else {
      const double err = MaxRelativeError(scores, fp32_scores);
      EXPECT_LE(err, dtype == Dtype::kFp16 ? 5e-3 : 3e-2) << DtypeName(dtype);
      EXPECT_GT(err, 0.0) << DtypeName(dtype) << " K/V should be rounded";
    }
  }
}

TEST(ModelForward, EmptyHistoryScoresCandidatesAlone) {
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  const ModelDims dims = SmallDims();
  auto ref = MakeModel(dims, "reference", seed);
  auto cpu = MakeModel(dims, "cpu", seed);
  auto ws_ref = ref->NewWorkspace().value();
  auto ws_cpu = cpu->NewWorkspace().value();
  const RandomRequest r = MakeRequest(dims, 0, 4, rng);
  const auto a = RunForward(*ref, *ws_ref, r, 0, 0, nullptr, false);
  const auto b = RunForward(*cpu, *ws_cpu, r, 0, 0, nullptr, false);
  ASSERT_EQ(a.size(), 4u);
  // 1e-4, not 1e-5 as with a history: a candidate that sees only itself has for its attention
  // output one SiLU-weighted V row, whose variance can come near the LayerNorm's eps (2e-5 at
  // one seed in 2,000). The gate's 1/sqrt(var + eps) then magnifies fp32 rounding ~200x; the
  // largest error over seeds 1-2000 was 2.4e-5.
  EXPECT_LE(MaxRelativeError(b, a), 1e-4);
}

TEST(ModelForward, GathersEmbeddingsFromArenaAndStagingLocations) {
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  for (Dtype emb_dtype : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
    ModelDims dims = SmallDims();
    dims.emb_dtype = emb_dtype;
    auto model = MakeModel(dims, "cpu", seed);
    auto ws = model->NewWorkspace().value();
    const RandomRequest r = MakeRequest(dims, 12, 5, rng);
    // Rows 0..11 of the history live at arena offsets (reversed order, one row gap), the five
    // candidates in the staging buffer.
    const int64_t row_bytes = int64_t{dims.emb_dim} * DtypeBytes(emb_dtype);
    std::vector<char> arena(row_bytes * 30);
    std::vector<char> staging(row_bytes * 5);
    std::vector<int64_t> hist_locs, cand_locs;
    std::vector<float> rounded_hist(r.history_emb.size()), rounded_cand(r.candidate_emb.size());
    for (int64_t i = 0; i < 12; ++i) {
      const int64_t slot = 2 * (11 - i) + 1;
      hist_locs.push_back(slot * row_bytes);
      for (int j = 0; j < dims.emb_dim; ++j) {
        StoreFromFloat(arena.data() + slot * row_bytes, emb_dtype, j,
                       r.history_emb[i * dims.emb_dim + j]);
        rounded_hist[i * dims.emb_dim + j] =
            LoadAsFloat(arena.data() + slot * row_bytes, emb_dtype, j);
      }
    }
    for (int64_t c = 0; c < 5; ++c) {
      const int64_t row = 4 - c;
      cand_locs.push_back(-(row + 1));
      for (int j = 0; j < dims.emb_dim; ++j) {
        StoreFromFloat(staging.data() + row * row_bytes, emb_dtype, j,
                       r.candidate_emb[c * dims.emb_dim + j]);
        rounded_cand[c * dims.emb_dim + j] =
            LoadAsFloat(staging.data() + row * row_bytes, emb_dtype, j);
      }
    }
    ForwardRequest req;
    req.actions = r.actions;
    req.timestamps = r.timestamps;
    req.suffix = {nullptr, arena.data(), staging.data(), hist_locs.data()};
    req.candidates = {nullptr, arena.data(), staging.data(), cand_locs.data()};
    req.num_candidates = 5;
    auto by_location = model->Forward(*ws, req);
    ASSERT_TRUE(by_location.ok()) << by_location.status();
    req.suffix = {rounded_hist.data()};
    req.candidates = {rounded_cand.data()};
    auto by_rows = model->Forward(*ws, req);
    ASSERT_TRUE(by_rows.ok()) << by_rows.status();
    EXPECT_EQ(by_location->scores, by_rows->scores) << DtypeName(emb_dtype);
  }
}

TEST(ModelForward, RejectsMalformedRequestsNamingTheField) {
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  const ModelDims dims = SmallDims();
  auto model = MakeModel(dims, "cpu", seed);
  auto ws = model->NewWorkspace().value();
  RandomRequest r = MakeRequest(dims, 10, 3, rng);
  ForwardRequest req;
  req.actions = r.actions;
  req.timestamps = r.timestamps;
  req.suffix.rows = r.history_emb.data();
  req.candidates.rows = r.candidate_emb.data();
  req.num_candidates = 3;
  ASSERT_TRUE(model->Forward(*ws, req).ok());

  ForwardRequest bad = req;
  bad.timestamps = absl::MakeConstSpan(r.timestamps.data(), 9);
  EXPECT_NE(model->Forward(*ws, bad).status().message().find("timestamps"), std::string::npos);
  bad = req;
  bad.cached_tokens = 11;
  EXPECT_NE(model->Forward(*ws, bad).status().message().find("cached_tokens"), std::string::npos);
  bad = req;
  bad.cached_tokens = 5;  // needs 2 blocks, none given
  EXPECT_NE(model->Forward(*ws, bad).status().message().find("blocks"), std::string::npos);
  std::vector<int32_t> actions = r.actions;
  actions[4] = dims.num_actions;
  bad = req;
  bad.actions = actions;
  const absl::Status s = model->Forward(*ws, bad).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("action 4"), std::string::npos) << s;
  bad = req;
  bad.suffix.rows = nullptr;
  EXPECT_EQ(model->Forward(*ws, bad).status().code(), absl::StatusCode::kInvalidArgument);
  // An arena location must be aligned to the embedding element size.
  std::vector<char> arena(1024);
  std::vector<int64_t> locations(10, 0);
  locations[7] = 6;  // not a multiple of 4 (fp32)
  bad = req;
  bad.suffix = {nullptr, arena.data(), nullptr, locations.data()};
  const absl::Status misaligned = model->Forward(*ws, bad).status();
  EXPECT_NE(misaligned.message().find("location 7 = 6 is not a multiple"), std::string::npos)
      << misaligned;
  // AppendKv must start where the last forward's suffix starts.
  std::vector<void*> blocks(3, nullptr);
  EXPECT_EQ(model->AppendKv(*ws, blocks, 4, 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model->AppendKv(*ws, blocks, 0, 10).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelForward, BatchRejectsAMalformedRequestNamingItsIndex) {
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  const ModelDims dims = SmallDims();
  auto model = MakeModel(dims, "cpu", seed);
  auto ws = model->NewWorkspace().value();
  const RandomRequest r = MakeRequest(dims, 10, 3, rng);
  ForwardRequest good;
  good.actions = r.actions;
  good.timestamps = r.timestamps;
  good.suffix.rows = r.history_emb.data();
  good.candidates.rows = r.candidate_emb.data();
  good.num_candidates = 3;
  std::vector<ForwardRequest> batch = {good, good, good};
  ASSERT_TRUE(model->ForwardBatch(*ws, batch).ok());

  batch[2].timestamps = absl::MakeConstSpan(r.timestamps.data(), 9);
  absl::Status s = model->ForwardBatch(*ws, batch).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("request 2"), std::string::npos) << s;
  EXPECT_NE(s.message().find("timestamps"), std::string::npos) << s;
  // A failed batch leaves no suffix K/V to append.
  EXPECT_EQ(ws->new_kv_requests(), 0);
  std::vector<void*> blocks(3, nullptr);
  EXPECT_EQ(model->AppendKv(*ws, 0, blocks, 0, 1).code(), absl::StatusCode::kInvalidArgument);

  batch[2] = good;
  std::vector<char> arena(1024);
  std::vector<int64_t> locations(3, 0);
  locations[1] = 6;  // not a multiple of 4 (fp32)
  batch[1].candidates = {nullptr, arena.data(), nullptr, locations.data()};
  s = model->ForwardBatch(*ws, batch).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("request 1: candidate embeddings: location 1 = 6"), std::string::npos)
      << s;
}

TEST(ModelForward, AppendKvAfterABatchChecksTheRequestAndItsTokens) {
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  const ModelDims dims = SmallDims();
  auto model = MakeModel(dims, "cpu", seed);
  auto ws = model->NewWorkspace().value();
  const RandomRequest a = MakeRequest(dims, 9, 2, rng);
  const RandomRequest b = MakeRequest(dims, 5, 2, rng);
  std::vector<ForwardRequest> batch(2);
  for (int i = 0; i < 2; ++i) {
    const RandomRequest& r = i == 0 ? a : b;
    batch[i].actions = r.actions;
    batch[i].timestamps = r.timestamps;
    batch[i].suffix.rows = r.history_emb.data();
    batch[i].candidates.rows = r.candidate_emb.data();
    batch[i].num_candidates = 2;
  }
  ASSERT_TRUE(model->ForwardBatch(*ws, batch).ok());
  EXPECT_EQ(ws->new_kv_tokens(), 14);
  EXPECT_EQ(ws->new_kv_of(1).row, 9);
  BlockArena arena(*model, 8);
  arena.Reserve(9);
  EXPECT_TRUE(model->AppendKv(*ws, 1, arena.table(), 0, 5).ok());
  EXPECT_EQ(model->AppendKv(*ws, 1, arena.table(), 0, 6).code(),
            absl::StatusCode::kInvalidArgument);  // request 1 has 5 suffix tokens
  EXPECT_EQ(model->AppendKv(*ws, 1, arena.table(), 1, 4).code(),
            absl::StatusCode::kInvalidArgument);  // its suffix starts at token 0
  const absl::Status s = model->AppendKv(*ws, 2, arena.table(), 0, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("request"), std::string::npos) << s;
  EXPECT_EQ(model->AppendKv(*ws, -1, arena.table(), 0, 1).code(),
            absl::StatusCode::kInvalidArgument);
  // An empty batch is a forward of nothing.
  auto none = model->ForwardBatch(*ws, {});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(ws->new_kv_requests(), 0);
}

TEST(ModelForward, ConcurrentForwardsWithOwnWorkspacesMatchSequentialOnes) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const ModelDims dims = SmallDims();
  auto model = MakeModel(dims, "cpu", seed);
  std::vector<RandomRequest> requests;
  std::vector<std::vector<float>> sequential;
  auto ws = model->NewWorkspace().value();
  for (int i = 0; i < 8; ++i) {
    requests.push_back(MakeRequest(dims, 20 + 9 * i, 6, rng));
    sequential.push_back(
        RunForward(*model, *ws, requests.back(), requests.back().length(), 0, nullptr, false));
  }
  std::vector<std::vector<float>> concurrent(requests.size());
  std::vector<std::thread> workers;
  for (int t = 0; t < 2; ++t) {
    workers.emplace_back([&, t] {
      auto own = model->NewWorkspace().value();
      for (size_t i = t; i < requests.size(); i += 2) {
        concurrent[i] =
            RunForward(*model, *own, requests[i], requests[i].length(), 0, nullptr, false);
      }
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(concurrent, sequential);
}

TEST(TopK, OrdersByScoreThenLowerIndexOnTies) {
  const std::vector<float> scores = {0.5f, 2.0f, -1.0f, 2.0f, 0.5f, 3.0f};
  EXPECT_EQ(TopK(scores, 4), (std::vector<int32_t>{5, 1, 3, 0}));
  EXPECT_EQ(TopK(scores, 100), (std::vector<int32_t>{5, 1, 3, 0, 4, 2}));
  EXPECT_TRUE(TopK(scores, 0).empty());
  EXPECT_TRUE(TopK(scores, -3).empty());
}

TEST(TopK, RanksNaNLast) {
  const std::vector<float> scores = {std::nanf(""), 1.0f, std::nanf(""), -5.0f};
  EXPECT_EQ(TopK(scores, 4), (std::vector<int32_t>{1, 3, 0, 2}));
}

TEST(ModelCreate, BuildsFromOptionsAndRejectsUnknownKernels) {
  ModelOptions options;
  emb::EmbOptions emb;
  kv::KvOptions kv;
  options.kernels = "cpu";
  auto model = Model::Create(options, emb, kv);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->kernels().name(), "cpu");
  EXPECT_EQ((*model)->dims().block_bytes(), int64_t{kv.tokens_per_block} * options.num_layers *
                                                options.num_heads * (options.d_qk + options.d_v) *
                                                4);
  options.kernels = "tpu";
  EXPECT_NE(Model::Create(options, emb, kv).status().message().find("model.kernels"),
            std::string::npos);
  options.kernels = "cpu";
  kv.dtype = "fp8";
  EXPECT_NE(Model::Create(options, emb, kv).status().message().find("kv.dtype"), std::string::npos);
}

}  // namespace
}  // namespace helm::model
