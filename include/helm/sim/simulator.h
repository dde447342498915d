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
// its state to the router; every statistics window every node closes a window and, when a split
// plan is set, gets its next target; pool resize steps run while a move is pending.
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

struct NodeResult {
  std::string id;
  int64_t replies = 0;
  double kv_token_hit = 0;
  double emb_hit = 0;
  double split_first = 0;
  double split_last = 0;
  double busy_fraction = 0;  // share of compute-slot time spent on batches
};

struct SimResult {
  double simulated_s = 0;
  double wall_s = 0;
  int64_t arrivals = 0;
  int64_t completions = 0;
  int64_t failures = 0;
  int64_t within_slo = 0;
  LatencyHistogram latency_us;  // arrival to answer, OK answers
  double kv_token_hit = 0;
  double emb_hit = 0;
  std::vector<NodeResult> nodes;
  std::vector<SimSecond> seconds;

  double slo_attainment() const { return arrivals > 0 ? double(within_slo) / arrivals : 0.0; }
  double throughput_per_s() const { return simulated_s > 0 ? completions / simulated_s : 0.0; }
  double goodput_per_s() const { return simulated_s > 0 ? within_slo / simulated_s : 0.0; }
};

struct SimulatorHooks {
  // Called about once a simulated second with the time and the requests answered so far.
  std::function<void(double simulated_s, int64_t completions)> progress;
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

// The result as JSON (one object; stable key order and number formatting) and as a CSV time
// series (one row per simulated second).
std::string ToJson(const SimResult& result, const config::Config& config);
std::string ToCsv(const SimResult& result);

}  // namespace helm::sim
