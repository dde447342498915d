// Per-node health of the router's nodes: ejection after router.failures_to_eject consecutive
// failures, readmission when a health check passes, and the health checks' schedule. Part of the
// routing core: it decides, ClusterState records (SetHealthy), and the caller does the talking
// (helm-router probes nodes over gRPC; the simulator answers probes itself).
//
// Rules:
//  - A request result that says the node failed (for helm-router: UNAVAILABLE) counts one
//    consecutive failure; any other result resets the count. At failures_to_eject the node is
//    ejected: unhealthy, and so out of routing, until a health check passes.
//  - A health check that passes makes the node healthy (readmitting an ejected node and clearing
//    its failures); one that fails makes it unhealthy.
//  - A state stream that ends because the node is unreachable makes it unhealthy at once, rather
//    than at the next health check.
//  - A node removed from the node list (DNS) is unhealthy and not checked until it comes back.
//  - Each node is checked every probe_interval_us of the injected clock (TakeDueChecks); a node
//    never checked is due at once.
//
// Time comes only from the injected Clock, so tests and the simulator drive it with a FakeClock.
// Transitions are logged (spdlog) here, once each.
//
// Thread-safety: every method is thread-safe (one internal mutex, held for a few field updates).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "helm/common/clock.h"
#include "helm/route/cluster_state.h"
#include "helm/route/options.h"

namespace helm::route {

struct NodeHealthOptions {
  // Consecutive failed requests that eject a node (router.failures_to_eject); >= 1.
  int failures_to_eject = 3;
  // Time between two health checks of a node (router.health_check_interval_ms), in us; >= 1.
  int64_t check_interval_us = 500'000;

  static NodeHealthOptions FromRouterOptions(const RouterOptions& options) {
    return NodeHealthOptions{.failures_to_eject = options.failures_to_eject,
                             .check_interval_us = int64_t{options.health_check_interval_ms} * 1000};
  }
};

class NodeHealth {
 public:
  // `cluster` and `clock` are not owned and must outlive this. Nodes are those of `cluster`.
  NodeHealth(ClusterState* cluster, const NodeHealthOptions& options, Clock* clock);
  NodeHealth(const NodeHealth&) = delete;
  NodeHealth& operator=(const NodeHealth&) = delete;

  // The result of a request forwarded to `node`: `node_failed` when it says the node itself failed
  // (unreachable, shutting down). `detail` is for the log. Returns true when this result ejected
  // the node.
  bool OnRequestResult(int node, bool node_failed, std::string_view detail);
  // A health check of `node` answered: `serving` when it passed. `detail` is for the log.
  void OnHealthCheck(int node, bool serving, std::string_view detail);
  // The state stream of `node` ended; `unreachable` when it ended because the node is.
  void OnStreamEnded(int node, bool unreachable);
  // `node` left (true) or rejoined (false) the node list.
  void SetRemoved(int node, bool removed);

  // The nodes whose health check is due now (never checked, or last taken check_interval_us ago
  // or more), not removed, in increasing order; each is counted as checked now.
  std::vector<int> TakeDueChecks();
  // Microseconds from now until the next check falls due (0: one is due now; check_interval_us
  // when there is no node).
  int64_t MicrosUntilNextCheck() const;

  bool ejected(int node) const;
  bool removed(int node) const;
  int consecutive_failures(int node) const;
  const NodeHealthOptions& options() const { return options_; }

 private:
  struct State {
    int consecutive_failures = 0;
    bool ejected = false;
    bool removed = false;
    int64_t last_check_us = -1;  // when its last check was taken; -1: never
  };
  State& StateLocked(int node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ClusterState* const cluster_;
  const NodeHealthOptions options_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  std::vector<State> states_ ABSL_GUARDED_BY(mu_);  // grows with the cluster's nodes
};

}  // namespace helm::route
