// helm-bench: the open-loop load generator. Sends Rank requests from a workload (dataset profile
// and regime phases, or a trace) to a router or a node at their scheduled times, shows live
// progress, and ends with a table, a JSON summary, a per-second CSV, a PNG plot and HELM_RESULT
// lines. See src/bench/load_generator.h for the measurement model.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "apps/app.h"
#include "bench/load_generator.h"
#include "bench/report.h"
#include "helm/common/process.h"
#include "helm/v1/recommender.pb.h"
#include "helm/workload/generator.h"
#include "spdlog/spdlog.h"

#ifndef HELM_SOURCE_DIR
#define HELM_SOURCE_DIR "."
#endif

namespace {

struct BenchFlags {
  std::string target;
  std::string nodes;
  std::string out_dir = "out/bench";
  bool no_plot = false;
  std::string transport_calibration;
  bool no_progress = false;
  bool dry_run = false;
  std::string python = "/usr/bin/python3";
  std::string plot_script = std::string(HELM_SOURCE_DIR) + "/scripts/plot_bench.py";
};

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "helm-bench: %s\n", message.c_str());
  return code;
}

// Generates the whole schedule and builds every RankRequest without sending: what the send loop
// spends per request, split into generation (first visits synthesise a whole history; revisits
// append a few events and draw candidates) and building the request's columns.
int DryRun(std::unique_ptr<helm::workload::Generator> generator) {
  using Clock = std::chrono::steady_clock;
  helm::workload::Request request;
  helm::v1::RankRequest proto;
  struct Tally {
    int64_t requests = 0;
    int64_t events = 0;
    double seconds = 0;
  } first, revisit, build;
  auto before = Clock::now();
  while (generator->Next(&request)) {
    const auto generated = Clock::now();
    Tally& kind = request.first_visit ? first : revisit;
    ++kind.requests;
    kind.events += static_cast<int64_t>(request.history_item_ids.size());
    kind.seconds += std::chrono::duration<double>(generated - before).count();
    proto.Clear();
    proto.set_user_id(request.user_id);
    proto.mutable_history_item_ids()->Add(request.history_item_ids.begin(),
                                          request.history_item_ids.end());
    proto.mutable_history_actions()->Add(request.history_actions.begin(),
                                         request.history_actions.end());
    proto.mutable_history_timestamps_ms()->Add(request.history_timestamps_ms.begin(),
                                               request.history_timestamps_ms.end());
    proto.mutable_candidate_item_ids()->Add(request.candidate_item_ids.begin(),
                                            request.candidate_item_ids.end());
    before = Clock::now();
    ++build.requests;
    build.events += static_cast<int64_t>(request.history_item_ids.size());
    build.seconds += std::chrono::duration<double>(before - generated).count();
  }
  auto per = [](const Tally& t, double scale) {
    return t.requests > 0 ? t.seconds * scale / static_cast<double>(t.requests) : 0.0;
  };
  auto mean_events = [](const Tally& t) {
    return t.requests > 0 ? static_cast<double>(t.events) / static_cast<double>(t.requests) : 0.0;
  };
  std::printf(
      "dry run: %lld requests (%lld first visits, mean history %.0f events; %lld revisits, "
      "mean history %.0f events)\n",
      static_cast<long long>(build.requests), static_cast<long long>(first.requests),
      mean_events(first), static_cast<long long>(revisit.requests), mean_events(revisit));
  std::printf("  generate, revisit:     %8.2f us per request\n", per(revisit, 1e6));
  std::printf("  generate, first visit: %8.2f us per request (%.1f ns per history event)\n",
              per(first, 1e6), first.events > 0 ? first.seconds * 1e9 / first.events : 0.0);
  std::printf("  build RankRequest:     %8.2f us per request (%.2f ns per history event)\n",
              per(build, 1e6), build.events > 0 ? build.seconds * 1e9 / build.events : 0.0);
  std::printf("HELM_RESULT generate_revisit_us %.3f\n", per(revisit, 1e6));
  std::printf("HELM_RESULT generate_first_visit_us %.3f\n", per(first, 1e6));
  std::printf("HELM_RESULT build_request_us %.3f\n", per(build, 1e6));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  CLI::App cli(
      "helm-bench: open-loop load generator for HELM (latency from the scheduled time, no "
      "coordinated omission)");
  helm::app::CommonFlags common;
  helm::app::AddCommonFlags(cli, common);
  BenchFlags flags;
  // Workload overrides (empty / unset: the config's workload section).
  std::string profile, regime, phases, trace;
  double rate = 0, duration = 0, slo_ms = 0, trace_speedup = -1;
  int64_t seed = -1, max_users = -1, max_items = -1;
  int32_t candidates = 0, max_history = -1, deadline_ms = 0, max_in_flight = 0, top_k = -1;
  cli.add_option("--target", flags.target, "host:port to send Rank to (default: router.listen)");
  cli.add_option("--nodes", flags.nodes,
                 "comma-separated node host:port to poll with GetStats (default: router.nodes; "
                 "'none' to skip)");
  cli.add_option("--profile", profile,
                 "workload profile: movielens-20m, amazon-books, kuairand, taobao, "
                 "amazon-video-games, trace");
  bool sessions = false;
  cli.add_flag("--sessions", sessions,
               "users come in sessions (several requests seconds apart, then away; "
               "workload.sessions)");
  cli.add_option("--regime", regime, "steady, trend or burst (one phase)");
  cli.add_option("--phases", phases, "phases, e.g. steady:20,trend:30,burst:20");
  cli.add_option("--rate", rate, "mean request rate (1/s)");
  cli.add_option("--duration", duration, "duration of a one-phase run (s)");
  cli.add_option("--seed", seed, "workload seed");
  cli.add_option("--candidates", candidates, "candidates per request");
  cli.add_option("--max-history", max_history, "cap on history length (0: node.max_history)");
  cli.add_option("--max-users", max_users, "cap on users (0: the profile's)");
  cli.add_option("--max-items", max_items, "cap on items (0: emb.num_items)");
  cli.add_option("--trace", trace, "replay this CSV trace (sets --profile trace)");
  cli.add_option("--trace-speedup", trace_speedup,
                 "replay trace timestamps this much faster (0: Poisson at --rate)");
  cli.add_option("--slo-ms", slo_ms, "latency SLO (ms)");
  cli.add_option("--deadline-ms", deadline_ms, "gRPC deadline per request (ms)");
  cli.add_option("--max-in-flight", max_in_flight, "requests in flight at most (beyond: dropped)");
  cli.add_option("--top-k", top_k, "top_k of each request (0: all)");
  cli.add_option("--out", flags.out_dir, "directory for summary.json, timeseries.csv, plot.png");
  cli.add_flag("--no-plot", flags.no_plot, "do not make the PNG plot");
  cli.add_option("--transport-calibration", flags.transport_calibration,
                 "also write the quantiles of the time OK requests spent outside the nodes to "
                 "this JSON file (helm-sim's simulator.transport_path)");
  cli.add_flag("--no-progress", flags.no_progress, "no live progress line");
  cli.add_flag("--dry-run", flags.dry_run,
               "generate and build every request without sending; print the cost per request");
  cli.add_option("--python", flags.python, "Python with matplotlib for the plot");
  cli.add_option("--plot-script", flags.plot_script, "the plot script");
  helm::app::ParseFlagsOrExit(cli, argc, argv);

  helm::config::Config config =
      helm::app::LoadConfigOrExit(common, "helm-bench", [&](helm::config::Config& c) {
        helm::workload::WorkloadOptions& w = c.workload;
        if (!profile.empty()) w.profile = profile;
        if (sessions) w.sessions = true;
        if (!regime.empty()) {
          w.regime = regime;
          if (phases.empty()) w.phases.clear();
        }
        if (!phases.empty()) w.phases = phases;
        if (!trace.empty()) {
          w.profile = "trace";
          w.trace_path = trace;
          w.phases.clear();
        }
        if (trace_speedup >= 0) w.trace_speedup = trace_speedup;
        if (rate > 0) w.rate_per_s = rate;
        if (duration > 0) {
          w.duration_s = duration;  // a one-phase run, like --regime
          if (phases.empty()) w.phases.clear();
        }
        if (seed >= 0) w.seed = static_cast<uint64_t>(seed);
        if (candidates > 0) w.candidates = candidates;
        if (max_history >= 0) w.max_history = max_history;
        if (max_users >= 0) w.max_users = max_users;
        if (max_items >= 0) w.max_items = max_items;
        if (slo_ms > 0) w.slo_ms = slo_ms;
        if (deadline_ms > 0) w.deadline_ms = deadline_ms;
        if (max_in_flight > 0) w.max_in_flight = max_in_flight;
        if (top_k >= 0) w.top_k = top_k;
      });
  if (const std::string error = helm::config::FitWorkloadToNodes(config); !error.empty())
    return Fail(error, 2);

  absl::StatusOr<std::unique_ptr<helm::workload::Generator>> generator =
      helm::workload::Generator::Create(config.workload);
  if (!generator.ok()) return Fail(std::string(generator.status().message()), 2);
  if (flags.dry_run) return DryRun(*std::move(generator));

  helm::bench::LoadOptions load;
  load.target = flags.target.empty() ? config.router.listen : flags.target;
  load.security = helm::app::ClientSecurityOrExit(config);
  if (flags.nodes == "none") {
    load.nodes.clear();
  } else if (!flags.nodes.empty()) {
    load.nodes = absl::StrSplit(flags.nodes, ',', absl::SkipEmpty());
  } else {
    load.nodes = config.router.nodes;
  }
  const helm::workload::WorkloadOptions& w = config.workload;
  load.slo_ms = w.slo_ms;
  load.deadline_ms = w.deadline_ms;
  load.max_in_flight = w.max_in_flight;
  load.top_k = w.top_k;
  if (!flags.no_progress) {
    load.progress = stderr;
    load.progress_in_place = isatty(fileno(stderr)) != 0;
  }
  helm::bench::RunInfo info;
  info.target = load.target;
  info.profile = (*generator)->profile().name;
  for (const helm::workload::Phase& p : (*generator)->phases()) {
    absl::StrAppend(&info.phases, info.phases.empty() ? "" : ",", p.name, ":", p.duration_us / 1e6);
  }
  info.rate_per_s = w.rate_per_s;
  info.seed = w.seed;
  info.deadline_ms = w.deadline_ms;
  info.max_in_flight = w.max_in_flight;
  std::fprintf(stderr,
               "helm-bench: %s -> %s (%s; %lld users, %lld items, history <= %d), %s at %.1f/s\n",
               info.profile.c_str(), load.target.c_str(), (*generator)->profile().source.c_str(),
               static_cast<long long>((*generator)->num_users()),
               static_cast<long long>((*generator)->num_items()), (*generator)->max_history(),
               info.phases.c_str(), w.rate_per_s);

  absl::StatusOr<std::unique_ptr<helm::bench::LoadGenerator>> runner =
      helm::bench::LoadGenerator::Create(load, *std::move(generator));
  if (!runner.ok()) return Fail(std::string(runner.status().message()), 2);
  absl::StatusOr<helm::bench::RunResult> run = (*runner)->Run();
  if (!run.ok()) return Fail(std::string(run.status().message()), 1);

  const helm::bench::Report report = helm::bench::BuildReport(*run, w.slo_ms);
  std::fputs("\n", stdout);
  std::fputs(helm::bench::FormatTable(report, info).c_str(), stdout);

  absl::StatusOr<std::string> files = helm::bench::WriteRunFiles(
      *run, report, info, flags.out_dir, flags.no_plot ? "" : flags.python, flags.plot_script);
  if (!files.ok()) return Fail(std::string(files.status().message()), 1);
  std::printf("\n%s\n", files->c_str());
  if (!flags.transport_calibration.empty()) {
    if (absl::Status s =
            helm::bench::WriteTransportCalibration(*run, info, flags.transport_calibration);
        !s.ok()) {
      return Fail(std::string(s.message()), 1);
    }
    std::printf("transport calibration: %s\n", flags.transport_calibration.c_str());
  }
  std::fputs(helm::bench::ResultLines(report).c_str(), stdout);
  return 0;
}
