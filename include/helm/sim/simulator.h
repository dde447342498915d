// helm-sim's core: a cluster's digital twin (DESIGN.md §7). N node cores and the routing core run
// on one virtual clock, on one thread. Each node is the real NodeCore on payload-free storage, so
// the real EMB and KV bookkeeping decides every hit, miss, eviction and resize; only a batch's
// service time comes from the cost model. The router is the real routing core (ClusterState and
// the configured Policy), fed each node's state feed at the node's publish interval, so its view is
// as stale as in the real system. Requests come from the one workload library.
//
// Events, in time order (ties in the order they were scheduled): a request arrives and is routed
// (a node that refuses it, queue full, sends it to the next best node, like helm-router); a node
// with a free compute slot takes a ready batch, prepares it (BeginBatch), and completes it
// (CompleteBatch) the cost model's service time later; every publish interval every node publishes
// its state to the router; every statistics window every node closes a window and its split
// controller (control.policy) sets the next target; every 20 ms, like helm-node's resizer, every
// node runs pool resize steps back to back while a move is pending (and its background prefetch).
//
// PCIe: each node has one host -> device link (PcieQueue). A batch's EMB miss bytes are a
// foreground transfer on it; resize refill (prefetch) bytes are background transfers under
// pool.prefetch_bytes_per_s. A miss that finds the link busy waits, and the batch with it.
//
// The oracle (control.policy "oracle", offline): at each window's start the simulator copies
// itself (fork(): the copy-on-write child is the whole cluster, caches, queues and router state
// included) once per candidate split r_min, r_min + control.oracle_step, ..., r_max; each copy sets
// every node's target to its candidate, runs to the window's end and reports the window's P99;
// the original then takes the best candidate (ties: the one nearest the current split) and runs
// the window itself. One split for the whole cluster per window (per-node choices would need
// candidates^nodes replays).
//
// Deterministic: the same config and seed give the same result, byte for byte in the JSON.
// Thread-compatible: one thread calls Run.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "helm/common/histogram.h"
#include "helm/config/config.h"
#include "helm/control/features.h"
#include "helm/control/split_controller.h"
#include "helm/sim/cost_model.h"

namespace helm::sim {

// One second of simulated time.
struct SimSecond {
  int64_t t_s = 0;
  int64_t arrivals = 0;
  int64_t completions = 0;  // answered OK
  int64_t failures = 0;     // answered with an error (deadline, refused everywhere)
  double p50_ms = 0;
  double p99_ms = 0;
  double kv_token_hit = 0;  // over the requests completed in the second
  double emb_hit = 0;
  std::vector<double> split;  // committed EMB share per node at the second's end
};

// One statistics window of the cluster.
struct SimWindow {
  int64_t end_us = 0;
  int64_t answers = 0;
  double p99_ms = 0;           // of the OK answers given in the window, all nodes
  std::vector<double> target;  // each node's target split for the window (set at its start)
  // The oracle's replays: each candidate split's P99 for the window, from the same starting state.
  std::vector<double> candidates;
  std::vector<double> candidate_p99_ms;
};

// One surface's share of a run (workload.mix: the feed is surface 0, the mix's second surface 1),
// measured as SimResult's totals are.
struct SurfaceResult {
  int64_t arrivals = 0;
  int64_t completions = 0;
  int64_t failures = 0;
  int64_t within_slo = 0;
  LatencyHistogram latency_us;
  double slo_attainment() const { return arrivals > 0 ? double(within_slo) / arrivals : 0.0; }
};

struct NodeResult {
  std::string id;
  int64_t replies = 0;
  double kv_token_hit = 0;
  double emb_hit = 0;
  double split_first = 0;
  double split_last = 0;
  double busy_fraction = 0;  // share of compute-slot time spent on batches
  int64_t reversals = 0;     // the controller's moves opposite to its previous move
  int64_t pcie_background_bytes = 0;
  double pcie_foreground_wait_ms = 0;  // time EMB misses waited for the link, in total
};

// Everything but `seconds` and `windows` (which cover the whole run) counts only requests that
// arrived after the warm-up (simulator.warmup_s).
struct SimResult {
  double warmup_s = 0;
  double simulated_s = 0;  // measured: from the end of the warm-up to the last answer
  // Measured arrivals: from the end of the warm-up to the end of the workload's schedule. Goodput
  // is over this span, as helm-bench's is over its schedule, so that runs of the same arrivals
  // that answer all of them within the SLO have the same goodput however long their last answers
  // take to drain.
  double offered_s = 0;
  double wall_s = 0;
  int64_t arrivals = 0;
  int64_t completions = 0;
  int64_t failures = 0;
  int64_t within_slo = 0;
  LatencyHistogram latency_us;  // arrival to answer, OK answers
  // The part of latency_us spent at nodes (from reaching the first node to the answer leaving:
  // queue, compute and any refusals), without simulator.rpc_overhead_us: what the cost model and
  // the node core decide, comparable with a real node's queue_us + compute_us.
  LatencyHistogram node_latency_us;
  double kv_token_hit = 0;
  double emb_hit = 0;
  std::vector<NodeResult> nodes;  // replies and hit ratios measured; busy over the whole run
  // Each surface's arrivals and answers: two with workload.mix on, one otherwise.
  std::vector<SurfaceResult> surfaces;
  std::vector<SimSecond> seconds;
  std::vector<SimWindow> windows;
  std::string controller;  // control.policy

  double slo_attainment() const { return arrivals > 0 ? double(within_slo) / arrivals : 0.0; }
  double throughput_per_s() const { return simulated_s > 0 ? completions / simulated_s : 0.0; }
  double goodput_per_s() const { return offered_s > 0 ? within_slo / offered_s : 0.0; }
};

struct SimulatorHooks {
  // Called about once a simulated second with the time and the requests answered so far.
  std::function<void(double simulated_s, int64_t completions)> progress;
  // When set, every node's split controller for the run (instead of control.policy's): called
  // once per node at the start of Run with the node's index and the scales its features are
  // normalised by (serve::FeatureScalesForConfig of the node's config). helm-train installs its
  // sampling controller this way. Not with control.policy "oracle".
  std::function<std::unique_ptr<control::SplitController>(int node,
                                                          const control::FeatureScales& scales)>
      controller;
};

class Simulator {
 public:
  // InvalidArgument naming the key for a config the simulator cannot run (the nodes' pool backend
  // is forced to "none"; simulator.gpu or simulator.calibration_path pick the cost profile).
  static absl::StatusOr<std::unique_ptr<Simulator>> Create(const config::Config& config);
  ~Simulator();

  // Runs the workload to its end (or simulator.duration_s, whichever comes first) and returns what
  // was measured. Call once.
  absl::StatusOr<SimResult> Run(const SimulatorHooks& hooks = {});

  const CostModel& cost_model() const;

 private:
  struct Impl;
  explicit Simulator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The cost model a config asks for: simulator.calibration_path over its base profile, or the
// simulator.gpu profile; errors name the key.
absl::StatusOr<CostModel> CostModelForConfig(const config::Config& config);

// The mean over windows and nodes of |split - oracle split| (the windows both runs have that end
// after the warm-up).
// REQUIRES: the runs were of the same config but for control.policy.
double TrackingError(const SimResult& run, const SimResult& oracle);

// The result as JSON (one object; stable key order and number formatting), as a CSV time series
// (one row per simulated second) and as a CSV of the statistics windows (one row per window: its
// P99, and each node's target split).
std::string ToJson(const SimResult& result, const config::Config& config);
std::string ToCsv(const SimResult& result);
std::string WindowsCsv(const SimResult& result);

}  // namespace helm::sim
