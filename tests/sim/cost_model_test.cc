#include "helm/sim/cost_model.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/blas_core.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "helm/model/kernels.h"
#include "helm/model/model.h"
#include "helm/model/weights.h"

namespace helm::sim {
namespace {

using ::testing::HasSubstr;

// The demo model of configs/local.yaml (2 layers, 2 heads, d_qk = d_v = 32, D = 64, item
// embeddings of 64, 16 tokens per block, fp32): the model, emb and kv options' defaults.
model::ModelDims DemoDims() { return *model::DimsFromOptions({}, {}, {}); }

// A production-like shape (DESIGN.md §10).
model::ModelDims ProductionDims() {
  model::ModelDims d = DemoDims();
  d.num_layers = 3;
  d.num_heads = 4;
  d.d_qk = 128;
  d.d_v = 128;
  d.d_model = 512;
  d.emb_dim = 256;
  d.kv_dtype = Dtype::kBf16;
  d.emb_dtype = Dtype::kBf16;
  return d;
}

RequestWork Work(int64_t suffix, int64_t cached, int64_t candidates, int64_t miss_bytes = 0) {
  return {suffix, cached, candidates, suffix + candidates, miss_bytes};
}

CostModel MakeModel(const model::ModelDims& dims, const std::string& profile, int32_t mb = 64) {
  absl::StatusOr<CostProfile> p = ProfileByName(profile);
  EXPECT_TRUE(p.ok()) << p.status();
  absl::StatusOr<CostModel> m = CostModel::Create(dims, *p, mb);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(CostModel, DenseMacsMatchModelDenseMacs) {
  for (const model::ModelDims& dims : {DemoDims(), ProductionDims()}) {
    std::shared_ptr<const model::Weights> w(model::Weights::Random(dims, 1));
    auto kernels = model::CreateKernels("reference");
    ASSERT_TRUE(kernels.ok());
    auto m = model::Model::Create(w, *kernels, 64);
    ASSERT_TRUE(m.ok()) << m.status();
    for (auto [s, c] : {std::pair<int64_t, int64_t>{0, 0}, {0, 128}, {17, 0}, {300, 64}, {1, 1}}) {
      EXPECT_EQ(DenseMacs(dims, s, c), (*m)->DenseMacs(s, c)) << "suffix " << s << " cand " << c;
    }
  }
}

TEST(CostModel, MoreCandidatesCostMoreDenseAndAttention) {
  const CostModel m = MakeModel(ProductionDims(), "a100-80g");
  const CostBreakdown few = m.BatchCost({{Work(16, 1000, 32)}});
  const CostBreakdown many = m.BatchCost({{Work(16, 1000, 256)}});
  EXPECT_GT(many.dense_us, few.dense_us);
  EXPECT_GT(many.attention_us, few.attention_us);
  EXPECT_GT(many.gather_us, few.gather_us);
  EXPECT_GT(many.total_us(), few.total_us());
}

TEST(CostModel, CachedTokensCutDenseButNotAttentionReads) {
  const model::ModelDims dims = ProductionDims();
  const CostModel m = MakeModel(dims, "a100-80g");
  // The same 2048-token history: fully recomputed, or 2000 tokens cached.
  const RequestWork full = Work(2048, 0, 128);
  const RequestWork cached = Work(48, 2000, 128);
  const CostBreakdown f = m.BatchCost({{full}});
  const CostBreakdown c = m.BatchCost({{cached}});
  EXPECT_LT(c.dense_us, f.dense_us / 10);
  // Candidates read the whole history either way: their K/V reads are the same.
  const int64_t tile = m.profile().attention_query_tile;
  auto candidate_bytes = [&](RequestWork w) {
    const int64_t all = AttentionBytes(dims, w, tile, 64);
    w.candidates = 0;
    return all - AttentionBytes(dims, w, tile, 64);
  };
  EXPECT_GT(candidate_bytes(cached), 0);
  EXPECT_EQ(candidate_bytes(full), candidate_bytes(cached));
  // The cached request still reads every history token's K/V; the recompute reads more (its
  // causal history queries), never less.
  EXPECT_GE(AttentionBytes(dims, full, tile, 64), AttentionBytes(dims, cached, tile, 64));
  EXPECT_GT(c.attention_us, 0.5 * AttentionBytes(dims, cached, tile, 64) /
                                m.profile().effective_memory_bytes_per_s() * 1e6);
  EXPECT_LT(c.total_us(), f.total_us());
}

TEST(CostModel, AttentionBytesFollowQueryTiles) {
  const model::ModelDims dims = DemoDims();  // fp32 K/V: 2 heads * 64 * 4 = 512 bytes per key
  const int64_t per_key = 2 * 64 * 4;
  // 20 candidates in microbatches of 8 and tiles of 4: 2 + 2 + 1 tiles, each reading 100 keys,
  // on both layers.
  EXPECT_EQ(AttentionBytes(dims, Work(0, 100, 20), 4, 8), per_key * 5 * 100 * 2);
  // 10 history queries in tiles of 4 after 50 cached: tiles see 54, 58 and 60 keys, on layer 0.
  EXPECT_EQ(AttentionBytes(dims, Work(10, 50, 0), 4, 8), per_key * (54 + 58 + 60));
}

TEST(CostModel, EmbMissesCostPcieTime) {
  const CostModel m = MakeModel(ProductionDims(), "a100-80g");
  const CostBreakdown hit = m.BatchCost({{Work(16, 1000, 128)}});
  const CostBreakdown miss = m.BatchCost({{Work(16, 1000, 128, 64 * 512)}});
  EXPECT_EQ(hit.pcie_us, 0);
  EXPECT_DOUBLE_EQ(miss.pcie_us, m.PcieTimeUs(64 * 512));
  EXPECT_NEAR(miss.pcie_us, 10 + 64 * 512 / 25e9 * 1e6, 1e-9);
  EXPECT_NEAR(miss.total_us() - hit.total_us(), miss.pcie_us, 1e-9 * miss.total_us());
}

// A profile that models the host thread's gather of the missed rows charges their bytes at its
// rate on top of the transfer; the built-in profiles do not model it.
TEST(CostModel, AHostGatherOfTheMissesAddsItsBytesAtItsRate) {
  const CostModel plain = MakeModel(ProductionDims(), "a100-80g");
  EXPECT_EQ(plain.profile().host_gather_bytes_per_s, 0);
  CostProfile p = plain.profile();
  p.host_gather_bytes_per_s = 2e9;
  auto gathered = CostModel::Create(ProductionDims(), p, 64);
  ASSERT_TRUE(gathered.ok()) << gathered.status();
  const BatchWork miss{{Work(16, 1000, 128, 64 * 512)}};
  const BatchWork hit{{Work(16, 1000, 128)}};
  EXPECT_EQ(plain.BatchCost(miss).host_gather_us, 0);
  EXPECT_EQ(gathered->BatchCost(hit).host_gather_us, 0);
  EXPECT_DOUBLE_EQ(gathered->BatchCost(miss).host_gather_us, 64 * 512 / 2e9 * 1e6);
  EXPECT_DOUBLE_EQ(gathered->HostGatherUs(64 * 512), 64 * 512 / 2e9 * 1e6);
  EXPECT_NEAR(gathered->BatchTimeUs(miss) - plain.BatchTimeUs(miss), 64 * 512 / 2e9 * 1e6, 1e-6);
  EXPECT_DOUBLE_EQ(gathered->BatchCost(miss).pcie_us, plain.BatchCost(miss).pcie_us);
}

TEST(CostModel, BatchingAmortisesLaunchesAndFixedCost) {
  for (const char* profile : {"a100-80g", "h100-80g", "cpu"}) {
    const CostModel m = MakeModel(ProductionDims(), profile);
    BatchWork batch;
    double singles = 0;
    int64_t single_launches = 0;
    for (int i = 0; i < 8; ++i) {
      const RequestWork w = Work(8 + i, 500 + 100 * i, 128, 1000 * i);
      batch.requests.push_back(w);
      const CostBreakdown one = m.BatchCost({{w}});
      singles += one.total_us();
      single_launches += one.launches;
    }
    const CostBreakdown b = m.BatchCost(batch);
    EXPECT_LT(b.launches, single_launches) << profile;
    // Dense, attention and gathers add up; only launches, the fixed cost and the PCIe latency
    // are saved.
    const CostProfile& p = m.profile();
    const double saved = (single_launches - b.launches) * p.kernel_launch_us +
                         7 * p.batch_fixed_us + 6 * p.pcie_latency_us;  // 7 of 8 had misses
    EXPECT_NEAR(singles - b.total_us(), saved, 1e-6 * singles) << profile;
    EXPECT_LT(b.total_us(), singles) << profile;
  }
}

TEST(CostModel, EmptyBatchCostsNothing) {
  const CostModel m = MakeModel(DemoDims(), "cpu");
  EXPECT_EQ(m.BatchCost({}).total_us(), 0);
  EXPECT_EQ(m.BatchCost({{RequestWork{}}}).total_us(), 0);
}

TEST(CostProfiles, LoadByNameWithDatasheetFigures) {
  auto a100 = ProfileByName("a100-80g");
  auto h100 = ProfileByName("h100");
  auto cpu = ProfileByName("cpu");
  ASSERT_TRUE(a100.ok() && h100.ok() && cpu.ok());
  EXPECT_EQ(a100->name, "a100-80g");
  EXPECT_EQ(h100->name, "h100-80g");
  EXPECT_DOUBLE_EQ(a100->dense_flops_per_s, 19.5e12);
  EXPECT_DOUBLE_EQ(h100->memory_bytes_per_s, 3.35e12);
  EXPECT_GT(h100->pcie_bytes_per_s, a100->pcie_bytes_per_s);
  for (const auto& p : {*a100, *h100, *cpu}) EXPECT_TRUE(ValidateProfile(p).ok()) << p.name;
  // The same work is faster on the H100.
  const RequestWork w = Work(64, 2000, 256);
  EXPECT_LT(MakeModel(ProductionDims(), "h100-80g").BatchTimeUs({{w}}),
            MakeModel(ProductionDims(), "a100-80g").BatchTimeUs({{w}}));
  auto bad = ProfileByName("v100");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("v100"));
}

TEST(CostProfiles, CalibrationOverridesTheBaseProfile) {
  const std::string path = WriteTemp("calib_ok.json", R"({
    "base": "a100-80g", "machine": "test", "date": "2026-12-05",
    "dense_flops_per_s": 1.5e13, "dense_efficiency": 1.0, "kernel_launch_us": 2.5,
    "attention_query_tile": 16, "host_gather_bytes_per_s": 2.3e9
  })");
  auto p = LoadCalibration(path);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_DOUBLE_EQ(p->dense_flops_per_s, 1.5e13);
  EXPECT_DOUBLE_EQ(p->dense_efficiency, 1.0);
  EXPECT_DOUBLE_EQ(p->kernel_launch_us, 2.5);
  EXPECT_EQ(p->attention_query_tile, 16);
  EXPECT_DOUBLE_EQ(p->host_gather_bytes_per_s, 2.3e9);
  // Untouched figures stay the base's.
  EXPECT_DOUBLE_EQ(p->memory_bytes_per_s, 2.039e12);
  EXPECT_TRUE(p->on_device);
  EXPECT_THAT(p->name, HasSubstr("calib_ok.json"));
  const CostModel base = MakeModel(ProductionDims(), "a100-80g");
  auto calibrated = CostModel::Create(ProductionDims(), *p, 64);
  ASSERT_TRUE(calibrated.ok());
  const BatchWork b{{Work(64, 1000, 128)}};
  EXPECT_NEAR(calibrated->BatchCost(b).dense_us, base.BatchCost(b).dense_us * 19.5 * 0.6 / 15,
              1e-9 * base.BatchCost(b).dense_us);
}

TEST(CostProfiles, BadCalibrationNamesTheKey) {
  struct Case {
    const char* json;
    const char* key;
  };
  for (const Case& c :
       {Case{R"({"dense_flops_per_s": -1})", "dense_flops_per_s"},
        Case{R"({"memory_efficiency": 1.5})", "memory_efficiency"},
        Case{R"({"kernel_launch_us": "fast"})", "kernel_launch_us"},
        Case{R"({"attention_query_tile": 0})", "attention_query_tile"},
        Case{R"({"on_device": 1})", "on_device"}, Case{R"({"base": "tpu"})", "base"},
        Case{R"({"host_gather_bytes_per_s": -2e9})", "host_gather_bytes_per_s"},
        Case{R"({"dense_flops": 1e12})", "dense_flops"},
        Case{R"({"dense_flops_per_s": 1e12,})", "not valid JSON"},
        Case{R"({"service_ratio_quantiles": [[0, 1], [0.5]]})", "service_ratio_quantiles"},
        Case{R"({"service_ratio_quantiles": [[0.1, 1], [1, 2]]})", "service_ratio_quantiles"},
        Case{R"({"service_ratio_quantiles": [[0, 1.2], [0.5, 1.1], [1, 3]]})",
             "service_ratio_quantiles"},
        Case{R"({"service_ratio_quantiles": [[0, 0], [1, 2]]})", "service_ratio_quantiles"}}) {
    const std::string path = WriteTemp("calib_bad.json", c.json);
    auto p = LoadCalibration(path);
    ASSERT_FALSE(p.ok()) << c.json;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(p.status().message(), HasSubstr(c.key)) << c.json;
    EXPECT_THAT(p.status().message(), HasSubstr("calib_bad.json")) << c.json;
  }
  auto missing = LoadCalibration(::testing::TempDir() + "/no_such_calibration.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(CostProfiles, ServiceRatioInterpolatesTheMeasuredSpread) {
  const std::string path = WriteTemp("calib_spread.json", R"({
    "service_ratio_quantiles": [[0, 0.9], [0.5, 1.0], [0.99, 1.5], [1, 10]]
  })");
  auto p = LoadCalibration(path);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->service_ratio_quantiles.size(), 4u);
  EXPECT_DOUBLE_EQ(p->ServiceRatio(0.0), 0.9);
  EXPECT_DOUBLE_EQ(p->ServiceRatio(0.25), 0.95);
  EXPECT_DOUBLE_EQ(p->ServiceRatio(0.5), 1.0);
  EXPECT_DOUBLE_EQ(p->ServiceRatio(0.995), 5.75);
  EXPECT_DOUBLE_EQ(p->ServiceRatio(1.0), 10.0);
  EXPECT_DOUBLE_EQ(p->ServiceRatio(2.0), 10.0);  // clamped
  // Without a spread every batch takes what the model says.
  EXPECT_DOUBLE_EQ(CostProfile().ServiceRatio(0.7), 1.0);
}

TEST(PcieQueue, ForegroundMissesWaitBehindBackgroundBytes) {
  // 1 GB/s link: 1000 bytes per microsecond; background budget 0.25 GB/s.
  PcieQueue idle(1e9, 0.25e9);
  EXPECT_DOUBLE_EQ(idle.SubmitForeground(100, 50'000), 150);
  PcieQueue busy(1e9, 0.25e9);
  EXPECT_DOUBLE_EQ(busy.SubmitBackground(0, 100'000), 100);  // on the link for 100 us
  EXPECT_DOUBLE_EQ(busy.SubmitForeground(10, 50'000), 150);  // waits 90 us, then 50 us
  EXPECT_DOUBLE_EQ(busy.foreground_wait_us(), 90);
}

TEST(PcieQueue, BackgroundTrafficKeepsToItsBudget) {
  PcieQueue q(1e9, 0.25e9);
  double done = 0;
  for (int i = 0; i < 100; ++i) done = q.SubmitBackground(0, 10'000);
  // 1 MB at 0.25 GB/s is 4000 us, though the link alone would take 1000 us.
  EXPECT_NEAR(done, 99 * 40 + 10, 1e-6);
  EXPECT_EQ(q.background_bytes(), 1'000'000);
  // Between paced background chunks the link is free for foreground misses.
  PcieQueue q2(1e9, 0.25e9);
  q2.SubmitBackground(0, 10'000);                        // link busy [0, 10)
  q2.SubmitBackground(0, 10'000);                        // budget: starts at 40, busy [40, 50)
  EXPECT_DOUBLE_EQ(q2.SubmitForeground(20, 5'000), 55);  // submitted after: FIFO behind it
}

// Counts the kernel calls a forward makes (Synchronize and memory management excluded).
class CountingKernels : public model::Kernels {
 public:
  explicit CountingKernels(std::shared_ptr<const model::Kernels> in) : in_(std::move(in)) {}
  absl::string_view name() const override { return in_->name(); }
  absl::StatusOr<std::unique_ptr<model::KernelContext>> CreateContext() const override {
    return in_->CreateContext();
  }
  absl::StatusOr<void*> Allocate(size_t b) const override { return in_->Allocate(b); }
  void Free(void* p) const override { in_->Free(p); }
  absl::Status CopyToBackend(model::KernelContext& c, void* d, const void* s,
                             size_t b) const override {
    ++calls;
    return in_->CopyToBackend(c, d, s, b);
  }
  absl::Status CopyToHost(model::KernelContext& c, void* d, const void* s,
                          size_t b) const override {
    ++calls;
    return in_->CopyToHost(c, d, s, b);
  }
  absl::Status CopyWithin(model::KernelContext& c, void* d, const void* s,
                          size_t b) const override {
    ++calls;
    return in_->CopyWithin(c, d, s, b);
  }
  absl::Status Synchronize(model::KernelContext& c) const override { return in_->Synchronize(c); }
  absl::Status Gemm(model::KernelContext& c, int64_t m, int64_t n, int64_t k, const float* a,
                    int64_t lda, const float* b, const float* bias, float* out, int64_t ldc,
                    bool acc) const override {
    ++calls;
    return in_->Gemm(c, m, n, k, a, lda, b, bias, out, ldc, acc);
  }
  absl::Status BiasSilu(model::KernelContext& c, float* x, int64_t r, int64_t w,
                        const float* b) const override {
    ++calls;
    return in_->BiasSilu(c, x, r, w, b);
  }
  absl::Status LayerNorm(model::KernelContext& c, const float* x, float* y, int64_t r, int64_t w,
                         const float* g, const float* b) const override {
    ++calls;
    return in_->LayerNorm(c, x, y, r, w, g, b);
  }
  absl::Status LayerNormGate(model::KernelContext& c, const float* o, const float* u, int64_t us,
                             float* out, int64_t r, int64_t w, const float* g,
                             const float* b) const override {
    ++calls;
    return in_->LayerNormGate(c, o, u, us, out, r, w, g, b);
  }
  absl::Status AddRows(model::KernelContext& c, float* x, int64_t r, int64_t w, const float* t,
                       const int32_t* ids) const override {
    ++calls;
    return in_->AddRows(c, x, r, w, t, ids);
  }
  absl::Status CopyColumns(model::KernelContext& c, const float* s, int64_t ss, int64_t col,
                           int64_t r, int64_t w, float* d) const override {
    ++calls;
    return in_->CopyColumns(c, s, ss, col, r, w, d);
  }
  absl::Status RowDot(model::KernelContext& c, const float* a, const float* b, int64_t r, int64_t w,
                      float* o) const override {
    ++calls;
    return in_->RowDot(c, a, b, r, w, o);
  }
  absl::Status Attention(model::KernelContext& c, const model::AttentionArgs& a) const override {
    ++calls;
    return in_->Attention(c, a);
  }
  absl::Status GatherEmbeddings(model::KernelContext& c,
                                const model::GatherArgs& a) const override {
    ++calls;
    return in_->GatherEmbeddings(c, a);
  }
  absl::Status AppendKv(model::KernelContext& c, const model::AppendArgs& a) const override {
    return in_->AppendKv(c, a);
  }
  absl::Status RelocateBlocks(model::KernelContext& c, void* arena, const int64_t* s,
                              const int64_t* d, int64_t n, int64_t bytes) const override {
    return in_->RelocateBlocks(c, arena, s, d, n, bytes);
  }
  mutable int64_t calls = 0;

 private:
  std::shared_ptr<const model::Kernels> in_;
};

// Users of the demo model with their cached prefixes in blocks and their embeddings in one arena,
// gathered by location, as a node hands them to the forward.
class Fixture {
 public:
  Fixture(std::shared_ptr<const model::Kernels> kernels, uint64_t seed, int32_t microbatch = 64)
      : dims_(DemoDims()), rng_(seed) {
    std::shared_ptr<const model::Weights> w(model::Weights::Random(dims_, seed));
    model_ = *model::Model::Create(w, std::move(kernels), microbatch);
    ws_ = *model_->NewWorkspace();
    arena_.resize(4096 * dims_.emb_dim);
    std::normal_distribution<float> normal;
    for (float& v : arena_) v = normal(rng_);
  }

  // Adds a user with `length` events of which `cached` are cached, and `candidates` candidates.
  void AddUser(int64_t length, int64_t cached, int64_t candidates) {
    auto u = std::make_unique<User>();
    int64_t t = 1700000000;
    for (int64_t i = 0; i < length; ++i) {
      u->actions.push_back(static_cast<int32_t>(rng_() % dims_.num_actions));
      t += static_cast<int64_t>(rng_() % 3600);
      u->timestamps.push_back(t);
    }
    const int64_t row_bytes = sizeof(float) * dims_.emb_dim;
    for (int64_t i = 0; i < length; ++i) u->hist_locs.push_back((rng_() % 4096) * row_bytes);
    for (int64_t i = 0; i < candidates; ++i) u->cand_locs.push_back((rng_() % 4096) * row_bytes);
    const int64_t nblocks = (length + dims_.tokens_per_block - 1) / dims_.tokens_per_block;
    u->blocks.resize(std::max<int64_t>(1, nblocks * dims_.block_bytes()));
    for (int64_t b = 0; b < nblocks; ++b)
      u->table.push_back(u->blocks.data() + b * dims_.block_bytes());
    u->ctable.assign(u->table.begin(), u->table.end());
    if (cached > 0) {
      model::ForwardRequest prefix;
      prefix.actions = absl::MakeConstSpan(u->actions.data(), cached);
      prefix.timestamps = absl::MakeConstSpan(u->timestamps.data(), cached);
      prefix.suffix = {nullptr, arena_.data(), nullptr, u->hist_locs.data()};
      EXPECT_TRUE(model_->Forward(*ws_, prefix).ok());
      EXPECT_TRUE(model_->AppendKv(*ws_, u->table, 0, cached).ok());
    }
    model::ForwardRequest& f = u->request;
    f.actions = u->actions;
    f.timestamps = u->timestamps;
    f.cached_tokens = cached;
    f.cached_blocks = u->ctable;
    f.suffix = {nullptr, arena_.data(), nullptr, u->hist_locs.data() + cached};
    f.candidates = {nullptr, arena_.data(), nullptr, u->cand_locs.data()};
    f.num_candidates = candidates;
    work_.requests.push_back(
        {length - cached, cached, candidates, length - cached + candidates, 0});
    users_.push_back(std::move(u));
  }

  std::vector<model::ForwardRequest> Batch() const {
    std::vector<model::ForwardRequest> b;
    for (const auto& u : users_) b.push_back(u->request);
    return b;
  }
  void Run() { ASSERT_TRUE(model_->ForwardBatch(*ws_, Batch()).ok()); }
  const BatchWork& work() const { return work_; }
  const model::ModelDims& dims() const { return dims_; }
  int32_t microbatch() const { return model_->candidate_microbatch(); }

 private:
  struct User {
    std::vector<int32_t> actions;
    std::vector<int64_t> timestamps;
    std::vector<int64_t> hist_locs, cand_locs;
    std::vector<char> blocks;
    std::vector<void*> table;
    std::vector<const void*> ctable;
    model::ForwardRequest request;
  };
  model::ModelDims dims_;
  std::mt19937_64 rng_;
  std::unique_ptr<model::Model> model_;
  std::unique_ptr<model::Workspace> ws_;
  std::vector<float> arena_;
  std::vector<std::unique_ptr<User>> users_;
  BatchWork work_;
};

TEST(CostModel, KernelLaunchesMatchTheForwardsCalls) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 6; ++trial) {
    auto counting = std::make_shared<CountingKernels>(*model::CreateKernels("cpu", 1));
    const int32_t mb = 1 + static_cast<int32_t>(rng() % 80);
    Fixture f(counting, seed + trial, mb);
    const int users = 1 + static_cast<int>(rng() % 4);
    for (int u = 0; u < users; ++u) {
      const int64_t length = static_cast<int64_t>(rng() % 200);
      const int64_t cached = length == 0 ? 0 : static_cast<int64_t>(rng() % (length + 1));
      f.AddUser(length, cached, static_cast<int64_t>(rng() % 150));
    }
    counting->calls = 0;
    f.Run();
    EXPECT_EQ(KernelLaunches(f.dims(), f.work(), mb, /*on_device=*/false), counting->calls)
        << "seed " << seed << " trial " << trial << " microbatch " << mb;
  }
}

double ThreadCpuUs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return 1e6 * static_cast<double>(ts.tv_sec) + 1e-3 * static_cast<double>(ts.tv_nsec);
}

// Fidelity: the committed CPU calibration predicts real CPU forwards of the demo model within a
// stated factor of their measured median (thread CPU time, so other processes on a shared machine
// do not count). The bound leaves margin for a shared machine over the errors measured when the
// calibration was written (see configs/calibration/README.md).
TEST(CostModelFidelity, CommittedCpuCalibrationPredictsRealForwards) {
  constexpr double kFactor = 2.0;
  auto profile = LoadCalibration(HELM_SOURCE_DIR "/configs/calibration/cpu-dev.json");
  ASSERT_TRUE(profile.ok()) << profile.status();
  struct Shape {
    const char* what;
    std::vector<std::array<int64_t, 3>> users;  // length, cached, candidates
  };
  const Shape shapes[] = {
      {"returning user, 128 candidates", {{512, 500, 128}}},
      {"cold user, 64 candidates", {{256, 0, 64}}},
      {"batch of 4", {{300, 290, 128}, {700, 680, 128}, {128, 0, 128}, {1000, 990, 128}}},
  };
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  for (const Shape& s : shapes) {
    Fixture f(*model::CreateKernels("cpu", 1), seed);
    for (const auto& [l, c, n] : s.users) f.AddUser(l, c, n);
    auto cost = CostModel::Create(f.dims(), *profile, f.microbatch());
    ASSERT_TRUE(cost.ok()) << cost.status();
    const double predicted = cost->BatchTimeUs(f.work());
    f.Run();  // warm
    std::vector<double> t;
    for (int i = 0; i < 9; ++i) {
      const double t0 = ThreadCpuUs();
      f.Run();
      t.push_back(ThreadCpuUs() - t0);
    }
    std::sort(t.begin(), t.end());
    const double measured = t[t.size() / 2];
    const double ratio = predicted / measured;
    std::printf("fidelity %-32s predicted %8.1f us, measured %8.1f us, ratio %.2f\n", s.what,
                predicted, measured, ratio);
    EXPECT_LT(ratio, kFactor) << s.what << ": predicted " << predicted << " us, measured "
                              << measured << " us";
    EXPECT_GT(ratio, 1 / kFactor) << s.what << ": predicted " << predicted << " us, measured "
                                  << measured << " us";
  }
}

}  // namespace
}  // namespace helm::sim

// The CPU path's speed depends on the OpenBLAS kernels chosen at load time; pick the fast ones as
// the benchmarks and the node do, so the fidelity test measures what the calibration measured.
int main(int argc, char** argv) {
  helm::kernels::cpu::ReexecWithFastBlasIfNeeded(argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
