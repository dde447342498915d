// helm-sim: the cluster's digital twin. Runs simulator.num_nodes node cores (payload-free storage:
// the real cache bookkeeping, time from the cost model) and the routing core on one virtual clock,
// on one thread, over the config's workload, and reports P50/P99/P99.9, SLO attainment, goodput,
// throughput, hit ratios and each node's split. Writes summary.json, timeseries.csv, windows.csv
// and plot.png to --out. With simulator.sweep_profiles set it runs the split sweep instead
// (sim/sweep.h) and writes sweep.csv and sweep.png; with simulator.paper_table also the paper's
// table (sim/paper_table.h: paper-table.md, .json, paper-splits.png). --cell runs one cell of the
// sweep alone (its pool and users, a row, a rate) as a plain run. A sweep saves every finished cell
// under --out/cells, and --resume takes those of the same config instead of running them again (a
// 32-node sweep is hours of one core per cell). Bad configs stop at start with exit status 2,
// naming the key.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "apps/app.h"
#include "bench/report.h"
#include "helm/common/process.h"
#include "helm/common/status.h"
#include "helm/common/subprocess.h"
#include "helm/sim/paper_table.h"
#include "helm/sim/simulator.h"
#include "helm/sim/sweep.h"
#include "spdlog/spdlog.h"

namespace {

void Plot(const std::string& python, const std::string& script, const std::string& csv,
          const std::string& png) {
  if (python.empty()) return;
  const absl::Status plotted = helm::bench::MakePlot(python, script, csv, png);
  if (plotted.ok()) {
    std::printf("plot: %s\n", png.c_str());
  } else {
    std::printf("plot skipped: %s\n", std::string(plotted.message()).c_str());
  }
}

// Writes `text` to `path`; false, with the path and the reason on stderr, when it cannot.
bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.close();
  if (!f) {
    std::fprintf(stderr, "helm-sim: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  return true;
}

// Makes --out (and what under it the run writes into) before the run, not after it.
bool MakeOutDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!std::filesystem::is_directory(dir)) {
    std::fprintf(stderr, "helm-sim: --out: cannot make the directory %s: %s\n", dir.c_str(),
                 ec ? ec.message().c_str() : "a file of that name is in the way");
    return false;
  }
  return true;
}

// The paper's table of a finished sweep: paper-table.md and .json, the headline figures, and the
// plot of each cell's split over time under helm against the oracle (the windows CSVs written as
// the runs finished).
int ReportPaperTable(const std::vector<helm::sim::SweepCell>& cells, const std::string& out_dir,
                     const std::string& python, const std::string& script) {
  auto table = helm::sim::MakePaperTable(cells);
  if (!table.ok()) {
    std::fprintf(stderr, "helm-sim: %s\n", std::string(table.status().message()).c_str());
    return 1;
  }
  const std::string markdown = helm::sim::PaperTableMarkdown(*table);
  std::printf("\n%s\n", markdown.c_str());
  if (!WriteFile(out_dir + "/paper-table.md", markdown) ||
      !WriteFile(out_dir + "/paper-table.json", helm::sim::PaperTableJson(*table) + "\n")) {
    return 1;
  }
  std::printf("files: %s/paper-table.md, %s/paper-table.json\n", out_dir.c_str(), out_dir.c_str());
  if (!python.empty()) {
    const std::string png = out_dir + "/paper-splits.png";
    const std::string plot = python + " " + script + " --paper-dir " + out_dir +
                             " --global-split " + std::to_string(table->global_split) + " --out " +
                             png;
    if (std::system(plot.c_str()) == 0) std::printf("plot: %s\n", png.c_str());
  }
  for (const auto& [name, value] : table->headlines) {
    std::printf("HELM_RESULT %s %.4f\n", name.c_str(), value);
  }
  return 0;
}

// --cell PROFILE/REGIME/SCALE: the sweep's config for that cell (ConfigForCell), as a plain run
// of `row` at `rate` (0: simulator.load of the estimated capacity) from `split` (< 0: the
// config's initial split).
absl::Status ApplyCell(const std::string& cell, const std::string& row, double rate, double split,
                       helm::config::Config& config) {
  const std::vector<std::string> parts = absl::StrSplit(cell, '/');
  double scale = 0;
  if (parts.size() != 3 || !absl::SimpleAtod(parts[2], &scale) || !(scale > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", cell, "\" is not PROFILE/REGIME/SCALE (e.g. taobao/steady/8)"));
  }
  HELM_ASSIGN_OR_RETURN(helm::sim::CellConfig c,
                        helm::sim::ConfigForCell(config, parts[0], parts[1], scale));
  config = std::move(c.config);
  config.simulator.sweep_profiles.clear();
  config.simulator.paper_table = false;
  if (rate > 0) {
    config.workload.rate_per_s = rate;
    config.simulator.load = 0;
  }
  if (split >= 0) helm::sim::SetInitialSplit(split, config);
  if (row == "static") {
    config.control.policy = "static";
    return absl::OkStatus();
  }
  return helm::sim::ApplyControllerRow(row, config);
}

// A cell's checkpoint file under --out.
std::string CellFile(const std::string& out_dir, const helm::sim::SweepCell& cell) {
  return absl::StrCat(out_dir, "/cells/", cell.FileStem(), ".cell.json");
}

int RunSweep(const helm::config::Config& config, const std::string& out_dir,
             const std::string& python, const std::string& script, bool resume) {
  if (!MakeOutDir(out_dir + "/cells")) return 2;
  helm::sim::SweepHooks hooks;
  hooks.progress = [](int cell, int cells, const std::string& what) {
    std::fprintf(stderr, "\r[cell %d/%d] %-16s", cell + 1, cells, what.c_str());
  };
  // Every finished cell is saved; --resume takes a saved cell whose config is the same instead of
  // running it again.
  const std::string revision = helm::GitRevision(HELM_SOURCE_DIR);
  hooks.cell_done = [&](const helm::sim::SweepCell& cell, const std::string& fingerprint) {
    WriteFile(CellFile(out_dir, cell),
              helm::sim::SweepCellJson(cell, fingerprint, revision) + "\n");
  };
  if (resume) {
    hooks.restore = [&](const helm::sim::SweepCell& planned,
                        const std::string& fingerprint) -> std::optional<helm::sim::SweepCell> {
      const std::string path = CellFile(out_dir, planned);
      std::ifstream in(path);
      if (!in) return std::nullopt;
      std::stringstream text;
      text << in.rdbuf();
      auto saved = helm::sim::ParseSweepCell(text.str());
      if (!saved.ok()) {
        std::fprintf(stderr, "\nhelm-sim: %s: %s; running the cell again\n", path.c_str(),
                     std::string(saved.status().message()).c_str());
        return std::nullopt;
      }
      if (saved->fingerprint != fingerprint) {
        std::fprintf(stderr,
                     "\nhelm-sim: %s was saved for another config; running the cell again\n",
                     path.c_str());
        return std::nullopt;
      }
      std::fprintf(stderr, "\nhelm-sim: %s/%s/%g restored from %s (revision %s)\n",
                   planned.profile.c_str(), planned.regime.c_str(), planned.scale, path.c_str(),
                   saved->revision.c_str());
      return std::move(saved->cell);
    };
  }
  if (config.simulator.paper_table) {
    // The split over time of the adaptive rows, for the plot against the oracle.
    hooks.result = [&](const helm::sim::SweepCell& cell, const helm::sim::SweepRun& run,
                       const helm::sim::SimResult& result) {
      if (run.controller == "static") return;
      WriteFile(
          absl::StrCat(out_dir, "/cells/", cell.FileStem(), "__", run.controller, "-windows.csv"),
          helm::sim::WindowsCsv(result));
    };
  }
  auto cells = helm::sim::RunSweep(config, hooks);
  std::fprintf(stderr, "\n");
  if (!cells.ok()) {
    std::fprintf(stderr, "helm-sim: %s\n", std::string(cells.status().message()).c_str());
    return absl::IsInvalidArgument(cells.status()) ? 2 : 1;
  }
  std::printf("%-20s %-7s %5s %9s %9s %9s %8s | %5s %8s | %9s %9s %7s | %9s\n", "profile", "regime",
              "scale", "pool_MB", "emb_MB", "kv_MB", "rate/s", "best", "p99_ms", "heur_p99",
              "heur/best", "track", "oracle_p99");
  double worst_ratio = 0;
  std::vector<double> scales;
  for (const helm::sim::SweepCell& c : *cells) {
    const helm::sim::SweepRun* best = c.BestStatic();
    const helm::sim::SweepRun* heuristic = c.Controller("heuristic");
    const helm::sim::SweepRun* oracle = c.Controller("oracle");
    const double ratio = heuristic && best->p99_ms > 0 ? heuristic->p99_ms / best->p99_ms : 0;
    worst_ratio = std::max(worst_ratio, ratio);
    if (std::find(scales.begin(), scales.end(), c.scale) == scales.end()) scales.push_back(c.scale);
    std::printf(
        "%-20s %-7s %5g %9.1f %9.1f %9.1f %8.0f | %5.2f %8.3f | %9.3f %9.3f %7.3f | %9.3f\n",
        c.profile.c_str(), c.regime.c_str(), c.scale, c.pool_bytes / 1e6,
        c.emb_footprint_bytes / 1e6, c.kv_working_set_bytes / 1e6, c.rate_per_s, best->split,
        best->p99_ms, heuristic ? heuristic->p99_ms : 0, ratio,
        heuristic ? heuristic->tracking_error : -1, oracle ? oracle->p99_ms : 0);
  }
  const std::string csv = out_dir + "/sweep.csv";
  if (!WriteFile(csv, helm::sim::SweepCsv(*cells))) return 1;
  std::printf("files: %s\n", csv.c_str());
  Plot(python, script, csv, out_dir + "/sweep.png");
  for (double scale : scales) {
    std::printf("HELM_RESULT best_static_split_spread_scale_%g %.3f\n", scale,
                helm::sim::BestStaticSplitSpread(*cells, scale));
  }
  std::printf("HELM_RESULT best_static_split_spread %.3f\n",
              helm::sim::BestStaticSplitSpread(*cells));
  if (worst_ratio > 0) {
    std::printf("HELM_RESULT heuristic_p99_vs_best_static_worst %.3f\n", worst_ratio);
  }
  if (config.simulator.paper_table) return ReportPaperTable(*cells, out_dir, python, script);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  CLI::App cli("helm-sim: the cluster's digital twin on the real node and routing cores");
  helm::app::CommonFlags flags;
  helm::app::AddCommonFlags(cli, flags);
  std::string out_dir = "out/sim";
  int32_t nodes = 0;
  double duration_s = 0;
  std::string python = "/usr/bin/python3";
  std::string plot_script = std::string(HELM_SOURCE_DIR) + "/scripts/plot_sim.py";
  bool no_plot = false;
  cli.add_option("--out", out_dir, "directory for the output files");
  cli.add_option("--nodes", nodes, "simulated nodes (overrides simulator.num_nodes)");
  cli.add_option("--duration", duration_s,
                 "simulated seconds (overrides simulator.duration_s and workload.duration_s)");
  double emb_sample_rate = 0;
  cli.add_option("--emb-sample-rate", emb_sample_rate,
                 "share of item ids the EMB caches simulate (overrides simulator.emb_sample_rate; "
                 "1: every id, exact)");
  std::string calibration;
  cli.add_option("--calibration", calibration,
                 "cost-model calibration JSON (overrides simulator.calibration_path)");
  cli.add_option("--python", python, "python with matplotlib for the plots");
  cli.add_option("--plot-script", plot_script, "the plot script");
  cli.add_flag("--no-plot", no_plot, "write no plot");
  bool resume = false;
  cli.add_flag("--resume", resume,
               "a sweep takes the cells saved under --out/cells by an earlier run of the same "
               "config instead of running them again");
  std::string cell;
  std::string row = "static";
  double rate = 0;
  double split = -1;
  cli.add_option("--cell", cell,
                 "run one cell of the sweep alone, PROFILE/REGIME/SCALE (e.g. taobao/steady/8): "
                 "the sweep's pool and users for it, a plain run with per-node results");
  cli.add_option("--row", row, "with --cell: static, or a row of simulator.sweep_controllers");
  cli.add_option("--rate", rate, "with --cell: offered requests/s (default: simulator.load's)");
  cli.add_option("--split", split, "with --cell: the initial (for static: the fixed) split");
  helm::app::ParseFlagsOrExit(cli, argc, argv);
  helm::config::Config config =
      helm::app::LoadConfigOrExit(flags, "helm-sim", [&](helm::config::Config& c) {
        if (nodes > 0) c.simulator.num_nodes = nodes;
        if (duration_s > 0) c.simulator.duration_s = c.workload.duration_s = duration_s;
        if (emb_sample_rate > 0) c.simulator.emb_sample_rate = emb_sample_rate;
        if (!calibration.empty()) c.simulator.calibration_path = calibration;
      });
  if (!cell.empty()) {
    absl::Status s = ApplyCell(cell, row, rate, split, config);
    if (!s.ok()) {
      std::fprintf(stderr, "helm-sim: --cell: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  if (no_plot) python.clear();
  // The nodes' own logs (pool creation...) would drown the progress line.
  spdlog::set_level(spdlog::level::warn);
  if (!config.simulator.sweep_profiles.empty()) {
    return RunSweep(config, out_dir, python, plot_script, resume);
  }
  if (!MakeOutDir(out_dir)) return 2;
  auto sim = helm::sim::Simulator::Create(config);
  if (!sim.ok()) {
    std::fprintf(stderr, "helm-sim: config error: %s\n",
                 std::string(sim.status().message()).c_str());
    return 2;
  }
  std::fprintf(
      stderr, "helm-sim: %d nodes, %s workload, policy %s, controller %s, cost profile %s%s\n",
      config.simulator.num_nodes, config.workload.profile.c_str(), config.router.policy.c_str(),
      config.control.policy.c_str(), (*sim)->cost_model().profile().name.c_str(),
      config.simulator.emb_sample_rate < 1
          ? absl::StrFormat(", EMB ids sampled at %g", config.simulator.emb_sample_rate).c_str()
          : "");
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
  const double total_s = r.warmup_s + r.simulated_s;
  std::printf(
      "simulated %.1f s (%.1f s measured after a %.1f s warm-up) in %.2f s of wall time "
      "(%.1fx real time)\n",
      total_s, r.simulated_s, r.warmup_s, r.wall_s, r.wall_s > 0 ? total_s / r.wall_s : 0.0);
  std::printf("%10s %10s %9s %9s %9s %9s %8s %10s %10s %7s %7s\n", "arrivals", "ok", "errors",
              "p50_ms", "p99_ms", "p99.9_ms", "SLO", "goodput/s", "ok/s", "kv_hit", "emb_hit");
  std::printf("%10lld %10lld %9lld %9.2f %9.2f %9.2f %7.1f%% %10.1f %10.1f %7.3f %7.3f\n",
              static_cast<long long>(r.arrivals), static_cast<long long>(r.completions),
              static_cast<long long>(r.failures), r.latency_us.Quantile(0.5) / 1000,
              r.latency_us.Quantile(0.99) / 1000, r.latency_us.Quantile(0.999) / 1000,
              100 * r.slo_attainment(), r.goodput_per_s(), r.throughput_per_s(), r.kv_token_hit,
              r.emb_hit);
  std::printf("%-10s %9s %7s %7s %11s %6s %9s\n", "node", "replies", "kv_hit", "emb_hit", "split",
              "busy", "reversals");
  for (const helm::sim::NodeResult& n : r.nodes) {
    std::printf("%-10s %9lld %7.3f %7.3f %5.2f->%4.2f %5.1f%% %9lld\n", n.id.c_str(),
                static_cast<long long>(n.replies), n.kv_token_hit, n.emb_hit, n.split_first,
                n.split_last, 100 * n.busy_fraction, static_cast<long long>(n.reversals));
  }
  if (r.surfaces.size() > 1) {  // workload.mix
    std::printf("%-10s %10s %10s %9s %9s %8s\n", "surface", "arrivals", "ok", "p50_ms", "p99_ms",
                "SLO");
    for (size_t i = 0; i < r.surfaces.size(); ++i) {
      const helm::sim::SurfaceResult& s = r.surfaces[i];
      std::printf("%-10zu %10lld %10lld %9.2f %9.2f %7.1f%%\n", i,
                  static_cast<long long>(s.arrivals), static_cast<long long>(s.completions),
                  s.latency_us.Quantile(0.5) / 1000, s.latency_us.Quantile(0.99) / 1000,
                  100 * s.slo_attainment());
    }
  }
  if (!WriteFile(out_dir + "/summary.json", helm::sim::ToJson(r, config)) ||
      !WriteFile(out_dir + "/timeseries.csv", helm::sim::ToCsv(r)) ||
      !WriteFile(out_dir + "/windows.csv", helm::sim::WindowsCsv(r))) {
    return 1;
  }
  std::printf("files: %s/summary.json, %s/timeseries.csv, %s/windows.csv\n", out_dir.c_str(),
              out_dir.c_str(), out_dir.c_str());
  Plot(python, plot_script, out_dir + "/timeseries.csv", out_dir + "/plot.png");
  std::printf("HELM_RESULT sim_p99_ms %.3f\n", r.latency_us.Quantile(0.99) / 1000);
  int64_t answered = 0;  // warm-up included: the simulator's own speed
  for (const helm::sim::SimSecond& second : r.seconds) answered += second.completions;
  std::printf("HELM_RESULT sim_requests_per_s %.0f\n", r.wall_s > 0 ? answered / r.wall_s : 0.0);
  std::printf("HELM_RESULT sim_speedup_vs_realtime %.2f\n",
              r.wall_s > 0 ? total_s / r.wall_s : 0.0);
  return 0;
}
