// helm-router's gRPC edge: serves helm.v1.Recommender/Rank by forwarding each request to the node
// the routing core's Policy picks, and keeps the core's ClusterState fresh from each node's state
// stream and NodeHealth from health checks. All routing decisions live in the core (helm::route);
// this component holds the channels, calls, threads and the proto <-> core conversion.
//
// Per request: pick a node (policy), count it as in flight there, forward with the client's
// deadline (router.default_deadline_ms when the client set none) or, when sooner, the attempt's
// own deadline (router.attempt_timeout_ms, longer for a node that reports a queue; see
// AttemptTimeoutUs); on UNAVAILABLE (node down, draining, connection broken), RESOURCE_EXHAUSTED
// (queue full, or a message over the channel's size limits) or an attempt timeout (the node did
// not answer in its attempt's time: hung, or far slower than it reports) retry the next best node
// not yet tried, within the client's deadline and router.max_attempts. UNAVAILABLE and attempt
// timeouts count as node failures; router.failures_to_eject consecutive ones take the node out
// until its health check passes again (route::NodeHealth). A broken state stream marks the node
// unhealthy at once. When no node is left to try, the client gets the last attempt's status
// (DEADLINE_EXCEEDED, naming the timeout, for a timed-out one).
//
// Channels to the nodes: message sizes bounded by rpc::ChannelLimits (from the config's request
// limits, app::NodeChannelLimits), gRPC's own retries off, reconnection backoff 0.1-1 s.
//
// Time: health checks fall due by the injected Clock (every router.health_check_interval_ms of
// it), and so does the DNS refresh (every ten intervals). gRPC deadlines are wall-clock time.
//
// Thread-safety: all public methods are thread-safe. Start/Stop once each. No gRPC call is
// started or cancelled while a lock of the router (mu_, a ForwardCall's mu_) is held: every such
// step records what to do under the lock and does it after releasing it (see router.cc).
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/status_code_enum.h"
#include "helm/common/clock.h"
#include "helm/metrics/registry.h"
#include "helm/route/cluster_state.h"
#include "helm/route/node_health.h"
#include "helm/route/options.h"
#include "helm/route/policy.h"
#include "helm/rpc/limits.h"
#include "helm/rpc/security.h"
#include "helm/rpc/server.h"

namespace grpc {
class Service;
class Status;
}  // namespace grpc

namespace helm::router {

// An attempt gets at least this many times the node's expected response time (below), so that a
// node that is merely busy, and says so in its load reports, is not taken for a hung one.
inline constexpr double kAttemptTimeoutServiceMultiple = 4.0;

// The time one attempt on a node gets from its dispatch (us): `floor_us` (router.attempt_timeout_ms
// x 1000), or kAttemptTimeoutServiceMultiple x the node's expected response time when that is
// longer: ceil(outstanding / capacity) batches of `ewma_batch_us` each (NodeLoad.ewma_service_us,
// the smoothed compute time of one batch). `outstanding`: requests on the node, this one included
// (values below 1 count as 1); `capacity`: requests it computes at once (below 1 counts as 1).
// 0 when floor_us <= 0: attempts have no timeout of their own. Pure function.
int64_t AttemptTimeoutUs(int64_t floor_us, double ewma_batch_us, int outstanding, int capacity);

class Router {
 public:
  // InvalidArgument for a bad policy; nodes are connected by Start. `clock` (not owned; null: the
  // real clock) must outlive the router. `security`: how the channels to the nodes are secured
  // (rpc/security.h; default plaintext). `limits`: their message sizes (default gRPC's 4 MiB
  // receive limit; helm-router passes app::NodeChannelLimits of its config).
  static absl::StatusOr<std::unique_ptr<Router>> Create(const route::RouterOptions& options,
                                                        Clock* clock = nullptr,
                                                        rpc::ChannelSecurity security = {},
                                                        rpc::ChannelLimits limits = {});
  ~Router();

  // The Recommender service to register with the server; not owned by the caller.
  grpc::Service* service();
  // In-flight tracking for graceful shutdown (pass to rpc::ServerOptions::drainer).
  rpc::Drainer* drainer() { return &drainer_; }

  enum class Maintenance {
    kThread,  // a thread runs RunMaintenance as checks fall due (at most one interval apart)
    kManual,  // only the caller runs it (tests on a FakeClock)
  };
  // Resolves the nodes, runs a first round of maintenance (every node's health check, state
  // streams) and, for kThread, starts the maintenance thread.
  void Start(Maintenance maintenance = Maintenance::kThread);
  // One round now: the DNS refresh when due, the health checks due by the clock (waiting for
  // their answers, each bounded by health_check_interval_ms), and state streams for healthy nodes
  // that have none. Thread-safe, but meant for one caller at a time.
  void RunMaintenance();
  // Stops the maintenance thread and closes the streams. Idempotent.
  void Stop();
  // Blocks until at least `count` nodes are routable or `timeout` (wall time) passes; true when
  // they are.
  bool WaitForRoutable(int count, absl::Duration timeout);

  const route::ClusterState& cluster() const { return cluster_; }
  const route::NodeHealth& health() const { return health_; }
  const route::Policy& policy() const { return *policy_; }
  // The message size bounds of the channels to the nodes.
  const rpc::ChannelLimits& channel_limits() const { return limits_; }
  // The time (us) an attempt dispatched to `node` now would get (AttemptTimeoutUs of
  // router.attempt_timeout_ms and what the node last reported of its load, counting one more
  // request on it); 0: no attempt timeout. REQUIRES: 0 <= node < cluster().num_nodes().
  int64_t AttemptTimeoutUs(int node) const;

  // Adds the router's Prometheus metrics to `registry` (not owned): requests by status and their
  // latency, decisions by policy and chosen node, ejections and attempt timeouts by node
  // (per-request instruments), and retries and each node's state (healthy, unhealthy, ejected,
  // draining, removed; collectors read at scrape time). REQUIRES: called once, before the service
  // serves; the registry is not rendered after this router is destroyed.
  void RegisterMetrics(metrics::Registry* registry);

  struct Counters {
    int64_t requests = 0;
    int64_t ok = 0;
    int64_t failed = 0;
    int64_t retries = 0;           // attempts retried on another node
    int64_t attempt_timeouts = 0;  // attempts that ran out of their own time (AttemptTimeoutUs)
  };
  Counters counters() const;

 private:
  class Service;
  class ForwardCall;
  class StateWatcher;
  struct NodeConn;

  Router(const route::RouterOptions& options, Clock* clock, rpc::ChannelSecurity security,
         rpc::ChannelLimits limits);
  NodeConn* conn(int node) const;
  void MaintenanceLoop();
  void CheckHealth(const std::vector<int>& nodes, absl::Duration timeout);
  void RefreshDns();
  void EnsureNode(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnsureWatchers();
  void OnWatchDone(int node, const grpc::Status& status);
  // The result of an attempt on `node`: `node_failed` when it says the node failed (UNAVAILABLE,
  // an attempt timeout); feeds NodeHealth and the ejection metric.
  void OnNodeResult(int node, bool node_failed, const std::string& detail);
  void OnAttemptTimeout(int node);

  const route::RouterOptions options_;
  const rpc::ChannelSecurity security_;
  const rpc::ChannelLimits limits_;
  Clock* const clock_;
  std::unique_ptr<route::Policy> policy_;
  route::ClusterState cluster_;
  route::NodeHealth health_;
  rpc::Drainer drainer_;
  std::unique_ptr<Service> service_;

  mutable absl::Mutex mu_;
  // conns_[i] is written before node i is published in cluster_ and never changes after, so
  // request paths read it without the lock.
  std::array<std::unique_ptr<NodeConn>, route::kMaxNodes> conns_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int active_watchers_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_dns_refresh_us_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread maintenance_;

  std::atomic<int64_t> requests_{0}, ok_{0}, failed_{0}, retries_{0}, attempt_timeouts_{0};

  // Metrics instruments (null until RegisterMetrics; set before serving, read without a lock).
  metrics::Family<metrics::Counter>* requests_metric_ = nullptr;
  // Its counter per status code, looked up once (the request path then takes no lock).
  std::array<std::atomic<metrics::Counter*>, 17> requests_by_code_{};
  metrics::Histogram* latency_metric_ = nullptr;
  metrics::Family<metrics::Counter>* decisions_metric_ = nullptr;
  std::array<std::atomic<metrics::Counter*>, route::kMaxNodes> decisions_by_node_{};
  void CountDecision(int node);
  metrics::Family<metrics::Counter>* ejections_metric_ = nullptr;
  metrics::Family<metrics::Counter>* attempt_timeouts_metric_ = nullptr;
  void CountRequest(grpc::StatusCode code);
};

}  // namespace helm::router
