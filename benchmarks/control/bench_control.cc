// helm_bench_control: how long one split decision takes, features to action, for the full helm
// controller (base policy, a 19-64-64-7 MLP, the size helm-train trains; the residual adapter;
// burst-aware recovery; the safety gate), for the base policy alone, for the hill-climbing
// heuristic and for the marginal rule, over the same stream of statistics windows, in the same
// process. Each decision is
// timed alone (steady_clock around Decide); its window is copied in just before (untimed).
// The predictive controller replays a window's sampled answers at every split of its grid: it is
// timed on windows that carry the most answers a node samples (4096), their miniature KV caches'
// reuse and their batches' totals, the miniature EMB caches' miss ratios and both reuse
// histograms,
// HELM_RESULT predictive_decision_p99_us (once a window, off the request path). Its cost on the
// request path, the tracker's work per request with its 10 miniature KV and 10 miniature EMB
// caches, is HELM_RESULT predictive_observe_ns, against the tracker without them side by side
// (predictive_observe_vs_reuse_times); the caches' replay of the window's requests, on the
// control thread, HELM_RESULT predictive_replay_ns a request.
// HELM_RESULT decision_p99_ns is the full helm decision. The paper reports 32 us.
// A base policy that reads the predictive model's view (features 19-20, a 21-64-64-7 MLP) makes
// the helm decision the model's prediction plus the rest, timed on the predictive controller's
// windows: HELM_RESULT helm_model_decision_p99_us.
// The base policy's forward alone is timed against a plain scalar forward of the same weights
// (one output at a time, [out][in] rows), hot in cache: HELM_RESULT mlp_forward_vs_scalar.
// The model's P99 of 4,096 predicted latencies (QuantileOf: a sampled threshold, else a heap of the
// largest) is timed against std::nth_element on the same values, in cache:
// HELM_RESULT quantile_p99_vs_nth_element.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "helm/common/process.h"
#include "helm/control/helm_controller.h"
#include "helm/control/policy.h"
#include "helm/control/split_controller.h"
#include "helm/serve/reuse_tracker.h"

namespace {

std::vector<helm::serve::StatsWindow> Windows(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> latency(500, 80'000), rate(50, 5000);
  std::vector<helm::serve::StatsWindow> out(n);
  for (auto& w : out) {
    w.start_us = 0;
    w.end_us = 1'000'000;
    w.committed_split = w.target_split = 0.5;
    const int64_t arrivals = rate(rng);
    w.requests.arrivals = w.requests.completions = arrivals;
    for (int i = 0; i < 64; ++i) w.latency_us.Record(latency(rng));
    w.emb.lookups = arrivals * 200;
    w.emb.hits = arrivals * 150;
    w.emb.unique_ids = arrivals * 120;
    w.emb.h2d_bytes = arrivals * 50 * 512;
    w.kv.requested_tokens = arrivals * 300;
    w.kv.hit_tokens = arrivals * 200;
    w.kv.recomputed_tokens = arrivals * 100;
    // The ghost gains' inputs (features 16-18): misses and their fetch time, computed rows.
    w.emb.misses = arrivals * 50;
    w.emb.fetch_ns = arrivals * 2000;
    w.emb.ghost_hits = arrivals * static_cast<int64_t>(rng() % 8);
    w.requests.compute_us = arrivals * 100;
    w.requests.computed_rows = arrivals * 150;
    w.kv.ghost_hit_tokens = arrivals * static_cast<int64_t>(rng() % 16);
  }
  return out;
}

// Windows for the predictive controller: 4096 sampled answers (a tenth returning users with long
// histories) in batches of 4, the 10 miniature KV caches' reuse of each (and of its batch), both
// reuse-time histograms filled, and the counters its prices come from.
std::vector<helm::serve::StatsWindow> PredictiveWindows(int n, uint64_t seed) {
  std::vector<helm::serve::StatsWindow> out = Windows(n, seed);
  std::mt19937_64 rng(seed + 1);
  std::uniform_int_distribution<int64_t> latency(500, 80'000), reuse(1, int64_t{1} << 28);
  for (auto& w : out) {
    w.requests.batches = w.requests.completions / 4 + 1;
    w.requests.batched_requests = w.requests.completions;
    w.requests.computed_attention = w.requests.computed_rows * 2000;
    for (int s = 0; s < 10; ++s) {
      w.kv_shadow_splits.push_back(0.05 + 0.1 * s);
      w.emb_shadow_splits.push_back(0.05 + 0.1 * s);
      w.emb_shadow_miss_ratios.push_back(0.6 - 0.05 * s);
    }
    for (int i = 0; i < 4096; ++i) {
      helm::serve::AnswerSample a;
      a.latency_us = latency(rng);
      a.queue_us = a.latency_us / 10;
      a.emb_lookups = 256;
      a.emb_misses = static_cast<int32_t>(rng() % 64);
      if (i % 10 == 0) {
        a.reuse = {.kv_reuse_tokens = reuse(rng), .kv_prefix_tokens = 4096};
        // Held by the caches up to a random size (the larger splits' caches are the smaller).
        const int held_up_to = static_cast<int>(rng() % 11);
        for (int s = 0; s < held_up_to; ++s) a.reuse.kv_shadow_prefix[s] = 4096;
      }
      w.answers.push_back(a);
    }
    for (size_t i = 0; i < w.answers.size(); i += 4) {  // batches of 4
      helm::serve::BatchTotals batch;
      batch.size = 4;
      for (size_t j = i; j < i + 4; ++j) {
        const helm::serve::AnswerSample& a = w.answers[j];
        batch.emb_lookups += a.emb_lookups;
        batch.emb_misses += a.emb_misses;
        for (int s = 0; s < 10; ++s) {
          const float p = static_cast<float>(a.reuse.kv_shadow_prefix[s]);
          batch.shadow.tokens[s] += p;
          batch.shadow.pairs[s] += p * (p - 1) / 2;
        }
      }
      for (size_t j = i; j < i + 4; ++j) w.answers[j].batch = batch;
    }
    for (int i = 0; i < 20000; ++i) {
      w.emb_reuse.Add(reuse(rng) >> 6, 16);
      w.kv_reuse.Add(reuse(rng), 512);
    }
    w.emb_reuse.AddCold(1e5);
    w.kv_reuse.AddCold(1e6);
  }
  return out;
}

// The predictive controller's cost per request on the node: ReuseTracker::Observe (BeginBatch,
// under a mutex: the request path) for a request of a user among 64k, with a history of about
// 1000 tokens and 256 ids looked up (drawn evenly from 10M: every one a miss, the EMB miniatures'
// dearest case), with `shadows` miniature KV and EMB caches each (10 by default, at the splits 0.05
// to 0.95: KV caches of 2M blocks of 16 tokens at most, about half the users' 64M tokens; EMB
// caches of 8M rows at most, on the sample that makes that one 32768 rows), or without any (the
// reuse times alone); and the caches' replay of those requests (ReuseTracker::Replay, the control
// thread, once a window of 2000 requests). ns a request, each.
struct ObserveCost {
  double observe_ns, replay_ns;
};

ObserveCost ObserveNs(int shadows, int requests) {
  helm::serve::ReuseTracker tracker(1.0 / 16, /*salt=*/1);
  helm::kv::KvOptions kv;
  kv.tokens_per_block = 16;
  constexpr double kEmbRows = 8e6, kEmbRate = 32768 / (0.95 * kEmbRows);
  std::vector<int64_t> capacity_blocks, capacity_rows;
  for (int s = 0; s < shadows; ++s) {
    const double split = 0.05 + 0.9 * s / std::max(1, shadows - 1);
    capacity_blocks.push_back(std::llround((1 - split) * 2e6));
    capacity_rows.push_back(std::llround(split * kEmbRows * kEmbRate));
  }
  tracker.ShadowKv(kv, /*attention_ratio=*/0.001, capacity_blocks);
  tracker.ShadowEmb(helm::emb::EmbOptions(), kEmbRate, capacity_rows, 32768);
  std::mt19937_64 rng(5);
  std::vector<int64_t> history(1 << 16, 0), ids(256);
  double observe_ns = 0, replay_ns = 0;
  for (int i = 0; i < requests; ++i) {
    const int64_t user = static_cast<int64_t>(rng() % history.size());
    history[static_cast<size_t>(user)] += 1 + static_cast<int64_t>(rng() % 64);
    if (history[static_cast<size_t>(user)] > 2000) history[static_cast<size_t>(user)] = 1000;
    for (int64_t& id : ids) id = static_cast<int64_t>(rng() % 10'000'000);
    const auto t0 = std::chrono::steady_clock::now();
    tracker.Observe(user, history[static_cast<size_t>(user)], static_cast<uint64_t>(user), ids,
                    i / 16);
    const auto t1 = std::chrono::steady_clock::now();
    observe_ns += std::chrono::duration<double, std::nano>(t1 - t0).count();
    if (i % 2000 == 1999) {
      tracker.Replay();
      replay_ns +=
          std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t1).count();
    }
  }
  return {observe_ns / requests, replay_ns / requests};
}

struct Timing {
  double p50_ns, p99_ns;
};

// Each window is copied just before its decision, as the node's control thread closes its window
// (CloseWindow) right before Decide: the decision reads a window in cache, as it does there.
Timing Time(helm::control::SplitController& c, const std::vector<helm::serve::StatsWindow>& ws,
            int decisions) {
  std::vector<double> ns;
  ns.reserve(decisions);
  double sink = 0;
  helm::serve::StatsWindow w;
  for (int i = 0; i < decisions; ++i) {
    w = ws[i % ws.size()];
    const auto t0 = std::chrono::steady_clock::now();
    sink += c.Decide(w);
    const auto t1 = std::chrono::steady_clock::now();
    ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  std::sort(ns.begin(), ns.end());
  if (sink < 0) std::printf("%f\n", sink);
  return {ns[ns.size() / 2], ns[static_cast<size_t>(ns.size() * 0.99)]};
}

// The plain forward: each output's dot product over the [out][in] row, then tanh. The same sums in
// the same order as Mlp::Forward, one float at a time.
void ScalarForward(const helm::control::Mlp& mlp, const float* in, float* out,
                   std::vector<float>& a, std::vector<float>& b) {
  const float* x = in;
  for (size_t i = 0; i < mlp.layers().size(); ++i) {
    const helm::control::Mlp::Layer& l = mlp.layers()[i];
    const bool last = i + 1 == mlp.layers().size();
    float* y = last ? out : (x == a.data() ? b.data() : a.data());
    for (int o = 0; o < l.out; ++o) {
      float acc = l.bias[o];
      const float* row = l.weight.data() + static_cast<size_t>(o) * l.in;
      for (int k = 0; k < l.in; ++k) acc += row[k] * x[k];
      y[o] = last ? acc : helm::control::Mlp::Tanh(acc);
    }
    x = y;
  }
}

// Mean ns of one forward over `n`, inputs varied so that no call repeats the last.
template <typename F>
double ForwardNs(F forward, int n) {
  std::vector<float> in(helm::control::kNumFeatures), out(8);
  double sink = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    in[i % in.size()] = 1e-3f * static_cast<float>(i % 1000);
    forward(in.data(), out.data());
    sink += out[0];
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (sink == 12345.678) std::printf("%f\n", sink);
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / n;
}

// Mean ns of `select` on each of `sets` copied into one scratch vector just before (untimed), so
// that its values are in cache, as the model's latencies are when it takes their P99.
template <typename F>
double SelectNs(const std::vector<std::vector<double>>& sets, F select) {
  std::vector<double> scratch;
  double sink = 0, ns = 0;
  for (const std::vector<double>& v : sets) {
    scratch.assign(v.begin(), v.end());
    const auto t0 = std::chrono::steady_clock::now();
    sink += select(scratch);
    ns += std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  }
  if (sink == 12345.678) std::printf("%f\n", sink);
  return ns / static_cast<double>(sets.size());
}

}  // namespace

int main() {
  helm::ConfigureProcess();
  using namespace helm::control;
  const std::vector<helm::serve::StatsWindow> windows = Windows(256, 7);
  constexpr int kDecisions = 20000;
  ControlOptions options;
  FeatureScales scales;
  scales.pool_bytes = 60.0 * (1 << 30);
  scales.emb_row_bytes = 512;
  scales.kv_token_bytes = 6144;
  scales.queue_capacity = 1024;
  // v2's shape: every feature but the model's.
  Policy policy{Mlp::Random({kFirstModelFeature, 64, 64, 7}, 3),
                {-0.1, -0.05, -0.02, 0, 0.02, 0.05, 0.1}};
  PolicyController base(policy, scales, options, 0.05, 0.95);
  ControlOptions helm_options = options;
  helm_options.policy = "helm";
  helm_options.adapter = true;
  helm_options.recovery = true;
  HelmController helm(policy, scales, helm_options, 0.05, 0.95);
  HillClimbController heuristic(options, 0.05, 0.95);
  MarginalController marginal(options, 0.05, 0.95);
  PredictiveController predictive(options, scales, 0.05, 0.95);
  const std::vector<helm::serve::StatsWindow> sampled = PredictiveWindows(8, 11);
  constexpr int kPredictions = 400;
  Time(predictive, sampled, kPredictions / 4);  // warm-up
  const Timing p = Time(predictive, sampled, kPredictions);
  HelmController helm_model(Policy{Mlp::Random({kNumFeatures, 64, 64, 7}, 3), policy.actions},
                            scales, helm_options, 0.05, 0.95);
  Time(helm_model, sampled, kPredictions / 4);  // warm-up
  const Timing m = Time(helm_model, sampled, kPredictions);
  Time(helm, windows, kDecisions);  // warm-up
  Time(base, windows, kDecisions);
  Time(heuristic, windows, kDecisions);
  Time(marginal, windows, kDecisions);
  const Timing h = Time(helm, windows, kDecisions);
  const Timing a = Time(base, windows, kDecisions);
  const Timing b = Time(heuristic, windows, kDecisions);
  const Timing g = Time(marginal, windows, kDecisions);
  std::vector<float> sa(64), sb(64);
  const auto vectorised = [&](const float* in, float* out) { policy.mlp.Forward(in, out); };
  const auto scalar = [&](const float* in, float* out) {
    ScalarForward(policy.mlp, in, out, sa, sb);
  };
  constexpr int kForwards = 200000;
  ForwardNs(vectorised, kForwards / 10);  // warm-up
  ForwardNs(scalar, kForwards / 10);
  const double forward_ns = ForwardNs(vectorised, kForwards);
  const double scalar_ns = ForwardNs(scalar, kForwards);
  std::printf("%-34s %10s %10s\n", "decision (features->action)", "p50_ns", "p99_ns");
  std::printf("%-34s %10.0f %10.0f\n", "helm: base+adapter+recovery+gate", h.p50_ns, h.p99_ns);
  const std::string base_name =
      "base policy " + std::to_string(kFirstModelFeature) + "-64-64-7 + gate";
  std::printf("%-34s %10.0f %10.0f\n", base_name.c_str(), a.p50_ns, a.p99_ns);
  std::printf("%-34s %10.0f %10.0f\n", "heuristic (hill climbing)", b.p50_ns, b.p99_ns);
  std::printf("%-34s %10.0f %10.0f\n", "marginal (ghost gains) + gate", g.p50_ns, g.p99_ns);
  std::printf("%-34s %10.0f %10.0f\n", "predictive (4096 answers, 46 splits)", p.p50_ns, p.p99_ns);
  std::printf("%-34s %10.0f %10.0f\n", "helm reading the model (the same)", m.p50_ns, m.p99_ns);
  std::printf("%-34s %10.0f ns (scalar forward %.0f ns)\n", "base policy forward alone, hot",
              forward_ns, scalar_ns);
  // QuantileOf's P99 against nth_element's, on lognormal latencies (4,096: the model's answers).
  std::mt19937_64 qrng(11);
  std::lognormal_distribution<double> latency(8, 0.7);
  std::vector<std::vector<double>> sets(400, std::vector<double>(4096));
  for (std::vector<double>& v : sets) {
    for (double& x : v) x = latency(qrng);
  }
  const auto heap = [](std::vector<double>& v) { return QuantileOf(v, 0.99); };
  const auto nth = [](std::vector<double>& v) {
    const auto k = v.begin() + static_cast<std::ptrdiff_t>(std::ceil(0.99 * v.size()) - 1);
    std::nth_element(v.begin(), k, v.end());
    return *k;
  };
  SelectNs(sets, heap);  // warm-up
  SelectNs(sets, nth);
  const double heap_ns = SelectNs(sets, heap), nth_ns = SelectNs(sets, nth);
  std::printf("%-34s %10.0f ns (nth_element %.0f ns)\n", "P99 of 4,096 values", heap_ns, nth_ns);
  constexpr int kObserves = 400'000;
  ObserveNs(10, kObserves / 4);  // warm-up
  const ObserveCost without = ObserveNs(0, kObserves);
  const ObserveCost with = ObserveNs(10, kObserves);
  std::printf(
      "%-34s %10.0f ns a request (%.0f ns with reuse times alone); their replay %.0f ns "
      "a request on the control thread\n",
      "predictive tracker, 10+10 caches", with.observe_ns, without.observe_ns, with.replay_ns);
  std::printf("HELM_RESULT decision_p99_ns %.0f\n", h.p99_ns);
  std::printf("HELM_RESULT decision_base_p99_ns %.0f\n", a.p99_ns);
  std::printf("HELM_RESULT decision_p99_vs_heuristic %.2f\n", h.p99_ns / b.p99_ns);
  std::printf("HELM_RESULT mlp_forward_ns %.0f\n", forward_ns);
  std::printf("HELM_RESULT mlp_forward_vs_scalar %.2f\n", forward_ns / scalar_ns);
  std::printf("HELM_RESULT quantile_p99_vs_nth_element %.2f\n", heap_ns / nth_ns);
  std::printf("HELM_RESULT predictive_decision_p99_us %.0f\n", p.p99_ns / 1000);
  std::printf("HELM_RESULT helm_model_decision_p99_us %.0f\n", m.p99_ns / 1000);
  std::printf("HELM_RESULT predictive_observe_ns %.0f\n", with.observe_ns);
  std::printf("HELM_RESULT predictive_observe_vs_reuse_times %.2f\n",
              with.observe_ns / without.observe_ns);
  std::printf("HELM_RESULT predictive_replay_ns %.0f\n", with.replay_ns);
  return 0;
}
