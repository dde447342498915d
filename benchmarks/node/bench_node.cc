// helm_bench_node: the node core at saturation in one process, without gRPC: does a batch of
// requests run as one forward buy throughput?
//
// Setup: the embedded demo config (configs/local.yaml: HSTU with 2 layers, D = 64, a 500K-item
// catalog, a 256 MiB pool on the CPU backend with PCIe emulated at 25 GB/s) and its kuairand-like
// workload. One fixed sequence of requests (arrival times ignored) is offered closed-loop with
// enough requests outstanding to keep every worker busy, to a fresh node core each run: the first
// --warmup requests fill its caches (mostly users' first visits, whole histories computed) and are
// not timed; the next --requests are (returning users reuse their cached K/V, as in steady
// serving). Runs alternate max_batch 8 and max_batch 1 (--rounds pairs), so drift on a shared
// machine hits both.
//
// Figures (HELM_RESULT lines at the end):
//   batched_vs_unbatched_throughput  mean requests/s at max_batch 8 over mean at max_batch 1.
//   node_core_requests_per_s         mean requests/s at max_batch 8.
// Flags: --requests N timed per run, --warmup N, --rounds R, --workers W (default 2), --quick.
//
// --calibrate FILE: the simulator's CPU cost model scaled to this node core's service time (issue
// 12). helm_bench_model --calibrate (--kernel-calibration, default configs/calibration/
// cpu-dev.json) times the forward's kernels one batch shape at a time, in thread CPU time, over
// warm caches, which separates the cost model's terms; a serving node also looks up and copies
// embeddings, appends K/V, ranks, hands requests between threads and runs on cold caches. Here the
// demo workload (the config's seed + 1: not the request sequence make run and make bench-sim
// replay) runs one request at a time through a node core with one worker and max_batch 1, as the
// demo's nodes run, and each answer's own queue_us + compute_us (what a serving node reports in
// ServingInfo) less its emulated PCIe time is fitted as scale x the kernel calibration's
// prediction + a constant per batch (least squares on relative errors; answers more than 1.5x
// slower than the first fit, preempted, left out of the second). Only these two are fitted: with
// a fixed candidate count and one request a batch, the dense and gather terms grow together, so
// the serving run alone cannot tell them apart. The calibration written divides every rate by the
// scale. Prints the fit's median and p90 error on a held-out half. It records the spread of the
// answers around the fit (service_ratio_quantiles), or with --spread-from CSV that of a real
// cluster's answers (a helm-bench requests.csv; its nodes share their cores with each other, the
// router and the load generator, which a lone node core does not show).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "apps/app.h"
#include "cpu/blas_core.h"
#include "helm/common/dtype.h"
#include "helm/common/process.h"
#include "helm/config/config.h"
#include "helm/model/model.h"
#include "helm/serve/batch_workers.h"
#include "helm/serve/node_core.h"
#include "helm/sim/calibration.h"
#include "helm/sim/cost_model.h"
#include "helm/workload/generator.h"

namespace helm::serve {
namespace {

// A generated request with columns of its own, reusable as a job.
struct BenchJob : RankJob {
  std::vector<int64_t> items, timestamps_ms, candidates;
  std::vector<int32_t> actions;
  int64_t user_id = 0;
  void Reset() {
    input = RankInput();
    input.user_id = user_id;
    input.history_item_ids = items;
    input.history_actions = actions;
    input.history_timestamps_ms = timestamps_ms;
    input.candidate_item_ids = candidates;
    input.top_k = 10;
    output = RankOutput();
    deadline_us = kNever;
  }
};

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "helm_bench_node: %s\n", what.c_str());
  std::exit(1);
}

std::vector<BenchJob> Generate(const config::Config& config, int count) {
  auto generator = workload::Generator::Create(config.workload);
  if (!generator.ok()) Fail(generator.status().ToString());
  std::vector<BenchJob> jobs(count);
  workload::Request r;
  for (BenchJob& job : jobs) {
    if (!(*generator)->Next(&r)) Fail("the workload ended early");
    job.user_id = r.user_id;
    job.items.assign(r.history_item_ids.begin(), r.history_item_ids.end());
    job.actions.assign(r.history_actions.begin(), r.history_actions.end());
    job.timestamps_ms.assign(r.history_timestamps_ms.begin(), r.history_timestamps_ms.end());
    job.candidates.assign(r.candidate_item_ids.begin(), r.candidate_item_ids.end());
  }
  return jobs;
}

struct RunResult {
  double requests_per_s = 0;
  double mean_batch = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double kv_token_hit = 0;
  int64_t errors = 0;
};

// Offers jobs[first, last) in order, `outstanding` at a time, to `workers`; returns the seconds
// until the last answer.
double Offer(BatchWorkers& workers, std::vector<BenchJob>& jobs, int first, int last,
             int outstanding, std::atomic<int64_t>* errors) {
  std::atomic<int> next{first};
  std::atomic<int> answered{0};
  absl::Notification finished;
  const int total = last - first;
  std::function<void()> submit_next = [&] {
    const int i = next.fetch_add(1);
    if (i >= last) return;
    jobs[i].Reset();
    if (!workers.Submit(&jobs[i]).ok()) Fail("a request was refused at admission");
  };
  for (int i = first; i < last; ++i) {
    jobs[i].done = [&](RankJob*, const absl::Status& s) {
      if (!s.ok() && errors->fetch_add(1) == 0) {
        std::fprintf(stderr, "helm_bench_node: a request failed: %s\n", s.ToString().c_str());
      }
      submit_next();
      if (answered.fetch_add(1) + 1 == total) finished.Notify();
    };
  }
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < std::min(total, outstanding); ++i) submit_next();
  finished.WaitForNotification();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A fresh core with `max_batch`: the first `warmup` jobs fill its caches (untimed), the rest are
// timed.
RunResult Run(config::Config config, int max_batch, int workers, int warmup,
              std::vector<BenchJob>& jobs) {
  config.node.max_batch = max_batch;
  config.node.workers = workers;
  const int outstanding = 2 * workers * 8;  // the same offered load for both batch sizes
  config.node.queue_capacity = std::max(config.node.queue_capacity, outstanding);
  auto core = NodeCore::Create(config, Clock::Real());
  if (!core.ok()) Fail(core.status().ToString());
  auto pool = BatchWorkers::Start(core->get(), workers);
  if (!pool.ok()) Fail(pool.status().ToString());
  std::atomic<int64_t> errors{0};
  const int total = static_cast<int>(jobs.size());
  Offer(**pool, jobs, 0, warmup, outstanding, &errors);
  (*core)->CloseWindow();
  const double seconds = Offer(**pool, jobs, warmup, total, outstanding, &errors);
  const StatsWindow window = (*core)->CloseWindow();
  (*pool)->Stop();
  RunResult r;
  r.requests_per_s = (total - warmup) / seconds;
  r.mean_batch =
      window.requests.batches > 0
          ? static_cast<double>(window.requests.batched_requests) / window.requests.batches
          : 0;
  r.p50_ms = window.latency_us.Quantile(0.5) / 1000;
  r.p99_ms = window.latency_us.Quantile(0.99) / 1000;
  r.kv_token_hit = window.kv.token_hit_ratio();
  r.errors = errors.load();
  return r;
}

// ---- --calibrate FILE
// ----------------------------------------------------------------------------

// One answer: what the kernel calibration predicts for its work (without PCIe), its emulated
// PCIe time, and its measured service time.
struct ServiceSample {
  double kernel_us = 0;
  double miss_us = 0;     // the EMB misses: host gather and the emulated link, exact (not scaled)
  double service_us = 0;  // queue_us + compute_us
};

// service - pcie ~ scale * kernel + fixed, least squares on relative errors, then again without
// the answers more than 1.5x slower than the first fit predicts (the thread was preempted).
// Returns {scale, fixed}.
std::vector<double> FitService(const std::vector<ServiceSample>& samples) {
  auto fit = [](const std::vector<const ServiceSample*>& use) {
    std::vector<std::vector<double>> x;
    std::vector<double> y;
    for (const ServiceSample* s : use) {
      x.push_back({s->kernel_us, 1.0});
      y.push_back(std::max(1.0, s->service_us - s->miss_us));
    }
    return sim::RelativeNnls(x, y);
  };
  std::vector<const ServiceSample*> all;
  for (const ServiceSample& s : samples) all.push_back(&s);
  const std::vector<double> first = fit(all);
  std::vector<const ServiceSample*> kept;
  for (const ServiceSample* s : all) {
    if (s->service_us - s->miss_us <= 1.5 * (first[0] * s->kernel_us + first[1])) {
      kept.push_back(s);
    }
  }
  return fit(kept);
}

// |predicted / measured - 1| of each sample under {scale, fixed}, sorted.
std::vector<double> RelativeErrors(const std::vector<double>& a,
                                   const std::vector<ServiceSample>& samples) {
  std::vector<double> e;
  for (const ServiceSample& s : samples) {
    e.push_back(std::abs((a[0] * s.kernel_us + a[1] + s.miss_us) / s.service_us - 1.0));
  }
  std::sort(e.begin(), e.end());
  return e;
}

// One OK answer of a real cluster's run (helm-bench's requests.csv) that ran in a batch of one.
struct ClusterAnswer {
  int64_t compute_us = 0;
  int64_t cached_tokens = 0;
  int64_t computed_tokens = 0;
  int64_t emb_misses = 0;
};

// The OK answers of batch size 1 in a helm-bench requests.csv; exits naming the file on a bad one.
std::vector<ClusterAnswer> ReadClusterAnswers(const std::string& path) {
  std::ifstream in(path);
  if (!in) Fail(absl::StrCat("--spread-from: cannot open ", path));
  std::string line;
  std::getline(in, line);
  const std::vector<std::string> header = absl::StrSplit(line, ',');
  auto column = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) Fail(absl::StrCat("--spread-from: ", path, " has no column ", name));
    return static_cast<size_t>(it - header.begin());
  };
  const size_t code = column("code"), batch = column("batch_size"), compute = column("compute_us"),
               cached = column("cached_tokens"), computed = column("computed_tokens"),
               misses = column("emb_misses");
  std::vector<ClusterAnswer> answers;
  while (std::getline(in, line)) {
    const std::vector<std::string> f = absl::StrSplit(line, ',');
    if (f.size() != header.size())
      Fail(absl::StrCat("--spread-from: bad row in ", path, ": ", line));
    if (f[code] != "0" || f[batch] != "1") continue;
    ClusterAnswer a;
    if (!absl::SimpleAtoi(f[compute], &a.compute_us) ||
        !absl::SimpleAtoi(f[cached], &a.cached_tokens) ||
        !absl::SimpleAtoi(f[computed], &a.computed_tokens) ||
        !absl::SimpleAtoi(f[misses], &a.emb_misses)) {
      Fail(absl::StrCat("--spread-from: bad number in ", path, ": ", line));
    }
    if (a.compute_us > 0) answers.push_back(a);
  }
  if (answers.size() < 100) {
    Fail(absl::StrCat("--spread-from: ", path, " has ", answers.size(),
                      " OK answers of batch size 1; at least 100 are needed"));
  }
  return answers;
}

int RunCalibrate(config::Config config, const std::string& path, const std::string& kernel_path,
                 int requests, int warmup, const std::string& spread_from) {
  config.workload.seed += 1;
  config.node.max_batch = 1;
  config.node.workers = 1;
  auto dims = model::DimsFromOptions(config.model, config.emb, config.kv);
  if (!dims.ok()) Fail(dims.status().ToString());
  auto kernel_profile = sim::LoadCalibration(kernel_path);
  if (!kernel_profile.ok()) Fail(kernel_profile.status().ToString());
  // The emulated link, exactly: its time is taken out of each answer before the fit.
  kernel_profile->pcie_bytes_per_s = config.pool.pcie_emulation_gbps * 1e9;
  kernel_profile->pcie_latency_us = 0;
  auto cost = sim::CostModel::Create(*dims, *kernel_profile, config.model.candidate_microbatch);
  if (!cost.ok()) Fail(cost.status().ToString());
  const int64_t row_bytes = int64_t{config.emb.dim} * DtypeBytes(dims->emb_dtype);

  std::vector<BenchJob> jobs = Generate(config, warmup + requests);
  auto core = NodeCore::Create(config, Clock::Real());
  if (!core.ok()) Fail(core.status().ToString());
  auto pool = BatchWorkers::Start(core->get(), 1);
  if (!pool.ok()) Fail(pool.status().ToString());
  std::atomic<int64_t> errors{0};
  Offer(**pool, jobs, 0, warmup, /*outstanding=*/1, &errors);
  Offer(**pool, jobs, warmup, warmup + requests, /*outstanding=*/1, &errors);
  (*pool)->Stop();
  if (errors.load() > 0) Fail("requests failed");

  // The kernel calibration's cost of one request served alone in a batch.
  auto cost_of = [&](int64_t computed, int64_t cached, int64_t candidates, int64_t emb_misses) {
    sim::BatchWork work;
    work.requests.push_back(sim::RequestWork{.suffix_tokens = computed,
                                             .cached_tokens = cached,
                                             .candidates = candidates,
                                             .emb_rows_gathered = computed + candidates,
                                             .emb_miss_bytes = emb_misses * row_bytes});
    return cost->BatchCost(work);
  };
  std::vector<ServiceSample> samples;
  for (int i = warmup; i < warmup + requests; ++i) {
    const RankOutput& out = jobs[i].output;
    const sim::CostBreakdown b =
        cost_of(out.computed_tokens, out.cached_tokens,
                static_cast<int64_t>(jobs[i].candidates.size()), out.emb_misses);
    samples.push_back(
        ServiceSample{.kernel_us = b.total_us() - b.miss_us(),
                      .miss_us = b.miss_us(),
                      .service_us = static_cast<double>(out.queue_us + out.compute_us)});
  }
  // Held out: fitted on the first half, measured on the second.
  const size_t half = samples.size() / 2;
  const std::vector<ServiceSample> first(samples.begin(), samples.begin() + half);
  const std::vector<ServiceSample> second(samples.begin() + half, samples.end());
  const std::vector<double> held = RelativeErrors(FitService(first), second);
  const double median_error = held[held.size() / 2];
  const double p90_error = held[held.size() * 9 / 10];
  const std::vector<double> kernel_only = RelativeErrors({1.0, 0.0}, samples);
  const std::vector<double> a = FitService(samples);
  const double scale = a[0], fixed_us = a[1];
  // Every rate scaled by 1 / scale, the per-batch constant by scale, plus the fixed part.
  sim::CostProfile p = *kernel_profile;
  p.dense_flops_per_s = p.effective_dense_flops_per_s() / scale;
  p.attention_flops_per_s = p.effective_attention_flops_per_s() / scale;
  p.memory_bytes_per_s = p.effective_memory_bytes_per_s() / scale;
  p.gather_bytes_per_s = p.effective_gather_bytes_per_s() / scale;
  p.dense_efficiency = p.attention_efficiency = p.memory_efficiency = p.gather_efficiency = 1.0;
  p.kernel_launch_us *= scale;
  p.batch_fixed_us = p.batch_fixed_us * scale + fixed_us;
  // The spread around the fit, preempted answers included: measured / predicted (PCIe out of
  // both) at every percentile and at 99.5%, 99.9% and the maximum.
  std::vector<double> ratios;
  for (const ServiceSample& s : samples) {
    ratios.push_back(std::max(1.0, s.service_us - s.miss_us) / (scale * s.kernel_us + fixed_us));
  }
  std::sort(ratios.begin(), ratios.end());
  auto ratio_at = [&ratios](double q) {
    return ratios[std::min(ratios.size() - 1, static_cast<size_t>(q * ratios.size()))];
  };
  const double lone_p50 = ratio_at(0.5), lone_p99 = ratio_at(0.99);
  std::string spread_note =
      "service_ratio_quantiles: measured / fitted over every answer, "
      "preempted ones included";
  if (!spread_from.empty()) {
    // The spread of a node sharing its cores (the real cluster's answers): each answer's
    // compute_us over the fit's prediction for its work, divided by their median (compute_us
    // leaves out the lookups the fit covers, and the real queue_us includes waiting), times this
    // run's median ratio: the cluster's shape around this run's centre.
    const std::vector<ClusterAnswer> answers = ReadClusterAnswers(spread_from);
    ratios.clear();
    for (const ClusterAnswer& a : answers) {
      const sim::CostBreakdown b =
          cost_of(a.computed_tokens, a.cached_tokens, config.workload.candidates, a.emb_misses);
      ratios.push_back(static_cast<double>(a.compute_us) /
                       (scale * (b.total_us() - b.miss_us()) + fixed_us));
    }
    std::sort(ratios.begin(), ratios.end());
    const double median = ratio_at(0.5);
    for (double& r : ratios) r *= lone_p50 / median;
    spread_note = absl::StrFormat(
        "service_ratio_quantiles: from %zu answers of a real cluster (%s): compute_us / fitted, "
        "over their median, times this run's median ratio %.3f (this run alone: P99 %.3f)",
        answers.size(), spread_from, lone_p50, lone_p99);
  }
  p.service_ratio_quantiles.clear();
  for (int i = 0; i < 100; ++i)
    p.service_ratio_quantiles.emplace_back(i / 100.0, ratio_at(i / 100.0));
  p.service_ratio_quantiles.emplace_back(0.995, ratio_at(0.995));
  p.service_ratio_quantiles.emplace_back(0.999, ratio_at(0.999));
  p.service_ratio_quantiles.emplace_back(1.0, ratios.back());
  std::vector<double> service;
  for (const ServiceSample& s : samples) service.push_back(s.service_us);
  std::sort(service.begin(), service.end());
  std::printf(
      "%d answers after %d warm-up (service P50 %.2f ms, P99 %.2f ms): %.3fx the kernel "
      "calibration (%s) + %.1f us per batch; error median %.3f, p90 %.3f with the kernel "
      "calibration alone; held-out error median %.3f, p90 %.3f; spread (measured / fitted) at "
      "P50 %.3f, P90 %.3f, P99 %.3f, max %.3f\n",
      requests, warmup, service[service.size() / 2] / 1000,
      service[service.size() * 99 / 100] / 1000, scale, kernel_path.c_str(), fixed_us,
      kernel_only[kernel_only.size() / 2], kernel_only[kernel_only.size() * 9 / 10], median_error,
      p90_error, ratio_at(0.5), ratio_at(0.9), ratio_at(0.99), ratios.back());
  sim::CalibrationNotes notes;
  notes.base = "cpu";
  notes.machine = absl::StrCat(std::thread::hardware_concurrency(), " CPUs; OpenBLAS core ",
                               kernels::cpu::BlasCoreDescription());
  notes.method = absl::StrFormat(
      "helm_bench_node --calibrate: %s (kernels, thread CPU time) scaled to the demo node core's "
      "service time: one worker, max_batch 1, %d kuairand requests one at a time (workload seed "
      "%d) after %d warm-up; each answer's queue_us + compute_us less its emulated PCIe time ~ "
      "%.4f x the kernel prediction + %.2f us, least squares on relative errors, preempted answers "
      "(> 1.5x the first fit) left out; held-out median error %.3f, p90 %.3f; %s",
      kernel_path, requests, config.workload.seed, warmup, scale, fixed_us, median_error, p90_error,
      spread_note);
  if (absl::Status s = sim::WriteCalibration(path, p, notes); !s.ok()) Fail(s.ToString());
  std::printf("calibration written to %s\n", path.c_str());
  std::printf("HELM_RESULT calibration_service_vs_kernels %.3f\n", scale);
  std::printf("HELM_RESULT calibration_holdout_median_error %.3f\n", median_error);
  return 0;
}

int Main(int argc, char** argv) {
  int requests = 600;
  int warmup = 1200;
  int rounds = 2;
  int workers = 2;
  bool quick = false;
  CLI::App cli("helm_bench_node: the node core at saturation, max_batch 8 vs 1");
  cli.add_option("--requests", requests, "timed requests per run")->check(CLI::Range(16, 1000000));
  cli.add_option("--warmup", warmup, "untimed requests first, on the same core")
      ->check(CLI::Range(0, 1000000));
  cli.add_option("--rounds", rounds, "alternating pairs of runs")->check(CLI::Range(1, 100));
  cli.add_option("--workers", workers, "compute workers")->check(CLI::Range(1, 64));
  cli.add_flag("--quick", quick, "a smoke run (few requests, one round)");
  std::string calibrate_path;
  int calibrate_requests = 3000;
  std::string kernel_calibration = "configs/calibration/cpu-dev.json";
  cli.add_option("--calibrate", calibrate_path,
                 "fit the simulator's CPU cost model to this node core's service time, write the "
                 "calibration JSON here");
  cli.add_option("--calibrate-requests", calibrate_requests, "answers timed for --calibrate")
      ->check(CLI::Range(64, 1000000));
  std::string spread_from;
  cli.add_option("--spread-from", spread_from,
                 "with --calibrate: take the service-time spread from this helm-bench "
                 "requests.csv of a real cluster (nodes sharing their cores) instead of this run");
  cli.add_option("--kernel-calibration", kernel_calibration,
                 "the kernel calibration --calibrate scales (helm_bench_model --calibrate)");
  CLI11_PARSE(cli, argc, argv);
  if (quick) {
    requests = 64;
    warmup = 32;
    rounds = 1;
  }
  auto config = config::ParseConfig(app::kEmbeddedConfig, "<embedded local.yaml>");
  if (!config.ok()) Fail(config.status().ToString());
  if (const std::string error = config::FitWorkloadToNodes(*config); !error.empty()) Fail(error);
  if (!calibrate_path.empty()) {
    return RunCalibrate(*config, calibrate_path, kernel_calibration,
                        quick ? 128 : calibrate_requests, warmup, spread_from);
  }
  std::vector<BenchJob> jobs = Generate(*config, warmup + requests);
  int64_t history = 0;
  for (const BenchJob& job : jobs) history += static_cast<int64_t>(job.items.size());
  std::printf(
      "helm_bench_node: %d %s requests per run after %d that warm the caches (mean history"
      " %.0f events, %zu candidates), %d workers, %s pool, %d round(s)\n",
      requests, config->workload.profile.c_str(), warmup,
      static_cast<double>(history) / jobs.size(), jobs[0].candidates.size(), workers,
      config->pool.backend.c_str(), rounds);
  double sum[2] = {0, 0};
  int64_t errors = 0;
  for (int round = 0; round < rounds; ++round) {
    for (int k = 0; k < 2; ++k) {
      const int max_batch = k == 0 ? 8 : 1;
      const RunResult r = Run(*config, max_batch, workers, warmup, jobs);
      sum[k] += r.requests_per_s;
      errors += r.errors;
      std::printf(
          "  round %d max_batch %d: %8.1f requests/s  mean batch %.2f  p50 %.1f ms  "
          "p99 %.1f ms  KV token hit %.2f  errors %lld\n",
          round + 1, max_batch, r.requests_per_s, r.mean_batch, r.p50_ms, r.p99_ms, r.kv_token_hit,
          static_cast<long long>(r.errors));
      std::fflush(stdout);
    }
  }
  if (errors > 0) Fail("requests failed");
  std::printf("HELM_RESULT batched_vs_unbatched_throughput %.3f\n", sum[0] / sum[1]);
  std::printf("HELM_RESULT node_core_requests_per_s %.1f\n", sum[0] / rounds);
  return 0;
}

}  // namespace
}  // namespace helm::serve

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  return helm::serve::Main(argc, argv);
}
