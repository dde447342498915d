#include "helm/sim/sweep.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "helm/common/status.h"
#include "helm/model/model.h"
#include "helm/sim/simulator.h"
#include "helm/workload/profile.h"

namespace helm::sim {
namespace {

constexpr int64_t kMinChunks = 64;

int64_t FloorPowerOfTwo(int64_t v) {
  int64_t p = 1;
  while (p * 2 <= v) p *= 2;
  return p;
}

SweepRun Summarize(const std::string& controller, double split, const SimResult& r) {
  SweepRun run;
  run.controller = controller;
  run.split = split;
  run.p99_ms = r.latency_us.Quantile(0.99) / 1000;
  run.p50_ms = r.latency_us.Quantile(0.5) / 1000;
  run.slo_attainment = r.slo_attainment();
  run.throughput_per_s = r.throughput_per_s();
  run.goodput_per_s = r.goodput_per_s();
  run.kv_token_hit = r.kv_token_hit;
  run.emb_hit = r.emb_hit;
  for (const NodeResult& n : r.nodes) run.reversals += n.reversals;
  return run;
}

absl::StatusOr<SimResult> Simulate(const config::Config& config) {
  HELM_ASSIGN_OR_RETURN(std::unique_ptr<Simulator> sim, Simulator::Create(config));
  return sim->Run();
}

}  // namespace

// The capacity runs' offer, over the estimated capacity: enough to saturate a cell whose K/V reuse
// saves most of its history's work (a kuairand cell serves ~1.75x the estimate).
constexpr double kCapacityOffer = 3.0;

absl::StatusOr<double> EstimateCapacityPerNode(const config::Config& config,
                                               const CostModel& cost) {
  absl::StatusOr<workload::DatasetProfile> profile = workload::FindProfile(config.workload.profile);
  if (!profile.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("workload.profile: ", profile.status().message()));
  }
  const int64_t cap =
      config.workload.max_history > 0 ? config.workload.max_history : config.node.max_history;
  const int64_t history =
      std::max<int64_t>(1, std::llround(std::min<double>(profile->mean_history, cap)));
  RequestWork typical{.suffix_tokens = history,
                      .cached_tokens = 0,
                      .candidates = config.workload.candidates,
                      .emb_rows_gathered = history + config.workload.candidates,
                      .emb_miss_bytes = 0};
  BatchWork batch;
  batch.requests.assign(static_cast<size_t>(std::max(1, config.node.max_batch)), typical);
  const double batch_us = cost.BatchTimeUs(batch);
  return config.node.workers * static_cast<double>(batch.requests.size()) * 1e6 / batch_us;
}

void SetInitialSplit(double split, config::Config& c) {
  c.pool.initial_split = split;
  c.pool.r_min = std::min(c.pool.r_min, split);
  c.pool.r_max = std::max(c.pool.r_max, split);
}

namespace {

// The highest arrival rate of the workload's phases over its rate_per_s.
absl::StatusOr<double> PeakRateFactor(const workload::WorkloadOptions& w) {
  HELM_ASSIGN_OR_RETURN(std::vector<workload::Phase> phases,
                        workload::ParsePhases(w.phases, w.regime, w.duration_s));
  double factor = 1.0;
  for (const workload::Phase& phase : phases) {
    factor = std::max(factor, w.PeakRateFactor(phase.regime));
  }
  return factor;
}

// The cluster's EstimateCapacityPerNode.
absl::StatusOr<double> EstimateClusterCapacity(const config::Config& config) {
  HELM_ASSIGN_OR_RETURN(CostModel cost, CostModelForConfig(config));
  HELM_ASSIGN_OR_RETURN(double per_node, EstimateCapacityPerNode(config, cost));
  return per_node * config.simulator.num_nodes;
}

}  // namespace

absl::StatusOr<double> RateForLoad(const config::Config& config, double capacity_per_s) {
  double rate = config.simulator.load * capacity_per_s;
  if (config.simulator.load_basis == "peak") {
    HELM_ASSIGN_OR_RETURN(double factor, PeakRateFactor(config.workload));
    rate /= factor;
  }
  return rate;
}

absl::StatusOr<config::Config> CapacityRunConfig(const config::Config& config, double split) {
  HELM_ASSIGN_OR_RETURN(const double estimate, EstimateClusterCapacity(config));
  config::Config run = config;
  run.control.policy = "static";
  SetInitialSplit(split, run);
  run.workload.regime = "steady";
  run.workload.rate_per_s = kCapacityOffer * estimate;
  run.simulator.load = 0;
  run.simulator.duration_s = run.workload.duration_s = config.simulator.sweep_capacity_s;
  return run;
}

absl::StatusOr<double> OfferedRate(const config::Config& config) {
  if (config.simulator.load <= 0) return config.workload.rate_per_s;
  HELM_ASSIGN_OR_RETURN(double capacity, EstimateClusterCapacity(config));
  return RateForLoad(config, capacity);
}

absl::StatusOr<CellConfig> ConfigForCell(const config::Config& base, const std::string& profile,
                                         const std::string& regime, double scale) {
  absl::StatusOr<workload::DatasetProfile> p = workload::FindProfile(profile);
  if (!p.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("simulator.sweep_profiles: ", p.status().message()));
  }
  CellConfig cell;
  config::Config& c = cell.config;
  c = base;
  c.workload.profile = profile;
  c.workload.regime = regime;
  c.workload.phases = "";
  c.workload.max_items = 0;
  HELM_ASSIGN_OR_RETURN(model::ModelDims dims, model::DimsFromOptions(c.model, c.emb, c.kv));
  const double rows = static_cast<double>(std::min<int64_t>(p->num_items, c.emb.num_items));
  cell.emb_footprint_bytes = rows * c.emb.dim * DtypeBytes(dims.emb_dtype);
  const int64_t pool = static_cast<int64_t>(cell.emb_footprint_bytes / scale);
  const int64_t block = dims.block_bytes();
  int64_t chunk = std::max<int64_t>(FloorPowerOfTwo(pool / kMinChunks), int64_t{64} << 10);
  while (chunk < block) chunk *= 2;
  if (pool < 8 * chunk) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "simulator.sweep_scales: scale %g leaves a %d-byte pool for %s, under 8 chunks of %d "
        "bytes (a KV block is %d bytes)",
        scale, pool, profile, chunk, block));
  }
  c.pool.chunk_bytes = chunk;
  c.pool.bytes = pool / chunk * chunk;
  int64_t cap = c.workload.max_history > 0 ? c.workload.max_history : c.node.max_history;
  double tokens = std::min<double>(p->mean_history, cap);
  if (base.simulator.sweep_history_cap > 0) {
    // Stationary histories: a user at the cap drops its oldest quarter and grows back, so it
    // holds 7/8 of the cap on average (the users who carry the load all get there).
    cap = std::min<int64_t>(
        cap, std::max<int64_t>({4, p->min_history + 1,
                                std::llround(base.simulator.sweep_history_cap * p->mean_history)}));
    c.workload.max_history = cap;
    tokens = 0.875 * static_cast<double>(cap);
  }
  const double token_bytes = static_cast<double>(block) / dims.tokens_per_block;
  // Each node's share of the users (the router keeps a user on one node) fills `scale` pools.
  const double users =
      scale * static_cast<double>(c.pool.bytes) * c.simulator.num_nodes / (tokens * token_bytes);
  c.workload.max_users = std::clamp<int64_t>(std::llround(users), 1, p->num_users);
  cell.kv_working_set_bytes =
      static_cast<double>(c.workload.max_users) * tokens * token_bytes / c.simulator.num_nodes;
  return cell;
}

std::string SweepCell::FileStem() const {
  return absl::StrFormat("%s-%s-%g", profile, regime, scale);
}

const SweepRun* SweepCell::BestStatic() const {
  const SweepRun* best = nullptr;
  for (const SweepRun& r : runs) {
    if (r.controller != "static") continue;
    if (best == nullptr || r.p99_ms < best->p99_ms) best = &r;
  }
  return best;
}

const SweepRun* SweepCell::Controller(const std::string& name) const {
  for (const SweepRun& r : runs) {
    if (r.controller == name) return &r;
  }
  return nullptr;
}

absl::StatusOr<double> CapacityRuns::Measure(const config::Config& config,
                                             const std::vector<double>& splits,
                                             const std::function<void(double split)>& on_run) {
  double capacity = 0;
  for (double split : splits) {
    HELM_ASSIGN_OR_RETURN(const config::Config run, CapacityRunConfig(config, split));
    const std::string key = CellFingerprint(run);
    std::optional<double> served;
    {
      absl::MutexLock lock(&mu_);
      if (const auto it = served_.find(key); it != served_.end()) served = it->second;
    }
    if (!served) {
      if (on_run) on_run(split);
      HELM_ASSIGN_OR_RETURN(SimResult r, Simulate(run));
      served = r.throughput_per_s();
      absl::MutexLock lock(&mu_);
      served_[key] = *served;
    }
    capacity = std::max(capacity, *served);
  }
  return capacity;
}

namespace {

// One cell of the sweep: its capacity (when measured), every static split, then every row.
absl::Status RunCell(int index, int total, const std::vector<double>& splits,
                     const SweepHooks& hooks, CapacityRuns& capacity_runs, SweepCell& cell,
                     config::Config& c) {
  const SimulatorOptions& s = c.simulator;
  if (s.sweep_capacity_s > 0 && c.simulator.load > 0) {
    // The cell's capacity under its best static split: short steady runs offered kCapacityOffer
    // x the estimated capacity (EstimateCapacityPerNode counts no K/V reuse, so with long
    // histories a cell serves more than the estimate), one per static split; the most any served
    // is the capacity.
    HELM_ASSIGN_OR_RETURN(const double capacity,
                          capacity_runs.Measure(c, splits, [&](double split) {
                            if (hooks.progress) {
                              hooks.progress(index, total, absl::StrFormat("capacity %.2f", split));
                            }
                          }));
    cell.capacity_per_s = capacity;
    HELM_ASSIGN_OR_RETURN(c.workload.rate_per_s, RateForLoad(c, capacity));
    cell.rate_per_s = c.workload.rate_per_s;
  }
  c.simulator.load = 0;
  std::vector<SimResult> results;  // one per run of the cell, for the tracking errors
  for (double split : splits) {
    if (hooks.progress) hooks.progress(index, total, absl::StrFormat("static %.2f", split));
    config::Config run = c;
    run.control.policy = "static";
    SetInitialSplit(split, run);
    HELM_ASSIGN_OR_RETURN(SimResult r, Simulate(run));
    cell.runs.push_back(Summarize("static", split, r));
    if (hooks.result) hooks.result(cell, cell.runs.back(), r);
    results.push_back(std::move(r));
  }
  for (const std::string& controller : s.sweep_controllers) {
    if (hooks.progress) hooks.progress(index, total, controller);
    config::Config run = c;
    HELM_RETURN_IF_ERROR(ApplyControllerRow(controller, run));
    if (!run.control.audit_log.empty()) {  // one log a run: <audit_log>.<cell>.<row>.jsonl
      run.control.audit_log =
          absl::StrCat(run.control.audit_log, ".", cell.FileStem(), ".", controller, ".jsonl");
    }
    HELM_ASSIGN_OR_RETURN(SimResult r, Simulate(run));
    cell.runs.push_back(Summarize(controller, run.pool.initial_split, r));
    if (hooks.result) hooks.result(cell, cell.runs.back(), r);
    results.push_back(std::move(r));
  }
  // Tracking error of every run, static ones included, against the cell's oracle run.
  for (size_t i = 0; i < cell.runs.size(); ++i) {
    if (cell.runs[i].controller != "oracle") continue;
    for (size_t j = 0; j < cell.runs.size(); ++j) {
      cell.runs[j].tracking_error = TrackingError(results[j], results[i]);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<SweepCell>> RunSweep(const config::Config& base,
                                                const SweepHooks& hooks) {
  const SimulatorOptions& s = base.simulator;
  std::vector<double> scales;
  for (const std::string& text : s.sweep_scales) {
    double v = 0;
    if (!absl::SimpleAtod(text, &v) || !(v > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("simulator.sweep_scales: '", text, "' is not a number > 0"));
    }
    scales.push_back(v);
  }
  if (scales.empty()) scales.push_back(0);  // 0: the base config's pool and users as they are
  for (const std::string& r : s.sweep_regimes) {
    if (r != "steady" && r != "trend" && r != "burst") {
      return absl::InvalidArgumentError(
          absl::StrCat("simulator.sweep_regimes: '", r, "' is not one of steady, trend, burst"));
    }
  }
  for (const std::string& c : s.sweep_controllers) {
    config::Config probe = base;
    HELM_RETURN_IF_ERROR(ApplyControllerRow(c, probe));
  }
  if (s.sweep_split_min > s.sweep_split_max) {
    return absl::InvalidArgumentError(
        "simulator.sweep_split_min: must be <= simulator.sweep_split_max");
  }
  std::vector<double> splits;
  for (double r = s.sweep_split_min; r <= s.sweep_split_max + 1e-9; r += s.sweep_split_step) {
    splits.push_back(std::round(r * 1e6) / 1e6);
  }
  const std::vector<std::string> regimes =
      s.sweep_regimes.empty() ? std::vector<std::string>{base.workload.regime} : s.sweep_regimes;
  // Every cell's config first, so that a bad one stops the sweep before any simulation runs.
  std::vector<SweepCell> cells;
  std::vector<config::Config> configs;
  for (double scale : scales) {
    for (const std::string& profile : s.sweep_profiles) {
      for (const std::string& regime : regimes) {
        CellConfig cell_config;
        if (scale > 0) {
          HELM_ASSIGN_OR_RETURN(cell_config, ConfigForCell(base, profile, regime, scale));
        } else {
          cell_config.config = base;
          cell_config.config.workload.profile = profile;
          cell_config.config.workload.regime = regime;
          cell_config.config.workload.phases = "";
        }
        config::Config& c = cell_config.config;
        HELM_ASSIGN_OR_RETURN(c.workload.rate_per_s, OfferedRate(c));
        SweepCell cell;
        cell.profile = profile;
        cell.regime = regime;
        cell.scale = scale;
        cell.pool_bytes = static_cast<double>(c.pool.bytes);
        cell.emb_footprint_bytes = cell_config.emb_footprint_bytes;
        cell.kv_working_set_bytes = cell_config.kv_working_set_bytes;
        cell.rate_per_s = c.workload.rate_per_s;
        cells.push_back(std::move(cell));
        configs.push_back(std::move(c));
      }
    }
  }
  const int total = static_cast<int>(cells.size());
  CapacityRuns capacity_runs;
  // A cell restored from its checkpoint, or run (and handed to cell_done).
  auto run_cell = [&](int index, const SweepHooks& h) -> absl::Status {
    const std::string fingerprint = CellFingerprint(configs[index]);
    if (h.restore) {
      if (std::optional<SweepCell> saved = h.restore(cells[index], fingerprint)) {
        cells[index] = std::move(*saved);
        return absl::OkStatus();
      }
    }
    HELM_RETURN_IF_ERROR(
        RunCell(index, total, splits, h, capacity_runs, cells[index], configs[index]));
    if (h.cell_done) h.cell_done(cells[index], fingerprint);
    return absl::OkStatus();
  };
  const int threads = std::clamp<int>(s.sweep_threads, 1, std::max(1, total));
  if (threads == 1) {
    for (int index = 0; index < total; ++index) HELM_RETURN_IF_ERROR(run_cell(index, hooks));
    return cells;
  }
  // Cells on parallel threads (each simulation is single-threaded and shares nothing); the hooks
  // are called under one mutex. The first error wins.
  absl::Mutex mu;
  // `hook` called under `mu` (an empty hook stays empty).
  auto under_mu = [&mu](const auto& hook) -> std::decay_t<decltype(hook)> {
    if (!hook) return nullptr;
    return [&mu, &hook](auto&&... args) {
      absl::MutexLock lock(&mu);
      return hook(std::forward<decltype(args)>(args)...);
    };
  };
  SweepHooks locked;
  locked.progress = under_mu(hooks.progress);
  locked.result = under_mu(hooks.result);
  locked.restore = under_mu(hooks.restore);
  locked.cell_done = under_mu(hooks.cell_done);
  std::atomic<int> next{0};
  absl::Status first_error;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int index = next++; index < total; index = next++) {
        absl::Status status = run_cell(index, locked);
        if (!status.ok()) {
          absl::MutexLock lock(&mu);
          if (first_error.ok()) first_error = std::move(status);
        }
      }
    });
  }
  for (std::thread& t : pool) t.join();
  HELM_RETURN_IF_ERROR(first_error);
  return cells;
}

absl::Status ApplyControllerRow(const std::string& row, config::Config& c) {
  if (row == "heuristic" || row == "marginal" || row == "predictive" || row == "oracle") {
    c.control.policy = row;
    return absl::OkStatus();
  }
  const bool helm = row == "helm" || row == "helm-rr";
  if (!helm && row != "helm-base" && row != "helm-adapter") {
    return absl::InvalidArgumentError(
        absl::StrCat("simulator.sweep_controllers: '", row,
                     "' is not one of heuristic, marginal, predictive, oracle, helm-base, "
                     "helm-adapter, helm, helm-rr"));
  }
  if (c.control.policy_path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("control.policy_path: the sweep's '", row,
                                                   "' row needs the base policy's file"));
  }
  c.control.policy = "helm";
  c.control.adapter = row != "helm-base";
  c.control.recovery = helm;
  if (row == "helm-rr") c.router.policy = "round_robin";
  return absl::OkStatus();
}

double BestStaticSplitSpread(const std::vector<SweepCell>& cells, double scale) {
  double lo = 1, hi = 0;
  for (const SweepCell& c : cells) {
    if (scale > 0 && std::abs(c.scale - scale) > 1e-9) continue;
    const SweepRun* best = c.BestStatic();
    if (best == nullptr) continue;
    lo = std::min(lo, best->split);
    hi = std::max(hi, best->split);
  }
  return hi >= lo ? hi - lo : 0.0;
}

std::string SweepCsv(const std::vector<SweepCell>& cells) {
  std::string out =
      "profile,regime,scale,pool_bytes,emb_footprint_bytes,kv_working_set_bytes,rate_per_s,"
      "capacity_per_s,controller,split,p50_ms,p99_ms,slo_attainment,throughput_per_s,kv_token_hit,"
      "emb_hit,"
      "tracking_error,reversals\n";
  for (const SweepCell& c : cells) {
    for (const SweepRun& r : c.runs) {
      absl::StrAppendFormat(
          &out, "%s,%s,%g,%.0f,%.0f,%.0f,%.2f,%.2f,%s,%.4f,%.4f,%.4f,%.6f,%.3f,%.6f,%.6f,%.6f,%d\n",
          c.profile, c.regime, c.scale, c.pool_bytes, c.emb_footprint_bytes, c.kv_working_set_bytes,
          c.rate_per_s, c.capacity_per_s, r.controller, r.split, r.p50_ms, r.p99_ms,
          r.slo_attainment, r.throughput_per_s, r.kv_token_hit, r.emb_hit, r.tracking_error,
          r.reversals);
    }
  }
  return out;
}

}  // namespace helm::sim
