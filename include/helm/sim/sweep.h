// The split sweep (issue 12): for every profile x regime x scale cell, the cluster is simulated at
// each static split, then under each adaptive controller (the heuristic, the offline oracle).
// It answers: where is the best static split, how far does it move between cells, and how close
// do the controllers get to it?
//
// Scale. At the paper's dataset sizes a whole item table fits in a fraction of one GPU's pool, and
// the two caches barely compete. Production deployments look up ids in catalogs far larger than
// HBM. A cell's scale s fixes the pool against both working sets:
//   embedding footprint  F_emb = catalog rows x emb.dim x dtype bytes (catalog rows: the
//                        profile's items, capped by emb.num_items; the popularity skew is the
//                        profile's item Zipf exponent);
//   pool bytes           F_emb / s (rounded down to whole chunks; chunk_bytes is the largest
//                        power of two giving at least 64 chunks, and never below a KV block);
//   KV working set       F_kv = users x mean history tokens x K/V bytes per token / nodes (the
//                        router keeps each user on one node), with users chosen so that
//                        F_kv ~= s x pool on every node (capped by the profile's users).
// Both footprints (per node) are reported next to the pool size for every cell.
//
// Stationary histories. The simulator compresses days of a user's visits into seconds, and every
// revisit appends events, so uncapped histories grow for the whole run: requests get dearer and
// the K/V working set outgrows its sizing (a 16-second taobao run served 3x less at its end than
// at its start). With simulator.sweep_history_cap = m, a cell caps histories at m x the profile's
// mean (workload.max_history): a user at the cap drops its oldest quarter and grows back, so the
// users who carry the load hold 7/8 of the cap on average (the token count used for F_kv), and
// the cell is stationary once they got there. simulator.warmup_s runs that part unmeasured.
//
// Load: simulator.load (a fraction of EstimateCapacityPerNode, or with simulator.sweep_capacity_s
// of the cell's capacity measured under its best static split: short steady runs offered 3x the
// estimate at every static split, the most any served) or workload.rate_per_s. With
// simulator.load_basis "peak" the load sets the regime's peak rate
// (WorkloadOptions::PeakRateFactor), not its base.
//
// Thread-compatible. Runs its simulations one after another on the calling thread, or with
// simulator.sweep_threads > 1 a cell per thread (the hooks are then called under a mutex). The
// oracle fork()s from whichever thread runs its cell: the child only runs that cell's copy (glibc's
// malloc is fork-safe; the nodes log nothing at the sweep's warn level; and an oracle simulation
// turns Abseil's mutex deadlock detection off for the process, whose global lock a fork could
// otherwise copy while another thread holds it: simulator.cc).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "helm/config/config.h"
#include "helm/sim/cost_model.h"
#include "helm/sim/simulator.h"

namespace helm::sim {

// Requests per second one node serves when every batch is full (node.max_batch requests) of a
// typical request computed from scratch: the profile's mean history (capped by
// workload.max_history) all computed, no K/V reused, workload.candidates candidates, every
// embedding a hit. K/V reuse raises what a node serves and EMB misses lower it, so this is the
// capacity of a cluster with cold KV caches and warm EMB caches: at simulator.load 0.7 a cluster
// is at most about 70% busy unless EMB misses cost more than its K/V reuse saves.
absl::StatusOr<double> EstimateCapacityPerNode(const config::Config& config, const CostModel& cost);

// The config of one sweep cell: `base` with the workload's profile and regime, and the pool, its
// chunk size and the workload's users sized for `scale` (see above). InvalidArgument naming the
// key when the cell cannot be built (an unknown profile, a pool too small for a KV block).
struct CellConfig {
  config::Config config;
  double emb_footprint_bytes = 0;
  double kv_working_set_bytes = 0;
};
absl::StatusOr<CellConfig> ConfigForCell(const config::Config& base, const std::string& profile,
                                         const std::string& regime, double scale);

// Starts the pool at `split`, widening [r_min, r_max] to hold it (a static row's fixed split).
void SetInitialSplit(double split, config::Config& config);

// The rate simulator.load asks for (workload.rate_per_s when load is 0).
absl::StatusOr<double> OfferedRate(const config::Config& config);

// One capacity run of `config` at `split` (see "Load" above): static, steady, offered 3x the
// estimated capacity for simulator.sweep_capacity_s seconds; its throughput is the capacity under
// that split. The config's pool, workload and seed are kept.
absl::StatusOr<config::Config> CapacityRunConfig(const config::Config& config, double split);

// The base rate (workload.rate_per_s) that puts simulator.load of `capacity_per_s` on the cluster:
// on its base rate, or with simulator.load_basis "peak" on its peak.
absl::StatusOr<double> RateForLoad(const config::Config& config, double capacity_per_s);

// Measured capacities, each capacity run simulated once: what the runs served is kept by the
// fingerprint of their config (CellFingerprint), so that the regimes of one profile and scale in a
// sweep share them (a capacity run is steady whatever the cell's regime), and so do helm-train's
// episodes of one cluster. Thread-safe; two callers needing the same run at once may both simulate
// it, and agree (a run is deterministic).
class CapacityRuns {
 public:
  // The capacity of `config`'s cluster: the most that its capacity runs (CapacityRunConfig, of
  // simulator.sweep_capacity_s seconds) at `splits` serve. `on_run`, when set, is told of each
  // split about to be simulated (not of those already measured).
  absl::StatusOr<double> Measure(const config::Config& config, const std::vector<double>& splits,
                                 const std::function<void(double split)>& on_run = nullptr);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, double> served_ ABSL_GUARDED_BY(mu_);
};

struct SweepRun {
  std::string controller;  // "static", or a row of simulator.sweep_controllers (ApplyControllerRow)
  double split = 0;        // the static split (static runs)
  double p99_ms = 0;
  double p50_ms = 0;
  double slo_attainment = 0;
  double throughput_per_s = 0;
  double goodput_per_s = 0;  // answers within the SLO per second
  double kv_token_hit = 0;
  double emb_hit = 0;
  double tracking_error = -1;  // vs the oracle run of the cell, when there is one (static too)
  int64_t reversals = 0;       // summed over nodes
};

struct SweepCell {
  std::string profile, regime;
  double scale = 0;
  double pool_bytes = 0, emb_footprint_bytes = 0, kv_working_set_bytes = 0;
  double rate_per_s = 0;
  double capacity_per_s = 0;   // measured (simulator.sweep_capacity_s), else 0
  std::vector<SweepRun> runs;  // static splits in order, then the controllers
  // The static run with the lowest P99 (ties: the lower split).
  const SweepRun* BestStatic() const;
  // "<profile>-<regime>-<scale>": the stem of the cell's files (checkpoint, windows, audit logs).
  std::string FileStem() const;
  const SweepRun* Controller(const std::string& name) const;
};

struct SweepHooks {
  // Called before each simulation: cell index, cells, and what runs.
  std::function<void(int cell, int cells, const std::string& what)> progress;
  // Called after each simulation with its cell, its summary and the whole result.
  std::function<void(const struct SweepCell& cell, const SweepRun& run, const SimResult& result)>
      result;
  // Checkpoints. `restore` is asked before a cell runs, with the cell as planned (profile, regime,
  // scale, footprints) and its config's CellFingerprint: a cell it returns stands for the cell's
  // runs, which are then skipped. `cell_done` gets every cell that ran, with its fingerprint.
  std::function<std::optional<SweepCell>(const SweepCell& planned, const std::string& fingerprint)>
      restore;
  std::function<void(const SweepCell& cell, const std::string& fingerprint)> cell_done;
};

// The controller rows a sweep (and the paper table) may run on every cell, as config edits:
//   heuristic     control.policy heuristic
//   marginal      control.policy marginal (the ghost-gain rule, split_controller.h)
//   oracle        control.policy oracle (the offline oracle; the cell's tracking errors use it)
//   helm-base     control.policy helm, adapter and recovery off: the frozen base policy alone
//   helm-adapter  control.policy helm, the adapter on, recovery off
//   helm          control.policy helm, adapter and recovery on: the full controller
//   helm-rr       the full controller behind round-robin routing (router.policy round_robin)
// The helm rows need control.policy_path. InvalidArgument naming simulator.sweep_controllers for
// an unknown row, control.policy_path for a helm row without a policy.
absl::Status ApplyControllerRow(const std::string& row, config::Config& config);

// Runs base.simulator's sweep. InvalidArgument naming the simulator.sweep_* key for a bad list.
absl::StatusOr<std::vector<SweepCell>> RunSweep(const config::Config& base,
                                                const SweepHooks& hooks = {});

// ---- Checkpoints (helm-sim --resume; src/sim/sweep_checkpoint.cc) ----
//
// A sweep of 32 nodes is hours of one core per cell; a finished cell saved to a file lets a stopped
// sweep go on where it stopped. A cell's fingerprint names everything its figures depend on: a
// 64-bit FNV-1a hash (hex) of its config as YAML (ConfigToYaml; the cell's own profile, regime,
// pool and users, the simulator, workload, control and router settings), less the keys that only
// choose which cells a sweep has or how it runs (simulator.sweep_profiles, sweep_regimes,
// sweep_scales, sweep_threads, log). Two things are not part of it: the contents of the files the
// config names (a calibration, a policy: their paths are), and the code that ran it, so each saved
// cell records the source revision it came from.
std::string CellFingerprint(const config::Config& cell_config);

struct SavedSweepCell {
  SweepCell cell;
  std::string fingerprint;
  std::string revision;
};
// One cell as JSON (format "helm-sweep-cell-v1"), every figure to the last bit.
std::string SweepCellJson(const SweepCell& cell, const std::string& fingerprint,
                          const std::string& revision);
// InvalidArgument naming what is wrong for text that is not such a cell.
absl::StatusOr<SavedSweepCell> ParseSweepCell(const std::string& json);

// max - min of the best static splits of the cells at `scale` (all cells when scale <= 0).
double BestStaticSplitSpread(const std::vector<SweepCell>& cells, double scale = 0);

// One row per run: profile, regime, scale, footprints, controller, split and its figures.
std::string SweepCsv(const std::vector<SweepCell>& cells);

}  // namespace helm::sim
