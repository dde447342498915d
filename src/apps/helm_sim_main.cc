// helm-sim: the cluster's digital twin. Runs simulator.num_nodes node cores (payload-free storage:
// the real cache bookkeeping, time from the cost model) and the routing core on one virtual clock,
// on one thread, over the config's workload, and reports P50/P99/P99.9, SLO attainment, goodput,
// throughput, hit ratios and each node's split. Writes summary.json and timeseries.csv to --out.
// Bad configs stop at start with exit status 2, naming the key.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "apps/app.h"
#include "helm/sim/simulator.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  CLI::App cli("helm-sim: the cluster's digital twin on the real node and routing cores");
  helm::app::CommonFlags flags;
  helm::app::AddCommonFlags(cli, flags);
  std::string out_dir = "out/sim";
  int32_t nodes = 0;
  double duration_s = 0;
  cli.add_option("--out", out_dir, "directory for summary.json and timeseries.csv");
  cli.add_option("--nodes", nodes, "simulated nodes (overrides simulator.num_nodes)");
  cli.add_option("--duration", duration_s, "simulated seconds (overrides simulator.duration_s)");
  helm::app::ParseFlagsOrExit(cli, argc, argv);
  const helm::config::Config config =
      helm::app::LoadConfigOrExit(flags, "helm-sim", [&](helm::config::Config& c) {
        if (nodes > 0) c.simulator.num_nodes = nodes;
        if (duration_s > 0) c.simulator.duration_s = duration_s;
      });
  // The nodes' own logs (pool creation...) would drown the progress line.
  spdlog::set_level(spdlog::level::warn);
  auto sim = helm::sim::Simulator::Create(config);
  if (!sim.ok()) {
    std::fprintf(stderr, "helm-sim: config error: %s\n",
                 std::string(sim.status().message()).c_str());
    return 2;
  }
  std::fprintf(stderr, "helm-sim: %d nodes, %s workload, policy %s, cost profile %s\n",
               config.simulator.num_nodes, config.workload.profile.c_str(),
               config.router.policy.c_str(), (*sim)->cost_model().profile().name.c_str());
  helm::sim::SimulatorHooks hooks;
  hooks.progress = [](double t_s, int64_t completions) {
    std::fprintf(stderr, "\r[%7.1f s simulated] %lld answered", t_s,
                 static_cast<long long>(completions));
  };
  absl::StatusOr<helm::sim::SimResult> result = (*sim)->Run(hooks);
  std::fprintf(stderr, "\n");
  if (!result.ok()) {
    std::fprintf(stderr, "helm-sim: %s\n", result.status().ToString().c_str());
    return 1;
  }
  const helm::sim::SimResult& r = *result;
  std::printf("simulated %.1f s in %.2f s of wall time (%.1fx real time)\n", r.simulated_s,
              r.wall_s, r.wall_s > 0 ? r.simulated_s / r.wall_s : 0.0);
  std::printf("%10s %10s %9s %9s %9s %9s %8s %10s %10s %7s %7s\n", "arrivals", "ok", "errors",
              "p50_ms", "p99_ms", "p99.9_ms", "SLO", "goodput/s", "ok/s", "kv_hit", "emb_hit");
  std::printf("%10lld %10lld %9lld %9.2f %9.2f %9.2f %7.1f%% %10.1f %10.1f %7.3f %7.3f\n",
              static_cast<long long>(r.arrivals), static_cast<long long>(r.completions),
              static_cast<long long>(r.failures), r.latency_us.Quantile(0.5) / 1000,
              r.latency_us.Quantile(0.99) / 1000, r.latency_us.Quantile(0.999) / 1000,
              100 * r.slo_attainment(), r.goodput_per_s(), r.throughput_per_s(), r.kv_token_hit,
              r.emb_hit);
  std::printf("%-10s %9s %7s %7s %11s %6s\n", "node", "replies", "kv_hit", "emb_hit", "split",
              "busy");
  for (const helm::sim::NodeResult& n : r.nodes) {
    std::printf("%-10s %9lld %7.3f %7.3f %5.2f->%4.2f %5.1f%%\n", n.id.c_str(),
                static_cast<long long>(n.replies), n.kv_token_hit, n.emb_hit, n.split_first,
                n.split_last, 100 * n.busy_fraction);
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  std::ofstream(out_dir + "/summary.json") << helm::sim::ToJson(r, config);
  std::ofstream(out_dir + "/timeseries.csv") << helm::sim::ToCsv(r);
  std::printf("files: %s/summary.json, %s/timeseries.csv\n", out_dir.c_str(), out_dir.c_str());
  std::printf("HELM_RESULT sim_p99_ms %.3f\n", r.latency_us.Quantile(0.99) / 1000);
  std::printf("HELM_RESULT sim_speedup_vs_realtime %.2f\n",
              r.wall_s > 0 ? r.simulated_s / r.wall_s : 0.0);
  return 0;
}
