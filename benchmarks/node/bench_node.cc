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
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/synchronization/notification.h"
#include "apps/app.h"
#include "helm/config/config.h"
#include "helm/serve/batch_workers.h"
#include "helm/serve/node_core.h"
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
  CLI11_PARSE(cli, argc, argv);
  if (quick) {
    requests = 64;
    warmup = 32;
    rounds = 1;
  }
  auto config = config::ParseConfig(app::kEmbeddedConfig, "<embedded local.yaml>");
  if (!config.ok()) Fail(config.status().ToString());
  if (const std::string error = config::FitWorkloadToNodes(*config); !error.empty()) Fail(error);
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

int main(int argc, char** argv) { return helm::serve::Main(argc, argv); }
