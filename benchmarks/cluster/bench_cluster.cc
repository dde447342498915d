// helm_bench_cluster (make bench-cluster): the serving path measured on a local cluster of real
// processes on 127.0.0.1 (helm-router + 2 helm-node, the embedded config unless --config).
//
// 1. Router hop. At light load (one request at a time), interleaved round by round: a bare gRPC
//    echo (an in-process Recommender that answers at once), the same request direct to the node
//    that holds the user's K/V, and through the router. Requests carry 2048-event histories, so
//    the router's handling of large requests shows.
//      router_hop_overhead_vs_grpc_echo = (P50 via router - P50 direct) / P50 echo
// 2. Routing policies. The config's workload (same seed) through a fresh cluster with
//    round_robin, then with helm, open loop at ~70% of the cluster's capacity (measured first: its
//    throughput under round robin when offered far more than it can serve).
//      kv_hit_helm_vs_round_robin = KV token hit ratio (helm) / (round_robin)
//      p99_helm_vs_round_robin    = P99 latency (helm) / (round_robin)
// 3. Sessions without herding. The same workload shaped into sessions (a user sends several
//    requests close together, then stays away), at light load (--session-load of the capacity,
//    default 30%), under round_robin and then helm:
//      placement_max_share               = the busiest node's share of helm's replies (fair: 1/N)
//      kv_hit_session_helm_vs_round_robin = KV token hit ratio (helm) / (round_robin)
// 4. The split controller. The config's phased workload (e.g. steady -> trend -> burst) at its
//    own rate (make run's demo load) through helm routing, first with every node's split fixed at
//    0.5, then with the config's control.policy moving it (skipped when that is static), in
//    --controller-rounds pairs (default 1) whose order alternates:
//      p99_controller_vs_static_loopback = P99 latency of all the controller runs' requests /
//                                          that of all the runs' with the split fixed at 0.5
//    (each pair's own ratio, and their median, are printed beside it).
// Runs 1-3 measure routing alone: their nodes' splits are fixed (control.policy static).
// Each run's table, summary.json, timeseries.csv and plot.png go under --out.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "apps/app.h"
#include "bench/load_generator.h"
#include "bench/report.h"
#include "bench/stats.h"
#include "grpcpp/grpcpp.h"
#include "helm/cluster/local_cluster.h"
#include "helm/common/process.h"
#include "helm/v1/recommender.grpc.pb.h"
#include "helm/workload/generator.h"
#include "helm/workload/phases.h"

#ifndef HELM_SOURCE_DIR
#define HELM_SOURCE_DIR "."
#endif

namespace helm::bench {
namespace {

struct Flags {
  std::string bin_dir;
  std::string out_dir = "out/bench-cluster";
  double seconds = 60;            // per policy run
  int hop_rounds = 1000;          // rounds of (echo, direct, router)
  int hop_history = 2048;         // history events of the router-hop requests
  double load = 0.7;              // offered load over the measured capacity
  double session_load = 0.3;      // offered load of the session runs over the measured capacity
  double controller_seconds = 0;  // length of each controller run (0: the config's phases)
  int controller_rounds = 1;      // pairs of (fixed split, controller) runs
  bool controller_only = false;   // run 4 alone
  double rate = 0;                // requests/s for the policy runs; 0: load x measured capacity
  int num_nodes = 2;
  std::string python = "/usr/bin/python3";
  std::string plot_script = std::string(HELM_SOURCE_DIR) + "/scripts/plot_bench.py";
};

// The bare echo: a Recommender that answers every Rank at once with the request id.
class EchoService final : public v1::Recommender::Service {
  grpc::Status Rank(grpc::ServerContext*, const v1::RankRequest* request,
                    v1::RankResponse* response) override {
    response->set_request_id(request->request_id());
    return grpc::Status::OK;
  }
};

std::unique_ptr<cluster::LocalCluster> StartCluster(const Flags& flags,
                                                    const std::string& config_path,
                                                    const std::string& policy,
                                                    const std::string& log_dir) {
  cluster::LocalClusterOptions options;
  options.bin_dir = flags.bin_dir;
  options.config_path = config_path;
  options.num_nodes = flags.num_nodes;
  options.policy = policy;
  options.log_dir = log_dir;
  std::filesystem::create_directories(log_dir);
  absl::StatusOr<std::unique_ptr<cluster::LocalCluster>> started =
      cluster::LocalCluster::Start(options);
  if (!started.ok()) {
    std::fprintf(stderr, "helm_bench_cluster: %s\n",
                 std::string(started.status().message()).c_str());
    return nullptr;
  }
  return *std::move(started);
}

int64_t Median(std::vector<int64_t> values) {
  std::sort(values.begin(), values.end());
  return NearestRank(values, 0.5);
}

struct HopResult {
  int64_t echo_p50_us = 0, direct_p50_us = 0, router_p50_us = 0;
  bool ok = false;
};

HopResult MeasureHop(const Flags& flags, const config::Config& config,
                     const std::string& config_path) {
  HopResult result;
  auto cluster = StartCluster(flags, config_path, "helm", flags.out_dir + "/logs/hop");
  if (cluster == nullptr) return result;

  EchoService echo;
  int echo_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &echo_port);
  builder.RegisterService(&echo);
  std::unique_ptr<grpc::Server> echo_server = builder.BuildAndStart();

  // One user's history (2048 events unless --hop-history; within the config's caps) and 16
  // candidates.
  const int history = std::min(flags.hop_history, config.node.max_history);
  // Few candidates: the node's compute is common to both paths and only adds noise to the
  // difference of the two medians.
  const int candidates = std::min(16, config.node.max_candidates);
  v1::RankRequest request;
  request.set_user_id(777);
  request.set_top_k(10);
  for (int i = 0; i < history; ++i) {
    request.add_history_item_ids((int64_t{i} * 7919 + 13) % config.emb.num_items);
    request.add_history_actions(i % std::max(1, config.model.num_actions));
    request.add_history_timestamps_ms(1'700'000'000'000 + int64_t{i} * 60'000);
  }
  for (int c = 0; c < candidates; ++c) {
    request.add_candidate_item_ids((int64_t{c} * 104729 + 5) % config.emb.num_items);
  }

  auto connect = [](const std::string& address) {
    return v1::Recommender::NewStub(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  };
  auto router = connect(cluster->router_address());
  auto echo_stub = connect(absl::StrCat("127.0.0.1:", echo_port));
  auto call = [&](v1::Recommender::Stub& stub, v1::RankResponse* response) -> int64_t {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const auto start = std::chrono::steady_clock::now();
    const grpc::Status status = stub.Rank(&context, request, response);
    const auto end = std::chrono::steady_clock::now();
    if (!status.ok()) {
      std::fprintf(stderr, "helm_bench_cluster: Rank failed: %s\n", status.error_message().c_str());
      return -1;
    }
    return std::chrono::duration_cast<std::chrono::microseconds>(end - start).count();
  };

  // The first call through the router computes and caches the history on one node; every later
  // call, direct or routed, reuses it there.
  v1::RankResponse response;
  if (call(*router, &response) < 0) return result;
  const std::string holder = response.info().node_id();
  int holder_index = -1;
  for (int i = 0; i < flags.num_nodes; ++i) {
    if (holder == absl::StrCat("node-", i)) holder_index = i;
  }
  if (holder_index < 0) {
    std::fprintf(stderr, "helm_bench_cluster: unknown node id '%s'\n", holder.c_str());
    return result;
  }
  auto direct = connect(cluster->node_addresses()[holder_index]);
  std::vector<int64_t> echo_us, direct_us, router_us;
  int routed_elsewhere = 0;
  for (int round = -20; round < flags.hop_rounds; ++round) {  // 20 warm-up rounds
    const int64_t e = call(*echo_stub, &response);
    const int64_t d = call(*direct, &response);
    const int64_t r = call(*router, &response);
    if (e < 0 || d < 0 || r < 0) return result;
    routed_elsewhere += response.info().node_id() != holder;
    if (round < 0) continue;
    echo_us.push_back(e);
    direct_us.push_back(d);
    router_us.push_back(r);
  }
  echo_server->Shutdown();
  cluster->Stop(absl::Seconds(10));
  result.echo_p50_us = Median(echo_us);
  result.direct_p50_us = Median(direct_us);
  result.router_p50_us = Median(router_us);
  result.ok = true;
  std::printf(
      "router hop (%d rounds, %d-event history, %d candidates; cached on %s):\n"
      "  P50 bare gRPC echo %lld us, direct to node %lld us, via router %lld us "
      "(%d routed to another node)\n",
      flags.hop_rounds, history, candidates, holder.c_str(),
      static_cast<long long>(result.echo_p50_us), static_cast<long long>(result.direct_p50_us),
      static_cast<long long>(result.router_p50_us), routed_elsewhere);
  return result;
}

// One open-loop run of the config's workload at `rate` through a fresh cluster with `policy`.
// `ok_latencies_us`: where to append the latencies of its OK requests (nullptr: nowhere).
absl::StatusOr<Report> RunPolicy(const Flags& flags, const config::Config& config,
                                 const std::string& config_path, const std::string& policy,
                                 double rate, double seconds, const std::string& out_dir,
                                 int32_t max_in_flight = 0, bool sessions = false,
                                 bool phases = false,
                                 std::vector<int64_t>* ok_latencies_us = nullptr) {
  auto cluster = StartCluster(flags, config_path, policy, out_dir + "/logs");
  if (cluster == nullptr) return absl::UnavailableError("the cluster did not start");
  workload::WorkloadOptions w = config.workload;
  w.rate_per_s = rate;
  w.duration_s = seconds;
  if (!phases) w.phases.clear();
  w.sessions = sessions;
  absl::StatusOr<std::unique_ptr<workload::Generator>> generator = workload::Generator::Create(w);
  if (!generator.ok()) return generator.status();
  LoadOptions load;
  load.target = cluster->router_address();
  load.nodes = cluster->node_addresses();
  load.slo_ms = w.slo_ms;
  load.deadline_ms = w.deadline_ms;
  load.max_in_flight = max_in_flight > 0 ? max_in_flight : w.max_in_flight;
  load.top_k = w.top_k;
  load.progress = stderr;
  load.progress_in_place = isatty(fileno(stderr)) != 0;
  std::fprintf(stderr, "== %s: %s %s%s at %.1f/s for %.0f s\n", policy.c_str(), w.profile.c_str(),
               w.phases.empty() ? "steady" : w.phases.c_str(), sessions ? " in sessions" : "", rate,
               seconds);
  absl::StatusOr<std::unique_ptr<LoadGenerator>> runner =
      LoadGenerator::Create(load, *std::move(generator));
  if (!runner.ok()) return runner.status();
  absl::StatusOr<RunResult> run = (*runner)->Run();
  cluster->Stop(absl::Seconds(10));
  if (!run.ok()) return run.status();

  Report report = BuildReport(*run, w.slo_ms);
  if (ok_latencies_us != nullptr) {
    for (const Completion& c : run->completions) {
      if (c.code == 0) ok_latencies_us->push_back(c.latency_us);
    }
  }
  RunInfo info;
  info.target = policy + " router";
  info.profile = w.profile;
  info.phases = w.phases.empty() ? absl::StrCat("steady:", seconds) : w.phases;
  info.rate_per_s = rate;
  info.seed = w.seed;
  info.deadline_ms = w.deadline_ms;
  info.max_in_flight = load.max_in_flight;
  std::fputs("\n", stderr);
  std::fputs(FormatTable(report, info).c_str(), stdout);
  absl::StatusOr<std::string> files =
      WriteRunFiles(*run, report, info, out_dir, flags.python, flags.plot_script);
  if (!files.ok()) return files.status();
  std::printf("%s\n\n", files->c_str());
  return report;
}

int RunSessions(const Flags& flags, const config::Config& config, const std::string& config_path,
                double capacity, double rate);
int RunController(
    const Flags& flags, const config::Config& config, const std::string& controller_config_path,
    double rate,
    const std::function<std::string(const config::Config&, const std::string&)>& write_config);

int Main(int argc, char** argv) {
  CLI::App cli("helm_bench_cluster: router hop and routing policies on a local cluster");
  app::CommonFlags common;
  app::AddCommonFlags(cli, common);
  Flags flags;
  flags.bin_dir = std::filesystem::canonical("/proc/self/exe").parent_path().string();
  cli.add_option("--bin-dir", flags.bin_dir, "where helm-node and helm-router are");
  cli.add_option("--out", flags.out_dir, "directory for each run's files");
  cli.add_option("--seconds", flags.seconds, "length of each policy run (s)");
  cli.add_option("--hop-rounds", flags.hop_rounds, "rounds of the router-hop measurement");
  cli.add_option("--hop-history", flags.hop_history, "history events of the router-hop requests");
  cli.add_option("--load", flags.load, "offered load over the measured capacity");
  cli.add_option("--rate", flags.rate, "request rate of the policy runs (1/s; 0: from --load)");
  cli.add_option("--session-load", flags.session_load,
                 "offered load of the session runs over the measured capacity (0: skip them)");
  cli.add_option("--controller-seconds", flags.controller_seconds,
                 "length of each split-controller run, the phases scaled to it (0: as configured)");
  cli.add_option("--controller-rounds", flags.controller_rounds,
                 "pairs of runs (split fixed at 0.5, controller), alternating which goes first; "
                 "the figure pools their requests")
      ->check(CLI::Range(1, 21));
  cli.add_flag("--controller-only", flags.controller_only,
               "run only the split-controller pairs (run 4), not the router hop, the capacity "
               "and the routing runs");
  cli.add_option("--nodes", flags.num_nodes, "node processes");
  cli.add_option("--python", flags.python, "Python with matplotlib for the plots");
  app::ParseFlagsOrExit(cli, argc, argv);
  config::Config config = app::LoadConfigOrExit(common, "helm_bench_cluster");
  if (const std::string error = config::FitWorkloadToNodes(config); !error.empty()) {
    std::fprintf(stderr, "helm_bench_cluster: %s\n", error.c_str());
    return 2;
  }
  // Every process reads the same config: a file, or the embedded default written out.
  std::filesystem::create_directories(flags.out_dir);
  std::string config_path = common.config_path;
  if (config_path.empty()) {
    config_path = flags.out_dir + "/config.yaml";
    std::FILE* f = std::fopen(config_path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "helm_bench_cluster: cannot write %s\n", config_path.c_str());
      return 1;
    }
    std::fputs(app::kEmbeddedConfig, f);
    std::fclose(f);
  }

  // Runs 1-3 compare routing policies: every node's split stays at the config's initial split.
  // Run 4 gives the config's controller a file of its own, and its static baseline another.
  auto write_config = [&](const config::Config& c, const std::string& name) -> std::string {
    const std::string path = flags.out_dir + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) return "";
    std::fputs(config::ConfigToYaml(c).c_str(), f);
    std::fclose(f);
    return path;
  };
  config::Config pinned = config;
  pinned.control.policy = "static";
  pinned.control.audit_log.clear();
  const std::string controller_config_path = config_path;
  config_path = write_config(pinned, "config-static.yaml");
  if (config_path.empty()) {
    std::fprintf(stderr, "helm_bench_cluster: cannot write under %s\n", flags.out_dir.c_str());
    return 1;
  }

  if (flags.controller_only) {
    return RunController(flags, config, controller_config_path, config.workload.rate_per_s,
                         write_config);
  }
  const HopResult hop = MeasureHop(flags, config, config_path);
  if (!hop.ok) return 1;

  double rate = flags.rate;
  double capacity = 0;
  if (rate <= 0) {
    // Capacity: the throughput of the cluster offered far more than it can serve (4x the
    // config's rate, at most 32 requests in flight; the rest are dropped, never queued).
    absl::StatusOr<Report> saturated =
        RunPolicy(flags, config, config_path, "round_robin", 4 * config.workload.rate_per_s,
                  std::max(8.0, flags.seconds / 6), flags.out_dir + "/calibration",
                  /*max_in_flight=*/32);
    if (!saturated.ok() || saturated->overall.throughput_per_s <= 0) {
      std::fprintf(stderr, "helm_bench_cluster: capacity calibration failed: %s\n",
                   saturated.ok() ? "nothing was served"
                                  : std::string(saturated.status().message()).c_str());
      return 1;
    }
    capacity = saturated->overall.throughput_per_s;
    rate = flags.load * capacity;
    std::printf(
        "capacity (throughput under overload, round robin): %.1f/s; policy runs at "
        "%.0f%% of it: %.1f/s\n\n",
        capacity, 100 * flags.load, rate);
  }
  absl::StatusOr<Report> rr = RunPolicy(flags, config, config_path, "round_robin", rate,
                                        flags.seconds, flags.out_dir + "/round_robin");
  absl::StatusOr<Report> helm =
      RunPolicy(flags, config, config_path, "helm", rate, flags.seconds, flags.out_dir + "/helm");
  if (!rr.ok() || !helm.ok()) {
    std::fprintf(stderr, "helm_bench_cluster: %s\n",
                 std::string((rr.ok() ? helm.status() : rr.status()).message()).c_str());
    return 1;
  }
  const Summary& a = rr->overall;
  const Summary& b = helm->overall;
  // A run where the cluster failed most requests measures nothing: say so and fail.
  for (const auto& [name, summary] : {std::pair{"round_robin", &a}, std::pair{"helm", &b}}) {
    if (summary->ok < summary->scheduled / 2) {
      std::fprintf(stderr, "helm_bench_cluster: the %s run served %lld of %lld requests\n", name,
                   static_cast<long long>(summary->ok), static_cast<long long>(summary->scheduled));
      return 1;
    }
  }
  std::printf("%-12s %8s %8s %10s %10s %10s %8s\n", "policy", "sent", "ok", "p50_us", "p99_us",
              "kv_hit", "slo");
  for (const auto& [name, s] : {std::pair{"round_robin", &a}, std::pair{"helm", &b}}) {
    std::printf(
        "%-12s %8lld %8lld %10lld %10lld %10.3f %8.3f\n", name, static_cast<long long>(s->sent),
        static_cast<long long>(s->ok), static_cast<long long>(s->latency.p50_us),
        static_cast<long long>(s->latency.p99_us), s->kv_token_hit_ratio, s->slo_attainment);
  }
  std::printf("\nHELM_RESULT router_hop_overhead_vs_grpc_echo %.3f\n",
              static_cast<double>(hop.router_p50_us - hop.direct_p50_us) / hop.echo_p50_us);
  if (a.kv_token_hit_ratio > 0) {
    std::printf("HELM_RESULT kv_hit_helm_vs_round_robin %.3f\n",
                b.kv_token_hit_ratio / a.kv_token_hit_ratio);
  }
  if (a.latency.p99_us > 0 && b.latency.p99_us > 0) {
    std::printf("HELM_RESULT p99_helm_vs_round_robin %.3f\n",
                static_cast<double>(b.latency.p99_us) / a.latency.p99_us);
  }
  if (flags.session_load > 0 && RunSessions(flags, config, config_path, capacity, rate) != 0) {
    return 1;
  }
  return RunController(flags, config, controller_config_path, config.workload.rate_per_s,
                       write_config);
}

// Run 4: the config's phased workload with every split fixed at 0.5, then under its controller.
int RunController(
    const Flags& flags, const config::Config& config, const std::string& controller_config_path,
    double rate,
    const std::function<std::string(const config::Config&, const std::string&)>& write_config) {
  if (config.control.policy == "static") return 0;
  config::Config fixed = config;
  fixed.control.policy = "static";
  fixed.control.audit_log.clear();
  fixed.pool.initial_split = 0.5;
  const std::string fixed_path = write_config(fixed, "config-split-0.5.yaml");
  // The phases, scaled to --controller-seconds when given.
  absl::StatusOr<std::vector<workload::Phase>> phases = workload::ParsePhases(
      config.workload.phases, config.workload.regime, config.workload.duration_s);
  if (!phases.ok()) {
    std::fprintf(stderr, "helm_bench_cluster: workload.phases: %s\n",
                 std::string(phases.status().message()).c_str());
    return 1;
  }
  const double total_s = phases->back().end_us() / 1e6;
  const double scale = flags.controller_seconds > 0 ? flags.controller_seconds / total_s : 1.0;
  config::Config run_config = config;
  run_config.workload.phases.clear();
  for (const workload::Phase& p : *phases) {
    absl::StrAppendFormat(&run_config.workload.phases, "%s%s:%g",
                          run_config.workload.phases.empty() ? "" : ",",
                          workload::RegimeName(p.regime), p.duration_us / 1e6 * scale);
  }
  const double seconds = total_s * scale;
  // Pairs of runs, the order alternating (fixed first, then controller first, ...), so that the
  // shared machine's drift falls on both sides. The figure is the P99 of all the controller runs'
  // requests over that of all the fixed runs': one run's P99 rests on its ~75 slowest requests,
  // and moves by ~20% from run to run on a shared machine.
  std::vector<double> ratios;
  std::vector<int64_t> still_latencies, moving_latencies;
  for (int round = 0; round < flags.controller_rounds; ++round) {
    const std::string suffix = flags.controller_rounds > 1 ? absl::StrCat("_", round + 1) : "";
    absl::StatusOr<Report> still, moving;
    for (int k = 0; k < 2; ++k) {
      if ((k == 0) == (round % 2 == 0)) {
        still = RunPolicy(flags, run_config, fixed_path, "helm", rate, seconds,
                          flags.out_dir + "/split_fixed" + suffix, /*max_in_flight=*/0,
                          /*sessions=*/false, /*phases=*/true, &still_latencies);
      } else {
        moving = RunPolicy(flags, run_config, controller_config_path, "helm", rate, seconds,
                           flags.out_dir + "/split_controller" + suffix, /*max_in_flight=*/0,
                           /*sessions=*/false, /*phases=*/true, &moving_latencies);
      }
    }
    if (!still.ok() || !moving.ok()) {
      std::fprintf(stderr, "helm_bench_cluster: %s\n",
                   std::string((still.ok() ? moving.status() : still.status()).message()).c_str());
      return 1;
    }
    std::printf(
        "split controller (%s) vs split fixed at 0.5, pair %d of %d: P99 %lld vs %lld us, P50 "
        "%lld vs %lld us, SLO %.3f vs %.3f\n",
        config.control.policy.c_str(), round + 1, flags.controller_rounds,
        static_cast<long long>(moving->overall.latency.p99_us),
        static_cast<long long>(still->overall.latency.p99_us),
        static_cast<long long>(moving->overall.latency.p50_us),
        static_cast<long long>(still->overall.latency.p50_us), moving->overall.slo_attainment,
        still->overall.slo_attainment);
    std::fflush(stdout);
    if (still->overall.latency.p99_us > 0) {
      ratios.push_back(static_cast<double>(moving->overall.latency.p99_us) /
                       still->overall.latency.p99_us);
    }
  }
  const LatencyPercentiles still_all = Percentiles(still_latencies);
  const LatencyPercentiles moving_all = Percentiles(moving_latencies);
  if (!ratios.empty() && still_all.p99_us > 0) {
    std::sort(ratios.begin(), ratios.end());
    std::printf(
        "P99 ratios of the pairs: %s (median %.3f)\n",
        absl::StrJoin(ratios, ", ",
                      [](std::string* out, double r) { absl::StrAppendFormat(out, "%.3f", r); })
            .c_str(),
        ratios[ratios.size() / 2]);
    std::printf(
        "all %d pairs' requests pooled: P99 %lld us (controller, %lld requests) vs %lld us (split "
        "fixed at 0.5, %lld requests); P50 %lld vs %lld us\n",
        flags.controller_rounds, static_cast<long long>(moving_all.p99_us),
        static_cast<long long>(moving_all.count), static_cast<long long>(still_all.p99_us),
        static_cast<long long>(still_all.count), static_cast<long long>(moving_all.p50_us),
        static_cast<long long>(still_all.p50_us));
    std::printf("HELM_RESULT p99_controller_vs_static_loopback %.3f\n",
                static_cast<double>(moving_all.p99_us) / static_cast<double>(still_all.p99_us));
  }
  return 0;
}

// Run 3: sessions at light load, where cache warmth alone would herd new users onto one node.
int RunSessions(const Flags& flags, const config::Config& config, const std::string& config_path,
                double capacity, double rate) {
  const double session_rate =
      capacity > 0 ? flags.session_load * capacity : rate * flags.session_load / flags.load;
  absl::StatusOr<Report> srr =
      RunPolicy(flags, config, config_path, "round_robin", session_rate, flags.seconds,
                flags.out_dir + "/sessions_round_robin", /*max_in_flight=*/0, /*sessions=*/true);
  absl::StatusOr<Report> shelm =
      RunPolicy(flags, config, config_path, "helm", session_rate, flags.seconds,
                flags.out_dir + "/sessions_helm", /*max_in_flight=*/0, /*sessions=*/true);
  if (!srr.ok() || !shelm.ok()) {
    std::fprintf(stderr, "helm_bench_cluster: %s\n",
                 std::string((srr.ok() ? shelm.status() : srr.status()).message()).c_str());
    return 1;
  }
  int64_t most = 0, replies = 0;
  for (const NodeSummary& n : shelm->overall.nodes) {
    most = std::max(most, n.replies);
    replies += n.replies;
  }
  std::printf("sessions at %.1f/s: helm replies per node:", session_rate);
  for (const NodeSummary& n : shelm->overall.nodes) {
    std::printf(" %s %lld", n.node_id.c_str(), static_cast<long long>(n.replies));
  }
  std::printf("; KV token hit helm %.3f, round_robin %.3f\n", shelm->overall.kv_token_hit_ratio,
              srr->overall.kv_token_hit_ratio);
  if (replies > 0) {
    std::printf("HELM_RESULT placement_max_share %.3f\n", static_cast<double>(most) / replies);
  }
  if (srr->overall.kv_token_hit_ratio > 0) {
    std::printf("HELM_RESULT kv_hit_session_helm_vs_round_robin %.3f\n",
                shelm->overall.kv_token_hit_ratio / srr->overall.kv_token_hit_ratio);
  }
  return 0;
}

}  // namespace
}  // namespace helm::bench

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  return helm::bench::Main(argc, argv);
}
