// helm-router's core: serves helm.v1.Recommender/Rank by forwarding each request to the node a
// Policy picks, and keeps the ClusterState fresh from each node's state stream and health checks.
//
// Per request: pick a node (policy), count it as in flight there, forward with the client's
// deadline (router.default_deadline_ms when the client set none); on UNAVAILABLE (node down,
// draining, connection broken) or RESOURCE_EXHAUSTED (queue full) retry the next best node not
// yet tried, within the deadline and router.max_attempts. UNAVAILABLE counts as a node failure;
// router.failures_to_eject consecutive ones take the node out until its health check passes again.
// A broken state stream marks the node unhealthy at once.
//
// Thread-safety: all public methods are thread-safe. Start/Stop once each.
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
#include "grpcpp/channel.h"
#include "helm/common/clock.h"
#include "helm/route/cluster_state.h"
#include "helm/route/options.h"
#include "helm/route/policy.h"
#include "helm/rpc/server.h"
#include "helm/v1/node.grpc.pb.h"
#include "helm/v1/recommender.grpc.pb.h"

namespace helm::route {

class Router {
 public:
  // InvalidArgument for a bad policy; nodes are connected by Start.
  static absl::StatusOr<std::unique_ptr<Router>> Create(const RouterOptions& options);
  ~Router();

  // The Recommender service to register with the server; not owned by the caller.
  grpc::Service* service();
  // In-flight tracking for graceful shutdown (pass to rpc::ServerOptions::drainer).
  rpc::Drainer* drainer() { return &drainer_; }

  // Resolves the nodes, runs a first round of health checks, opens state streams and starts the
  // maintenance thread (health checks, stream reconnects, DNS refresh).
  void Start();
  // Stops the maintenance thread and closes the streams. Idempotent.
  void Stop();
  // Blocks until at least `count` nodes are routable or `timeout` passes; true when they are.
  bool WaitForRoutable(int count, absl::Duration timeout);

  const ClusterState& cluster() const { return cluster_; }
  const Policy& policy() const { return *policy_; }

  struct Counters {
    int64_t requests = 0;
    int64_t ok = 0;
    int64_t failed = 0;
    int64_t retries = 0;
  };
  Counters counters() const;

 private:
  class Service;
  class ForwardCall;
  class StateWatcher;
  struct NodeConn;

  explicit Router(const RouterOptions& options);
  NodeConn* conn(int node) const;
  void MaintenanceLoop();
  void CheckHealthAll(absl::Duration timeout);
  void RefreshDns();
  void EnsureNode(const std::string& address);
  void EnsureWatchers();
  void OnWatchDone(int node, const grpc::Status& status);
  void OnNodeResult(int node, const grpc::Status& status);

  const RouterOptions options_;
  std::unique_ptr<Policy> policy_;
  ClusterState cluster_;
  rpc::Drainer drainer_;
  std::unique_ptr<Service> service_;

  mutable absl::Mutex mu_;
  // conns_[i] is written before node i is published in cluster_ and never changes after, so
  // request paths read it without the lock.
  std::array<std::unique_ptr<NodeConn>, kMaxNodes> conns_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int active_watchers_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread maintenance_;

  std::atomic<int64_t> requests_{0}, ok_{0}, failed_{0}, retries_{0};
};

}  // namespace helm::route
