// helm_bench_model: the HSTU runtime's headline speed figures, each measured side by side in one
// run and reported as a ratio (HELM_RESULT lines at the end).
//
// CPU (fast path unless noted), production-style model (DESIGN.md §10: 3 layers, 4 heads,
// d_qk = d_v = 128, D = 512, item embeddings of 256 projected to D), fp32 K/V, one thread, all
// 128 candidates in one M-FALCON microbatch:
//   cached_vs_full_speedup     history 2048, 95% cached, 128 candidates: full recompute time
//                              over cached time (median over interleaved full/cached runs).
//   fast_vs_reference_speedup  the cached request on the plain C++ reference over the fast path.
//   dense_flops_vs_sgemm_peak  FLOP rate of the forward's dense layers (the Gemm calls of a full
//                              recompute) over OpenBLAS sgemm at 2048^3 in the same run (the
//                              fastest of several runs of each).
// CPU, demo model (configs/local.yaml: 2 layers, 2 heads, D = 64), one thread:
//   batched_forward_vs_sequential_throughput  8 node-like requests as one ForwardBatch over the
//                              same 8 as Forward calls: throughput ratio, in thread CPU time
//                              (median of alternated pairs), with a breakdown of each.
// GPU (when a CUDA device is visible):
//   paged_attention_bw_vs_d2d_copy  effective bandwidth of paged attention (8 candidate queries,
//                              one query tile, over 16384 cached tokens: each K/V byte counted
//                              once) over a device-to-device copy (bytes read + written).
//   gpu_cached_vs_full_speedup, gpu_vs_cpu_cached_speedup   the CPU request on the GPU.
// Flags: --gpu-only (skip the CPU part), --batch-only (only the batching figure), --quick (small
// sizes, a smoke run), --calibrate FILE (measure the simulator's cost-model coefficients on the
// CPU path, or with --gpu-only on the CUDA path, and write them to FILE as JSON; see
// RunCalibrate).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "cpu/blas_core.h"
#include "helm/common/process.h"
#include "helm/model/kernels.h"
#include "helm/model/model.h"
#include "helm/pool/storage.h"
#include "helm/sim/calibration.h"
#include "helm/sim/cost_model.h"

namespace helm::model {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU seconds of the calling thread: on a shared machine, time the thread was not scheduled does
// not count (the single-threaded CPU figures below are work, not waiting).
double ThreadCpuNow() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Median wall time of `reps` runs of fn (after one warm-up run when warm is set).
double MedianSeconds(int reps, const std::function<void()>& fn, bool warm = true) {
  if (warm) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const double t0 = Now();
    fn();
    t.push_back(Now() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "helm_bench_model: %s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}
template <typename T>
T Check(absl::StatusOr<T> v, const char* what) {
  Check(v.status(), what);
  return std::move(*v);
}

// Forwards every call to a kernel path, timing the dense Gemm calls (host-synchronous paths).
class TimedKernels : public Kernels {
 public:
  // `clock`: seconds, wall time (Now) or the thread's CPU time (ThreadCpuNow).
  explicit TimedKernels(std::shared_ptr<const Kernels> inner, double (*clock)() = Now)
      : in_(std::move(inner)), clock_(clock) {}
  absl::string_view name() const override { return in_->name(); }
  bool on_device() const override { return in_->on_device(); }
  absl::StatusOr<std::unique_ptr<KernelContext>> CreateContext() const override {
    return in_->CreateContext();
  }
  absl::StatusOr<void*> Allocate(size_t b) const override { return in_->Allocate(b); }
  void Free(void* p) const override { in_->Free(p); }
  absl::Status CopyToBackend(KernelContext& c, void* d, const void* s, size_t b) const override {
    return in_->CopyToBackend(c, d, s, b);
  }
  absl::Status CopyToHost(KernelContext& c, void* d, const void* s, size_t b) const override {
    return in_->CopyToHost(c, d, s, b);
  }
  absl::Status CopyWithin(KernelContext& c, void* d, const void* s, size_t b) const override {
    const double t0 = clock_();
    absl::Status st = in_->CopyWithin(c, d, s, b);
    other_seconds += clock_() - t0;
    return st;
  }
  absl::Status Synchronize(KernelContext& c) const override { return in_->Synchronize(c); }
  absl::Status Gemm(KernelContext& c, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                    const float* b, const float* bias, float* out, int64_t ldc,
                    bool acc) const override {
    const double t0 = clock_();
    absl::Status s = in_->Gemm(c, m, n, k, a, lda, b, bias, out, ldc, acc);
    gemm_seconds += clock_() - t0;
    return s;
  }
  absl::Status BiasSilu(KernelContext& c, float* x, int64_t r, int64_t w,
                        const float* b) const override {
    const double t0 = clock_();
    absl::Status st = in_->BiasSilu(c, x, r, w, b);
    other_seconds += clock_() - t0;
    return st;
  }
  absl::Status LayerNorm(KernelContext& c, const float* x, float* y, int64_t r, int64_t w,
                         const float* g, const float* b) const override {
    const double t0 = clock_();
    absl::Status st = in_->LayerNorm(c, x, y, r, w, g, b);
    other_seconds += clock_() - t0;
    return st;
  }
  absl::Status LayerNormGate(KernelContext& c, const float* o, const float* u, int64_t us,
                             float* out, int64_t r, int64_t w, const float* g,
                             const float* b) const override {
    const double t0 = clock_();
    absl::Status st = in_->LayerNormGate(c, o, u, us, out, r, w, g, b);
    other_seconds += clock_() - t0;
    return st;
  }
  absl::Status AddRows(KernelContext& c, float* x, int64_t r, int64_t w, const float* t,
                       const int32_t* ids) const override {
    const double t0 = clock_();
    absl::Status st = in_->AddRows(c, x, r, w, t, ids);
    other_seconds += clock_() - t0;
    return st;
  }
  absl::Status CopyColumns(KernelContext& c, const float* s, int64_t ss, int64_t col, int64_t r,
                           int64_t w, float* d) const override {
    const double t0 = clock_();
    absl::Status st = in_->CopyColumns(c, s, ss, col, r, w, d);
    other_seconds += clock_() - t0;
    return st;
  }
  absl::Status RowDot(KernelContext& c, const float* a, const float* b, int64_t r, int64_t w,
                      float* o) const override {
    const double t0 = clock_();
    absl::Status st = in_->RowDot(c, a, b, r, w, o);
    other_seconds += clock_() - t0;
    return st;
  }
  absl::Status Attention(KernelContext& c, const AttentionArgs& a) const override {
    const double t0 = clock_();
    absl::Status s = in_->Attention(c, a);
    attention_seconds += clock_() - t0;
    return s;
  }
  absl::Status GatherEmbeddings(KernelContext& c, const GatherArgs& a) const override {
    return in_->GatherEmbeddings(c, a);
  }
  absl::Status AppendKv(KernelContext& c, const AppendArgs& a) const override {
    return in_->AppendKv(c, a);
  }
  absl::Status RelocateBlocks(KernelContext& c, void* arena, const int64_t* s, const int64_t* d,
                              int64_t n, int64_t bytes) const override {
    return in_->RelocateBlocks(c, arena, s, d, n, bytes);
  }

  mutable double gemm_seconds = 0.0;
  mutable double attention_seconds = 0.0;
  mutable double other_seconds = 0.0;  // LayerNorm, SiLU, gating, copies

 private:
  std::shared_ptr<const Kernels> in_;
  double (*clock_)();
};

ModelDims ProductionDims() {
  ModelDims d;
  d.num_layers = 3;
  d.num_heads = 4;
  d.d_qk = 128;
  d.d_v = 128;
  d.d_model = 512;
  d.emb_dim = 256;
  d.num_actions = 16;
  d.position_buckets = 32;
  d.time_buckets = 32;
  d.tokens_per_block = 16;
  return d;
}

// A user's history and candidates, their embeddings in host memory.
struct Request {
  std::vector<int32_t> actions;
  std::vector<int64_t> timestamps;
  std::vector<float> history_emb, candidate_emb;
};

Request MakeRequest(const ModelDims& d, int64_t length, int64_t candidates, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  Request r;
  int64_t t = 1700000000;
  for (int64_t i = 0; i < length; ++i) {
    r.actions.push_back(static_cast<int32_t>(rng() % d.num_actions));
    t += static_cast<int64_t>(rng() % 3600);
    r.timestamps.push_back(t);
  }
  r.history_emb.resize(length * d.emb_dim);
  r.candidate_emb.resize(candidates * d.emb_dim);
  for (auto& v : r.history_emb) v = normal(rng);
  for (auto& v : r.candidate_emb) v = normal(rng);
  return r;
}

// Candidates per M-FALCON microbatch: all 128 in one, so each layer reads the history K/V once.
constexpr int32_t kMicrobatch = 128;

// One model + workspace + a user's cached blocks, on one kernel path.
class Runner {
 public:
  Runner(std::shared_ptr<const Weights> weights, std::shared_ptr<const Kernels> kernels,
         const Request& r, int64_t candidates)
      : r_(r), candidates_(candidates) {
    model_ = Check(Model::Create(std::move(weights), std::move(kernels), kMicrobatch), "model");
    ws_ = Check(model_->NewWorkspace(), "workspace");
    const ModelDims& d = model_->dims();
    const Kernels& k = model_->kernels();
    const int64_t L = static_cast<int64_t>(r.actions.size());
    hist_ = Upload(r.history_emb.data(), sizeof(float) * r.history_emb.size());
    cand_ = Upload(r.candidate_emb.data(), sizeof(float) * r.candidate_emb.size());
    const int64_t blocks = (L + d.tokens_per_block - 1) / d.tokens_per_block;
    arena_ = Check(k.Allocate(d.block_bytes() * blocks), "kv arena");
    for (int64_t b = 0; b < blocks; ++b) {
      table_.push_back(static_cast<char*>(arena_) + b * d.block_bytes());
    }
  }
  ~Runner() {
    const Kernels& k = model_->kernels();
    k.Free(hist_);
    k.Free(cand_);
    k.Free(arena_);
  }

  // Forward over the whole history with `cached` tokens cached; when `append`, the computed
  // suffix goes to the blocks (used once to build the cache).
  std::vector<float> Forward(int64_t length, int64_t cached, int64_t candidates, bool append) {
    const ModelDims& d = model_->dims();
    ForwardRequest req;
    req.actions = absl::MakeConstSpan(r_.actions.data(), length);
    req.timestamps = absl::MakeConstSpan(r_.timestamps.data(), length);
    req.cached_tokens = cached;
    std::vector<const void*> blocks(table_.begin(), table_.end());
    req.cached_blocks = blocks;
    req.suffix.rows = static_cast<const float*>(hist_) + cached * d.emb_dim;
    req.candidates.rows = static_cast<const float*>(cand_);
    req.num_candidates = candidates;
    ForwardResult result = Check(model_->Forward(*ws_, req), "forward");
    if (append) Check(model_->AppendKv(*ws_, table_, cached, length - cached), "append");
    return result.scores;
  }
  void Cache(int64_t tokens) { Forward(tokens, 0, 0, true); }
  const Model& model() const { return *model_; }
  Workspace& ws() { return *ws_; }

 private:
  void* Upload(const void* host, size_t bytes) {
    const Kernels& k = model_->kernels();
    void* p = Check(k.Allocate(bytes), "allocate");
    Check(k.CopyToBackend(ws_->context(), p, host, bytes), "upload");
    Check(k.Synchronize(ws_->context()), "sync");
    return p;
  }
  const Request& r_;
  int64_t candidates_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Workspace> ws_;
  void* hist_ = nullptr;
  void* cand_ = nullptr;
  void* arena_ = nullptr;
  std::vector<void*> table_;
};

double MaxRelErr(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0.0, ref = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double{a[i]} - b[i]));
    ref = std::max(ref, std::abs(double{b[i]}));
  }
  return diff / ref;
}

// Seconds of one sgemm of n^3 (row-major, single-threaded OpenBLAS as set up by the CPU path).
class SgemmProbe {
 public:
  explicit SgemmProbe(int n)
      : n_(n), a_(size_t(n) * n, 0.5f), b_(size_t(n) * n, 0.25f), c_(size_t(n) * n) {}
  double RunSeconds() {
    const double t0 = Now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n_, n_, n_, 1.0f, a_.data(), n_,
                b_.data(), n_, 0.0f, c_.data(), n_);
    return Now() - t0;
  }
  double Gflops(double seconds) const { return 2.0 * n_ * n_ * double(n_) / seconds / 1e9; }
  int n() const { return n_; }

 private:
  int n_;
  std::vector<float> a_, b_, c_;
};

struct Results {
  std::vector<std::pair<std::string, double>> lines;
  void Add(const std::string& name, double v) { lines.emplace_back(name, v); }
};

void RunCpu(bool quick, Results& out) {
  const ModelDims dims = ProductionDims();
  const int64_t L = quick ? 512 : 2048;
  const int64_t C = quick ? 32 : 128;
  const int64_t P = (L * 95 + 50) / 100;  // 95% cached
  const Request r = MakeRequest(dims, L, C, 7);
  std::shared_ptr<const Weights> weights(Weights::Random(dims, 7));
  auto timed = std::make_shared<TimedKernels>(Check(CreateKernels("cpu", 1), "cpu kernels"));
  Runner fast(weights, timed, r, C);
  Runner ref(weights, Check(CreateKernels("reference"), "reference kernels"), r, C);
  fast.Cache(P);
  ref.Cache(P);
  std::printf(
      "CPU, one thread, production-style model: %d layers, %d heads, d_qk=d_v=%d, D=%d, "
      "emb %d -> D; history %lld (%lld cached), %lld candidates, fp32 K/V\n",
      dims.num_layers, dims.num_heads, dims.d_qk, dims.d_model, dims.emb_dim,
      static_cast<long long>(L), static_cast<long long>(P), static_cast<long long>(C));

  std::vector<float> full_scores, cached_scores, ref_scores;
  // Full and cached runs interleaved, so that load from other processes on a shared machine
  // hits both alike; medians of each.
  full_scores = fast.Forward(L, 0, C, false);
  cached_scores = fast.Forward(L, P, C, false);
  std::vector<double> full_t, cached_t, ratios;
  for (int i = 0; i < (quick ? 3 : 9); ++i) {
    double t0 = Now();
    fast.Forward(L, 0, C, false);
    full_t.push_back(Now() - t0);
    double pair = 0.0;
    for (int j = 0; j < 2; ++j) {
      t0 = Now();
      fast.Forward(L, P, C, false);
      cached_t.push_back(Now() - t0);
      pair += cached_t.back() / 2;
    }
    ratios.push_back(full_t.back() / pair);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double full_s = median(full_t);
  const double cached_s = median(cached_t);
  // The headline ratio: median over iterations of (full run) / (the two cached runs next to it).
  const double cached_speedup = median(ratios);
  // Breakdowns: the fastest of three timed runs of each (noise on a shared machine only adds).
  struct Breakdown {
    double total = 1e30, gemm = 0, attention = 0, other = 0;
  };
  // sgemm runs alternate with the full-recompute runs, so that both see the same machine.
  SgemmProbe sgemm(quick ? 1024 : 2048);
  sgemm.RunSeconds();
  double sgemm_best_s = 1e30;
  auto breakdown = [&](int64_t cached) {
    Breakdown best;
    for (int i = 0; i < 3; ++i) {
      if (cached == 0) sgemm_best_s = std::min(sgemm_best_s, sgemm.RunSeconds());
      timed->gemm_seconds = timed->attention_seconds = timed->other_seconds = 0;
      const double t0 = Now();
      fast.Forward(L, cached, C, false);
      const double total = Now() - t0;
      if (total < best.total) {
        best = {total, timed->gemm_seconds, timed->attention_seconds, timed->other_seconds};
      }
    }
    return best;
  };
  const Breakdown full_b = breakdown(0);
  const Breakdown cached_b = breakdown(P);
  const double full_timed_s = full_b.total, full_gemm_s = full_b.gemm;
  const double full_attn_s = full_b.attention, full_other_s = full_b.other;
  const double cached_timed_s = cached_b.total, cached_gemm_s = cached_b.gemm;
  const double cached_attn_s = cached_b.attention, cached_other_s = cached_b.other;
  const double ref_s = MedianSeconds(
      1, [&] { ref_scores = ref.Forward(L, P, C, false); }, false);

  const double dense_gflops = 2.0 * fast.model().DenseMacs(L, C) / full_gemm_s / 1e9;
  const double cached_dense_gflops = 2.0 * fast.model().DenseMacs(L - P, C) / cached_gemm_s / 1e9;
  const double peak = sgemm.Gflops(sgemm_best_s);

  std::printf(
      "  full recompute   %9.2f ms median; fastest timed run %.2f ms = dense %.2f + attention "
      "%.2f + norms/SiLU/copies %.2f + rest\n",
      full_s * 1e3, full_timed_s * 1e3, full_gemm_s * 1e3, full_attn_s * 1e3, full_other_s * 1e3);
  std::printf(
      "  95%% cached       %9.2f ms median; fastest timed run %.2f ms = dense %.2f + attention "
      "%.2f + norms/SiLU/copies %.2f + rest\n",
      cached_s * 1e3, cached_timed_s * 1e3, cached_gemm_s * 1e3, cached_attn_s * 1e3,
      cached_other_s * 1e3);
  std::printf("  reference cached %9.2f ms\n", ref_s * 1e3);
  std::printf("  scores: cached vs full max rel err %.2e, fast vs reference %.2e\n",
              MaxRelErr(cached_scores, full_scores), MaxRelErr(cached_scores, ref_scores));
  std::printf(
      "  dense layers %.1f GFLOP/s (full), %.1f GFLOP/s (cached); sgemm %d^3 %.1f GFLOP/s\n",
      dense_gflops, cached_dense_gflops, sgemm.n(), peak);
  out.Add("cached_vs_full_speedup", cached_speedup);
  out.Add("fast_vs_reference_speedup", ref_s / cached_s);
  out.Add("dense_flops_vs_sgemm_peak", dense_gflops / peak);
}

// The demo model of configs/local.yaml (2 layers, 2 heads, d_qk = d_v = 32, D = 64, item
// embeddings of 64, 16 tokens per block, fp32): the model, emb and kv options' defaults.
ModelDims DemoDims() { return *DimsFromOptions({}, {}, {}); }

// batched_forward_vs_sequential_throughput: a batch of 8 requests of the demo model as one
// ForwardBatch versus the same 8 as Forward calls one after another, on one workspace and one
// thread, alternated (and which goes first alternates too); the median over pairs of (sequential
// time) / (batched time), in the thread's CPU time: what a saturated worker's throughput depends
// on, and steady on a shared machine where wall time is not. The
// requests look like a node's (configs/local.yaml's workload): returning users with histories of
// 64..1024 events, most of them cached (a suffix of 1..48 new events), one cold user, 128
// candidates each, embeddings gathered by location from an arena as the node's EMB cache hands
// them over.
void RunBatch(bool quick, Results& out) {
  const ModelDims dims = DemoDims();
  constexpr int kBatch = 8;
  const int64_t C = 128;
  std::shared_ptr<const Weights> weights(Weights::Random(dims, 7));
  auto cpu = Check(CreateKernels("cpu", 1), "cpu kernels");
  auto model = Check(Model::Create(weights, cpu, 64), "model");
  auto ws = Check(model->NewWorkspace(), "workspace");
  // The same model with timed kernel calls, for the breakdown only (its timers cost a little per
  // call, which would favour the batch with its fewer calls).
  auto timed = std::make_shared<TimedKernels>(cpu);
  auto timed_model = Check(Model::Create(weights, timed, 64), "timed model");
  auto timed_ws = Check(timed_model->NewWorkspace(), "workspace");
  std::mt19937_64 rng(11);
  // One embedding arena for every request's rows (the EMB cache's), rows in a shuffled order.
  struct User {
    Request r;
    int64_t length = 0, cached = 0;
    std::vector<int64_t> suffix_locs, cand_locs;
    std::vector<char> blocks_mem;
    std::vector<void*> table;
  };
  std::vector<User> users(kBatch);
  int64_t rows = 0;
  for (int i = 0; i < kBatch; ++i) {
    User& u = users[i];
    u.length = 64 + static_cast<int64_t>(rng() % (quick ? 256 : 961));
    u.cached = i == 3 ? 0 : u.length - 1 - static_cast<int64_t>(rng() % 48);
    u.r = MakeRequest(dims, u.length, C, 100 + i);
    rows += u.length + C;
  }
  const int64_t row_bytes = sizeof(float) * dims.emb_dim;
  std::vector<int64_t> slots(rows);
  for (int64_t i = 0; i < rows; ++i) slots[i] = i;
  std::shuffle(slots.begin(), slots.end(), rng);
  std::vector<float> arena(rows * dims.emb_dim);
  int64_t next = 0;
  for (User& u : users) {
    auto place = [&](const float* row) {
      const int64_t slot = slots[next++];
      std::memcpy(arena.data() + slot * dims.emb_dim, row, row_bytes);
      return slot * row_bytes;
    };
    for (int64_t t = 0; t < u.length; ++t) {
      const int64_t loc = place(u.r.history_emb.data() + t * dims.emb_dim);
      if (t >= u.cached) u.suffix_locs.push_back(loc);
    }
    for (int64_t c = 0; c < C; ++c)
      u.cand_locs.push_back(place(u.r.candidate_emb.data() + c * dims.emb_dim));
    // The cached prefix in blocks, built as a node does: a cold forward of the prefix, appended.
    const int64_t nblocks = (u.length + dims.tokens_per_block - 1) / dims.tokens_per_block;
    u.blocks_mem.resize(nblocks * dims.block_bytes());
    for (int64_t b = 0; b < nblocks; ++b)
      u.table.push_back(u.blocks_mem.data() + b * dims.block_bytes());
    if (u.cached > 0) {
      ForwardRequest prefix;
      prefix.actions = absl::MakeConstSpan(u.r.actions.data(), u.cached);
      prefix.timestamps = absl::MakeConstSpan(u.r.timestamps.data(), u.cached);
      prefix.suffix.rows = u.r.history_emb.data();
      Check(model->Forward(*ws, prefix).status(), "prefix forward");
      Check(model->AppendKv(*ws, u.table, 0, u.cached), "prefix append");
    }
  }
  std::vector<std::vector<const void*>> tables;
  std::vector<ForwardRequest> batch(kBatch);
  int64_t suffix_tokens = 0;
  for (int i = 0; i < kBatch; ++i) {
    const User& u = users[i];
    tables.emplace_back(u.table.begin(), u.table.end());
    ForwardRequest& f = batch[i];
    f.actions = u.r.actions;
    f.timestamps = u.r.timestamps;
    f.cached_tokens = u.cached;
    f.cached_blocks = tables.back();
    f.suffix = {nullptr, arena.data(), nullptr, u.suffix_locs.data()};
    f.candidates = {nullptr, arena.data(), nullptr, u.cand_locs.data()};
    f.num_candidates = C;
    suffix_tokens += u.length - u.cached;
  }

  std::vector<float> seq_scores, batch_scores;
  const Model* run_model = model.get();
  Workspace* run_ws = ws.get();
  auto sequential = [&] {
    seq_scores.clear();
    for (const ForwardRequest& f : batch) {
      ForwardResult r = Check(run_model->Forward(*run_ws, f), "forward");
      seq_scores.insert(seq_scores.end(), r.scores.begin(), r.scores.end());
    }
  };
  auto batched = [&] {
    batch_scores.clear();
    for (ForwardResult& r : Check(run_model->ForwardBatch(*run_ws, batch), "forward batch")) {
      batch_scores.insert(batch_scores.end(), r.scores.begin(), r.scores.end());
    }
  };
  sequential();
  batched();
  // Alternated, several forwards per timing so that one timing is milliseconds long; the ratio of
  // each adjacent pair, median over pairs (load from other processes hits both alike).
  const int inner = quick ? 2 : 5;
  std::vector<double> seq_t, batch_t, ratios;
  for (int i = 0; i < (quick ? 5 : 31); ++i) {
    // Which runs first alternates too.
    for (int order = 0; order < 2; ++order) {
      const bool seq = (order == 0) == (i % 2 == 0);
      const double t0 = ThreadCpuNow();
      for (int j = 0; j < inner; ++j) seq ? sequential() : batched();
      (seq ? seq_t : batch_t).push_back((ThreadCpuNow() - t0) / inner);
    }
    ratios.push_back(seq_t.back() / batch_t.back());
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  // Where the time goes (wall time of the timed model's calls): the fastest of several runs.
  run_model = timed_model.get();
  run_ws = timed_ws.get();
  struct Breakdown {
    double total = 1e30, gemm = 0, attention = 0, other = 0;
  };
  auto breakdown = [&](const std::function<void()>& fn) {
    Breakdown best;
    for (int i = 0; i < 15; ++i) {
      timed->gemm_seconds = timed->attention_seconds = timed->other_seconds = 0;
      const double t0 = Now();
      fn();
      const double total = Now() - t0;
      if (total < best.total) {
        best = {total, timed->gemm_seconds, timed->attention_seconds, timed->other_seconds};
      }
    }
    return best;
  };
  const Breakdown seq_b = breakdown(sequential);
  const Breakdown batch_b = breakdown(batched);
  std::printf(
      "CPU, one thread, demo model (%d layers, %d heads, d=%d, D=%d): %d requests, %lld suffix "
      "tokens and %lld candidates in all\n",
      dims.num_layers, dims.num_heads, dims.d_qk, dims.d_model, kBatch,
      static_cast<long long>(suffix_tokens), static_cast<long long>(C * kBatch));
  std::printf(
      "  8 x Forward %.3f ms median, ForwardBatch of 8 %.3f ms median (%.0f vs %.0f requests/s); "
      "scores max rel diff %.2e\n",
      median(seq_t) * 1e3, median(batch_t) * 1e3, kBatch / median(seq_t), kBatch / median(batch_t),
      MaxRelErr(batch_scores, seq_scores));
  for (const auto& [name, b] : {std::pair<const char*, Breakdown>{"8 x Forward ", seq_b},
                                std::pair<const char*, Breakdown>{"ForwardBatch", batch_b}}) {
    std::printf(
        "  %s fastest run %.3f ms = dense %.3f + attention %.3f + norms/SiLU/copies %.3f + "
        "rest %.3f\n",
        name, b.total * 1e3, b.gemm * 1e3, b.attention * 1e3, b.other * 1e3,
        (b.total - b.gemm - b.attention - b.other) * 1e3);
  }
  out.Add("batched_forward_vs_sequential_throughput", median(ratios));
}

void RunGpu(bool quick, Results& out) {
  auto gpu = Check(CreateKernels("cuda"), "cuda kernels");
  auto ctx = Check(gpu->CreateContext(), "cuda context");
  const ModelDims dims = ProductionDims();

  // Device-to-device copy bandwidth (bytes read + written).
  const size_t copy_bytes = size_t{256} << 20;
  void* a = Check(gpu->Allocate(copy_bytes), "alloc");
  void* b = Check(gpu->Allocate(copy_bytes), "alloc");
  const double copy_s = MedianSeconds(10, [&] {
    Check(gpu->CopyWithin(*ctx, b, a, copy_bytes), "copy");
    Check(gpu->Synchronize(*ctx), "sync");
  });
  const double copy_gbs = 2.0 * copy_bytes / copy_s / 1e9;
  gpu->Free(a);
  gpu->Free(b);

  // Paged attention: every token cached in blocks; 8 candidate queries (one query tile). 65536
  // tokens: the layer's K/V read per call (128 MiB in bf16) is several times an H100's 50 MB L2,
  // so the figure is HBM bandwidth, not L2 hits across repetitions.
  const int64_t tokens = quick ? 4096 : 65536;
  const int64_t nblocks = tokens / dims.tokens_per_block;
  std::printf("GPU: paged attention over %lld cached tokens, %d heads, d=%d\n",
              static_cast<long long>(tokens), dims.num_heads, dims.d_qk);
  for (Dtype dtype : {Dtype::kFp32, Dtype::kBf16}) {
    ModelDims d = dims;
    d.kv_dtype = dtype;
    void* arena = Check(gpu->Allocate(d.block_bytes() * nblocks), "arena");
    // Random values for a tile of blocks, copied over the whole arena (values do not change the
    // work; a host fill of every block would take seconds).
    const int64_t tile_blocks = std::min<int64_t>(nblocks, 256);
    std::vector<char> fill(d.block_bytes() * tile_blocks);
    std::mt19937 rng(3);
    for (int64_t i = 0; i < d.block_elems() * tile_blocks; ++i) {
      StoreFromFloat(fill.data(), dtype, i, static_cast<float>(rng() % 2001) / 1000.0f - 1.0f);
    }
    for (int64_t first = 0; first < nblocks; first += tile_blocks) {
      const int64_t n = std::min(tile_blocks, nblocks - first);
      Check(gpu->CopyToBackend(*ctx, static_cast<char*>(arena) + first * d.block_bytes(),
                               fill.data(), n * d.block_bytes()),
            "fill");
    }
    std::vector<const void*> table;
    // Blocks in a shuffled order, as a pool hands them out.
    std::vector<int64_t> order(nblocks);
    for (int64_t i = 0; i < nblocks; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937_64(5));
    for (int64_t i : order) table.push_back(static_cast<char*>(arena) + i * d.block_bytes());
    std::vector<int64_t> ts(tokens);
    for (int64_t i = 0; i < tokens; ++i) ts[i] = 1000 + 60 * i;
    const int64_t q = 8;
    const int64_t stride = d.uvqk_width();
    std::vector<float> qhost(q * stride, 0.01f), bias(d.num_heads * 32, 0.1f);
    void* d_table = Check(gpu->Allocate(sizeof(void*) * nblocks), "table");
    void* d_ts = Check(gpu->Allocate(sizeof(int64_t) * tokens), "ts");
    void* d_q = Check(gpu->Allocate(sizeof(float) * q * stride), "q");
    void* d_bias = Check(gpu->Allocate(sizeof(float) * bias.size()), "bias");
    void* d_out = Check(gpu->Allocate(sizeof(float) * q * d.attn_width()), "out");
    Check(gpu->CopyToBackend(*ctx, d_table, table.data(), sizeof(void*) * nblocks), "up");
    Check(gpu->CopyToBackend(*ctx, d_ts, ts.data(), sizeof(int64_t) * tokens), "up");
    Check(gpu->CopyToBackend(*ctx, d_q, qhost.data(), sizeof(float) * qhost.size()), "up");
    Check(gpu->CopyToBackend(*ctx, d_bias, bias.data(), sizeof(float) * bias.size()), "up");
    AttentionArgs args;
    args.num_heads = d.num_heads;
    args.d_qk = d.d_qk;
    args.d_v = d.d_v;
    args.alpha = 0.088f;
    args.num_queries = q;
    args.q = static_cast<const float*>(d_q) + d.q_offset();
    args.q_stride = stride;
    args.candidates = true;
    args.k_self = static_cast<const float*>(d_q) + d.k_offset();
    args.v_self = static_cast<const float*>(d_q) + d.v_offset();
    args.self_stride = stride;
    args.blocks = static_cast<const void* const*>(d_table);
    args.cached_tokens = tokens;
    args.layer = 1;
    args.num_layers = d.num_layers;
    args.tokens_per_block = d.tokens_per_block;
    args.kv_dtype = dtype;
    args.timestamps = static_cast<const int64_t*>(d_ts);
    args.pos_bias = static_cast<const float*>(d_bias);
    args.time_bias = static_cast<const float*>(d_bias);
    args.position_buckets = 32;
    args.time_buckets = 32;
    args.out = static_cast<float*>(d_out);
    const int reps = 20;
    const double s = MedianSeconds(3,
                                   [&] {
                                     for (int i = 0; i < reps; ++i)
                                       Check(gpu->Attention(*ctx, args), "attention");
                                     Check(gpu->Synchronize(*ctx), "sync");
                                   }) /
                     reps;
    const double kv_bytes = double(tokens) * d.num_heads * (d.d_qk + d.d_v) * DtypeBytes(dtype);
    const double gbs = kv_bytes / s / 1e9;
    std::printf(
        "  %s K/V (%.0f MiB read): %.1f us per layer, %.0f GB/s effective; D2D copy %.0f GB/s "
        "-> %.2f\n",
        DtypeName(dtype), kv_bytes / 1048576.0, s * 1e6, gbs, copy_gbs, gbs / copy_gbs);
    out.Add(std::string("paged_attention_bw_vs_d2d_copy") + (dtype == Dtype::kFp32 ? "" : "_bf16"),
            gbs / copy_gbs);
    for (void* p : {arena, d_table, d_ts, d_q, d_bias, d_out}) gpu->Free(p);
  }

  // The CPU benchmark's request, end to end on the GPU.
  const int64_t L = quick ? 512 : 2048;
  const int64_t C = quick ? 32 : 128;
  const int64_t P = (L * 95 + 50) / 100;
  const Request r = MakeRequest(dims, L, C, 7);
  std::shared_ptr<const Weights> weights(Weights::Random(dims, 7));
  Runner run(weights, gpu, r, C);
  run.Cache(P);
  const double full_s = MedianSeconds(5, [&] { run.Forward(L, 0, C, false); });
  const double cached_s = MedianSeconds(10, [&] { run.Forward(L, P, C, false); });
  Runner cpu(weights, Check(CreateKernels("cpu", 1), "cpu"), r, C);
  cpu.Cache(P);
  const double cpu_cached_s = MedianSeconds(3, [&] { cpu.Forward(L, P, C, false); });
  std::printf("GPU forward (fp32): full %.2f ms, 95%% cached %.2f ms; CPU cached %.2f ms\n",
              full_s * 1e3, cached_s * 1e3, cpu_cached_s * 1e3);
  out.Add("gpu_cached_vs_full_speedup", full_s / cached_s);
  out.Add("gpu_vs_cpu_cached_speedup", cpu_cached_s / cached_s);
}

// ---- --calibrate FILE: the simulator's cost-model coefficients for this machine (issue 12).
//
// Measures ForwardBatch over a set of batch shapes on one kernel path (the CPU fast path with the
// demo model of configs/local.yaml, the model the CPU cluster runs; or, with --gpu-only, the CUDA
// path with the production-style model the simulated GPU nodes run) and fits helm::sim's terms:
//  - gather bytes/s: a GatherEmbeddings micro-benchmark (random rows of a 64 MiB arena);
//  - host gather bytes/s: one host thread copying random rows of a 4 GiB table into a staging
//    buffer, as the node's storage gathers its EMB misses before their transfer;
//  - CPU: dense FLOP/s from the forward's GEMM calls (norms, SiLU and copies, which scale with
//    the same rows, counted in), attention K/V bytes/s and FLOP/s from its Attention calls (a
//    least-squares fit of the two), all in the thread's CPU time; then per-call and per-batch
//    overheads from what the forwards' totals leave over (least squares on the launch count and
//    a constant);
//  - GPU (asynchronous calls cannot be timed one by one): every coefficient but the gather's
//    jointly, from the forwards' wall times.
// Every fit minimises relative errors (small shapes count as much as large ones) and keeps each
// coefficient >= 0 (a negative one is dropped and the rest refit). Times are medians of several
// runs. The JSON holds effective rates (efficiencies 1) over the base profile "cpu" or "a100-80g".

// Batches of users (history length, cached tokens, candidates) whose embeddings are gathered by
// location from one backend arena, as a node's EMB cache hands them over.
class BatchRunner {
 public:
  struct UserShape {
    int64_t length, cached, candidates;
  };
  BatchRunner(std::shared_ptr<const Kernels> kernels, const ModelDims& dims,
              std::shared_ptr<const Weights> weights, int32_t microbatch,
              const std::vector<UserShape>& users, uint64_t seed)
      : dims_(dims) {
    model_ = Check(Model::Create(std::move(weights), kernels, microbatch), "model");
    ws_ = Check(model_->NewWorkspace(), "workspace");
    const Kernels& k = model_->kernels();
    std::mt19937_64 rng(seed);
    constexpr int64_t kRows = 8192;
    const int64_t row_bytes = dims.emb_dim * DtypeBytes(dims.emb_dtype);
    {
      std::vector<char> host(kRows * row_bytes);
      for (int64_t i = 0; i < kRows * dims.emb_dim; ++i) {
        StoreFromFloat(host.data(), dims.emb_dtype, i,
                       static_cast<float>(rng() % 2001) / 1000.0f - 1.0f);
      }
      arena_ = Alloc(host.size());
      Check(k.CopyToBackend(ws_->context(), arena_, host.data(), host.size()), "upload");
    }
    users_.resize(users.size());
    for (size_t i = 0; i < users.size(); ++i) {
      User& u = users_[i];
      const UserShape& s = users[i];
      int64_t t = 1700000000;
      for (int64_t j = 0; j < s.length; ++j) {
        u.actions.push_back(static_cast<int32_t>(rng() % dims.num_actions));
        t += static_cast<int64_t>(rng() % 3600);
        u.timestamps.push_back(t);
        u.hist_locs.push_back(static_cast<int64_t>(rng() % kRows) * row_bytes);
      }
      for (int64_t j = 0; j < s.candidates; ++j) {
        u.cand_locs.push_back(static_cast<int64_t>(rng() % kRows) * row_bytes);
      }
      const int64_t nblocks = (s.length + dims.tokens_per_block - 1) / dims.tokens_per_block;
      for (int64_t b = 0; b < nblocks; ++b) u.table.push_back(Alloc(dims.block_bytes()));
      u.ctable.assign(u.table.begin(), u.table.end());
      if (s.cached > 0) {
        ForwardRequest prefix;
        prefix.actions = absl::MakeConstSpan(u.actions.data(), s.cached);
        prefix.timestamps = absl::MakeConstSpan(u.timestamps.data(), s.cached);
        prefix.suffix = {nullptr, arena_, nullptr, u.hist_locs.data()};
        Check(model_->Forward(*ws_, prefix).status(), "prefix forward");
        Check(model_->AppendKv(*ws_, u.table, 0, s.cached), "prefix append");
      }
      ForwardRequest& f = u.request;
      f.actions = u.actions;
      f.timestamps = u.timestamps;
      f.cached_tokens = s.cached;
      f.cached_blocks = u.ctable;
      f.suffix = {nullptr, arena_, nullptr, u.hist_locs.data() + s.cached};
      f.candidates = {nullptr, arena_, nullptr, u.cand_locs.data()};
      f.num_candidates = s.candidates;
      batch_.push_back(f);
      work_.requests.push_back(
          {s.length - s.cached, s.cached, s.candidates, s.length - s.cached + s.candidates, 0});
    }
  }
  ~BatchRunner() {
    for (void* p : owned_) model_->kernels().Free(p);
  }
  void Run() { Check(model_->ForwardBatch(*ws_, batch_).status(), "forward batch"); }
  const sim::BatchWork& work() const { return work_; }

 private:
  void* Alloc(size_t bytes) {
    void* p = Check(model_->kernels().Allocate(bytes), "allocate");
    owned_.push_back(p);
    return p;
  }
  struct User {
    std::vector<int32_t> actions;
    std::vector<int64_t> timestamps;
    std::vector<int64_t> hist_locs, cand_locs;
    std::vector<void*> table;
    std::vector<const void*> ctable;
    ForwardRequest request;
  };
  ModelDims dims_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Workspace> ws_;
  void* arena_ = nullptr;
  std::vector<void*> owned_;
  std::vector<User> users_;
  std::vector<ForwardRequest> batch_;
  sim::BatchWork work_;
};

double MedianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Gather bytes/s (each row read in emb_dtype, written as fp32) of random rows of a 64 MiB arena.
double MeasureGatherBytesPerS(const Kernels& k, const ModelDims& dims, double (*clock)()) {
  auto ctx = Check(k.CreateContext(), "context");
  const int64_t row_bytes = dims.emb_dim * DtypeBytes(dims.emb_dtype);
  const int64_t rows = (int64_t{64} << 20) / row_bytes;
  const int64_t n = 16384;
  void* arena = Check(k.Allocate(rows * row_bytes), "arena");
  {
    std::vector<char> zeros(rows * row_bytes, 0);
    Check(k.CopyToBackend(*ctx, arena, zeros.data(), zeros.size()), "fill");
  }
  std::mt19937_64 rng(9);
  std::vector<int64_t> locs(n);
  for (int64_t& l : locs) l = static_cast<int64_t>(rng() % rows) * row_bytes;
  void* dev_locs = Check(k.Allocate(sizeof(int64_t) * n), "locations");
  Check(k.CopyToBackend(*ctx, dev_locs, locs.data(), sizeof(int64_t) * n), "locations");
  void* out = Check(k.Allocate(sizeof(float) * n * dims.emb_dim), "out");
  GatherArgs g;
  g.arena_base = arena;
  g.locations = static_cast<const int64_t*>(k.on_device() ? dev_locs : locs.data());
  g.n = n;
  g.dim = dims.emb_dim;
  g.dtype = dims.emb_dtype;
  g.out = static_cast<float*>(out);
  std::vector<double> t;
  for (int i = 0; i < 32; ++i) {
    const double t0 = clock();
    Check(k.GatherEmbeddings(*ctx, g), "gather");
    Check(k.Synchronize(*ctx), "sync");
    if (i >= 2) t.push_back(clock() - t0);
  }
  for (void* p : {arena, dev_locs, out}) k.Free(p);
  const double bytes = static_cast<double>(n) * dims.emb_dim * (DtypeBytes(dims.emb_dtype) + 4);
  return bytes / MedianOf(t);
}

// What one host thread gathers, in bytes/s, when it copies random rows of `row_bytes` from a host
// table far larger than the caches into a staging buffer with the node storage's own routine
// (pool::GatherHostCopies, as for its EMB misses): batches of 2048 rows from a 4 GiB
// table (1 GiB with --quick), wall time, the median batch. The table's size matters beyond the
// caches: past the TLB's reach every row also costs a page walk (512-byte rows on the development
// VM's EPYC core, a plain loop: 4.5 GB/s from 256 MiB, 3.3-3.9 from 1 GiB, 1.8-2.8 from 4 GiB),
// and production tables are tens of GiB.
double MeasureHostGatherBytesPerS(int64_t row_bytes, bool quick) {
  const int64_t rows = ((quick ? int64_t{1} : int64_t{4}) << 30) / row_bytes;
  std::vector<uint8_t> table(static_cast<size_t>(rows * row_bytes));
  for (size_t i = 0; i < table.size(); i += 4096) table[i] = static_cast<uint8_t>(i >> 12);
  constexpr int64_t kBatch = 2048;
  std::vector<uint8_t> staging(static_cast<size_t>(kBatch * row_bytes));
  std::vector<pool::HostCopy> copies(kBatch);
  std::mt19937_64 rng(11);
  std::vector<double> t;
  for (int i = 0; i < (quick ? 8 : 40); ++i) {
    for (int64_t j = 0; j < kBatch; ++j) {
      const uint64_t id = rng() % static_cast<uint64_t>(rows);
      copies[j] = pool::HostCopy{j * row_bytes, table.data() + id * row_bytes, row_bytes};
    }
    const double t0 = Now();
    pool::GatherHostCopies(staging.data(), copies);       // what the node's storage runs
    asm volatile("" : : "r"(staging.data()) : "memory");  // the copies are used
    t.push_back(Now() - t0);
  }
  return static_cast<double>(kBatch * row_bytes) / MedianOf(t);
}

std::string MachineDescription(bool gpu) {
  std::string cpu = "unknown CPU";
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof(line), f) != nullptr) {
      if (std::strncmp(line, "model name", 10) == 0) {
        const char* colon = std::strchr(line, ':');
        if (colon != nullptr) {
          cpu = colon + 2;
          while (!cpu.empty() && (cpu.back() == '\n' || cpu.back() == ' ')) cpu.pop_back();
        }
        break;
      }
    }
    std::fclose(f);
  }
  std::string s = cpu + ", " + std::to_string(std::thread::hardware_concurrency()) + " CPUs";
  if (gpu) s += " (CUDA path on its GPU)";
  return s + "; OpenBLAS core " + helm::kernels::cpu::BlasCoreDescription();
}

int RunCalibrate(const std::string& path, bool gpu, bool quick) {
  const ModelDims dims = gpu ? ProductionDims() : DemoDims();
  const int32_t microbatch = gpu ? kMicrobatch : 64;
  std::shared_ptr<const Kernels> kernels =
      Check(CreateKernels(gpu ? "cuda" : "cpu", 1), gpu ? "cuda kernels" : "cpu kernels");
  // Thread CPU time on the (synchronous) CPU path: a shared machine's other work does not count.
  double (*clock)() = gpu ? Now : ThreadCpuNow;
  auto timed = std::make_shared<TimedKernels>(kernels, clock);
  std::shared_ptr<const Weights> weights(Weights::Random(dims, 7));
  using U = BatchRunner::UserShape;
  // Shapes that pull the terms apart: candidate-heavy, history-heavy, cold users, tiny batches
  // (overheads) and node-like batches of several users.
  std::vector<std::vector<U>> shapes = {
      {{64, 0, 16}},
      {{16, 15, 8}},
      {{256, 0, 64}},
      {{512, 500, 128}},
      {{1024, 1000, 128}},
      {{2048, 2040, 32}},
      {{128, 120, 512}},
      {{1024, 0, 128}},
      {{300, 290, 128}, {700, 680, 128}, {128, 0, 128}, {1000, 990, 128}},
      {{200, 190, 32},
       {100, 99, 32},
       {400, 380, 32},
       {50, 0, 32},
       {800, 790, 32},
       {600, 590, 32},
       {90, 80, 32},
       {1000, 999, 32}},
      {{40, 30, 4}, {40, 39, 4}, {40, 20, 4}, {40, 0, 4}},
  };
  if (gpu) shapes.push_back({{8192, 8000, 256}});
  struct Sample {
    sim::BatchWork work;
    double total_s = 0, dense_s = 0, attention_s = 0;
  };
  std::vector<Sample> samples;
  const int reps = quick ? 3 : 9;
  // What one clock read costs (the timed kernels read it twice per call).
  const double clock_cost_s = [&] {
    std::vector<double> t;
    for (int r = 0; r < 5; ++r) {
      const double t0 = clock();
      double last = t0;
      for (int i = 0; i < 1000; ++i) last = std::max(last, clock());
      t.push_back((std::max(last, clock()) - t0) / 1001);
    }
    return MedianOf(t);
  }();
  for (size_t i = 0; i < shapes.size(); ++i) {
    BatchRunner plain(kernels, dims, weights, microbatch, shapes[i], 100 + i);
    Sample s;
    s.work = plain.work();
    // Several forwards per timing where one is short, so a timing is not clock granularity.
    plain.Run();
    const double t_once = [&] {
      const double t0 = clock();
      plain.Run();
      return clock() - t0;
    }();
    const int inner = std::clamp(static_cast<int>(2e-3 / std::max(t_once, 1e-7)), 1, 50);
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      const double t0 = clock();
      for (int j = 0; j < inner; ++j) plain.Run();
      t.push_back((clock() - t0) / inner);
    }
    s.total_s = MedianOf(t);
    if (!gpu) {
      BatchRunner timed_run(timed, dims, weights, microbatch, shapes[i], 100 + i);
      timed_run.Run();
      std::vector<double> dense, attention;
      for (int r = 0; r < reps; ++r) {
        timed->gemm_seconds = timed->attention_seconds = timed->other_seconds = 0;
        for (int j = 0; j < inner; ++j) timed_run.Run();
        dense.push_back((timed->gemm_seconds + timed->other_seconds) / inner);
        attention.push_back(timed->attention_seconds / inner);
      }
      // Each timed call also counts about one clock read (a system call on some VMs, ~1 us):
      // take it off, so that it is not mistaken for dense or attention work.
      int64_t attention_calls = 0, inputs = 0, cands = 0;
      for (const sim::RequestWork& r : s.work.requests) {
        const int64_t calls = (r.candidates + microbatch - 1) / microbatch;
        attention_calls += calls * dims.num_layers + (r.suffix_tokens > 0) * (dims.num_layers - 1);
        inputs += (r.suffix_tokens > 0) + (r.candidates > 0);
        cands += r.candidates;
      }
      const int64_t dense_calls = sim::KernelLaunches(dims, s.work, microbatch, false) -
                                  attention_calls - inputs - (cands > 0);  // gathers, copy out
      s.dense_s = std::max(0.0, MedianOf(dense) - dense_calls * clock_cost_s);
      s.attention_s = std::max(0.0, MedianOf(attention) - attention_calls * clock_cost_s);
    }
    samples.push_back(std::move(s));
  }

  sim::CostProfile p = Check(sim::ProfileByName(gpu ? "a100-80g" : "cpu"), "base profile");
  p.dense_efficiency = p.attention_efficiency = p.memory_efficiency = p.gather_efficiency = 1.0;
  p.gather_bytes_per_s = MeasureGatherBytesPerS(*kernels, dims, clock);
  p.host_gather_bytes_per_s =
      MeasureHostGatherBytesPerS(dims.emb_dim * DtypeBytes(dims.emb_dtype), quick);
  const int64_t tile = p.attention_query_tile;
  struct Terms {
    double dense_flops, attn_bytes, attn_flops, gather_bytes, launches;
  };
  auto terms = [&](const sim::BatchWork& w) {
    Terms t{};
    int64_t suffix = 0, cands = 0, rows = 0;
    for (const sim::RequestWork& r : w.requests) {
      suffix += r.suffix_tokens;
      cands += r.candidates;
      rows += r.emb_rows_gathered;
      t.attn_bytes += static_cast<double>(sim::AttentionBytes(dims, r, tile, microbatch));
      t.attn_flops += 2.0 * static_cast<double>(sim::AttentionMacs(dims, r));
    }
    t.dense_flops = 2.0 * static_cast<double>(sim::DenseMacs(dims, suffix, cands));
    t.gather_bytes = static_cast<double>(rows) * dims.emb_dim * (DtypeBytes(dims.emb_dtype) + 4);
    t.launches = static_cast<double>(sim::KernelLaunches(dims, w, microbatch, p.on_device));
    return t;
  };
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  const auto inv = [](double v) { return v > 0 ? 1.0 / v : 1e30; };
  if (!gpu) {
    for (const Sample& s : samples) {
      x.push_back({terms(s.work).dense_flops});
      y.push_back(s.dense_s);
    }
    p.dense_flops_per_s = inv(sim::RelativeNnls(x, y)[0]);
    x.clear();
    y.clear();
    for (const Sample& s : samples) {
      const Terms t = terms(s.work);
      x.push_back({t.attn_bytes, t.attn_flops});
      y.push_back(s.attention_s);
    }
    const std::vector<double> a = sim::RelativeNnls(x, y);
    p.memory_bytes_per_s = inv(a[0]);
    p.attention_flops_per_s = inv(a[1]);
    // Per-call and per-batch overheads: what the forwards' totals leave over, fitted on the
    // launch count and a constant, with errors relative to the whole forward's time.
    std::vector<double> l_col, f_col, target;
    for (const Sample& s : samples) {
      const Terms t = terms(s.work);
      const double rest =
          s.total_s - t.dense_flops / p.dense_flops_per_s - t.attn_bytes / p.memory_bytes_per_s -
          t.attn_flops / p.attention_flops_per_s - t.gather_bytes / p.gather_bytes_per_s;
      l_col.push_back(t.launches / s.total_s);
      f_col.push_back(1.0 / s.total_s);
      target.push_back(rest / s.total_s);
    }
    auto solve = [&](bool use_l, bool use_f) {
      double a11 = 0, a12 = 0, a22 = 0, b1 = 0, b2 = 0;
      for (size_t i = 0; i < target.size(); ++i) {
        a11 += l_col[i] * l_col[i];
        a12 += l_col[i] * f_col[i];
        a22 += f_col[i] * f_col[i];
        b1 += l_col[i] * target[i];
        b2 += f_col[i] * target[i];
      }
      if (use_l && use_f) {
        const double det = a11 * a22 - a12 * a12;
        return std::vector<double>{(b1 * a22 - b2 * a12) / det, (a11 * b2 - a12 * b1) / det};
      }
      if (use_l) return std::vector<double>{b1 / a11, 0.0};
      return std::vector<double>{0.0, b2 / a22};
    };
    std::vector<double> lf = solve(true, true);
    if (lf[0] < 0) lf = solve(false, true);
    if (lf[1] < 0) lf = solve(true, false);
    lf[0] = std::max(lf[0], 0.0);
    lf[1] = std::max(lf[1], 0.0);
    p.kernel_launch_us = lf[0] * 1e6;
    p.batch_fixed_us = lf[1] * 1e6;
  } else {
    for (const Sample& s : samples) {
      const Terms t = terms(s.work);
      x.push_back({t.dense_flops, t.attn_bytes, t.attn_flops, t.launches, 1.0});
      y.push_back(std::max(1e-9, s.total_s - t.gather_bytes / p.gather_bytes_per_s));
    }
    const std::vector<double> a = sim::RelativeNnls(x, y);
    p.dense_flops_per_s = inv(a[0]);
    p.memory_bytes_per_s = inv(a[1]);
    p.attention_flops_per_s = inv(a[2]);
    p.kernel_launch_us = a[3] * 1e6;
    p.batch_fixed_us = a[4] * 1e6;
  }
  // The CPU backend's PCIe stand-in is pool.pcie_emulation_gbps (configs/local.yaml: 25 GB/s),
  // a paced host copy, so it is taken from there rather than measured.
  p.pcie_bytes_per_s = gpu ? p.pcie_bytes_per_s : 25e9;
  p.pcie_latency_us = gpu ? p.pcie_latency_us : 0.0;
  for (double* v : {&p.dense_flops_per_s, &p.memory_bytes_per_s, &p.attention_flops_per_s}) {
    *v = std::min(*v, 1e18);  // a term the fit found free: effectively no cost
  }

  sim::CostModel cost = Check(sim::CostModel::Create(dims, p, microbatch), "cost model");
  std::printf(
      "calibration (%s path, %s model: %d layers, %d heads, d=%d, D=%d, emb %d; microbatch %d)\n",
      gpu ? "CUDA" : "CPU", gpu ? "production-style" : "demo", dims.num_layers, dims.num_heads,
      dims.d_qk, dims.d_model, dims.emb_dim, microbatch);
  std::printf("  %-44s %10s %10s %6s\n", "shape (users: length/cached/candidates)", "measured",
              "predicted", "ratio");
  double worst = 1.0;
  for (size_t i = 0; i < samples.size(); ++i) {
    std::string what;
    for (const U& u : shapes[i]) {
      if (what.size() > 30) {
        what += " ...";
        break;
      }
      what += (what.empty() ? "" : " ") + std::to_string(u.length) + "/" +
              std::to_string(u.cached) + "/" + std::to_string(u.candidates);
    }
    const double pred = cost.BatchTimeUs(samples[i].work);
    const double meas = samples[i].total_s * 1e6;
    const double ratio = pred / meas;
    worst = std::max(worst, std::max(ratio, 1 / ratio));
    std::printf("  %-44s %8.1f us %8.1f us %6.2f\n",
                (std::to_string(shapes[i].size()) + ": " + what).c_str(), meas, pred, ratio);
  }
  std::printf(
      "  dense %.2f GFLOP/s, K/V reads %.2f GB/s, attention %.2f GFLOP/s, gathers %.2f GB/s, "
      "%.3f us per kernel call, %.2f us per batch, host gather of misses %.2f GB/s; worst shape "
      "off by %.2fx (clock read %.2f us)\n",
      p.dense_flops_per_s / 1e9, p.memory_bytes_per_s / 1e9, p.attention_flops_per_s / 1e9,
      p.gather_bytes_per_s / 1e9, p.kernel_launch_us, p.batch_fixed_us,
      p.host_gather_bytes_per_s / 1e9, worst, clock_cost_s * 1e6);

  sim::CalibrationNotes notes;
  notes.base = gpu ? "a100-80g" : "cpu";
  notes.machine = MachineDescription(gpu);
  notes.method = absl::StrFormat(
      "helm_bench_model --calibrate%s: %s path, %s model (%d layers, %d heads, d=%d, D=%d, emb "
      "%d), %zu batch shapes, medians of %d; worst shape off by %.2fx",
      gpu ? " --gpu-only" : "", gpu ? "CUDA" : "CPU (one thread, thread CPU time)",
      gpu ? "production-style" : "demo", dims.num_layers, dims.num_heads, dims.d_qk, dims.d_model,
      dims.emb_dim, samples.size(), reps, worst);
  p.attention_query_tile = tile;
  Check(sim::WriteCalibration(path, p, notes), "writing the calibration");
  std::printf("calibration written to %s\n", path.c_str());
  std::printf("HELM_RESULT calibration_worst_shape_error %.3f\n", worst);
  return 0;
}

}  // namespace
}  // namespace helm::model

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  helm::kernels::cpu::ReexecWithFastBlasIfNeeded(argv);
  std::printf("OpenBLAS core: %s\n", helm::kernels::cpu::BlasCoreDescription());
  bool gpu_only = false;
  bool quick = false;
  bool batch_only = false;
  std::string calibrate_path;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--gpu-only") == 0) {
      gpu_only = true;
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--batch-only") == 0) {
      batch_only = true;
    } else if (std::strcmp(argv[i], "--calibrate") == 0 && i + 1 < argc) {
      calibrate_path = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: helm_bench_model [--gpu-only] [--batch-only] [--quick] "
                   "[--calibrate FILE]\n");
      return 2;
    }
  }
  if (!calibrate_path.empty()) {
    // CPU path, or the CUDA path with --gpu-only (which needs a GPU).
    if (gpu_only && !helm::model::CudaAvailable()) {
      std::printf("GPU: none visible (or no CUDA build): no GPU calibration\n");
      return 1;
    }
    return helm::model::RunCalibrate(calibrate_path, gpu_only, quick);
  }
  helm::model::Results results;
  if (batch_only) {
    helm::model::RunBatch(quick, results);
    for (const auto& [name, value] : results.lines)
      std::printf("HELM_RESULT %s %.3f\n", name.c_str(), value);
    return 0;
  }
  if (!gpu_only) {
    helm::model::RunCpu(quick, results);
    helm::model::RunBatch(quick, results);
  }
  if (helm::model::CudaAvailable()) {
    helm::model::RunGpu(quick, results);
  } else {
    std::printf("GPU: none visible (or no CUDA build): GPU figures skipped\n");
    if (gpu_only) return 1;
  }
  for (const auto& [name, value] : results.lines)
    std::printf("HELM_RESULT %s %.3f\n", name.c_str(), value);
  return 0;
}
