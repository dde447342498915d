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
// sizes, a smoke run).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/blas_core.h"
#include "helm/model/kernels.h"
#include "helm/model/model.h"

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
// embeddings of 64, 16 tokens per block, fp32).
ModelDims DemoDims() {
  ModelDims d;
  d.num_layers = 2;
  d.num_heads = 2;
  d.d_qk = 32;
  d.d_v = 32;
  d.d_model = 64;
  d.emb_dim = 64;
  d.num_actions = 8;
  d.position_buckets = 32;
  d.time_buckets = 32;
  d.tokens_per_block = 16;
  return d;
}

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

}  // namespace
}  // namespace helm::model

int main(int argc, char** argv) {
  helm::kernels::cpu::ReexecWithFastBlasIfNeeded(argv);
  std::printf("OpenBLAS core: %s\n", helm::kernels::cpu::BlasCoreDescription());
  bool gpu_only = false;
  bool quick = false;
  bool batch_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--gpu-only") == 0) {
      gpu_only = true;
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--batch-only") == 0) {
      batch_only = true;
    } else {
      std::fprintf(stderr, "usage: helm_bench_model [--gpu-only] [--batch-only] [--quick]\n");
      return 2;
    }
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
