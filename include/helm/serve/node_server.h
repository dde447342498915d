// helm-node's gRPC edge: the Recommender and Node services on top of a NodeCore, with the threads
// the core has none of.
//
// Rank: validate (INVALID_ARGUMENT naming the field) -> convert to a RankJob -> NodeCore::Submit
// (RESOURCE_EXHAUSTED when the queue is full) -> a worker takes the batch and runs it
// (DEADLINE_EXCEEDED without computing when the deadline passed before compute) -> reply with
// ServingInfo filled.
// Node: WatchState streams the core's state feed (a snapshot then deltas: load, split, the
// controller's status, KV residency events, and the EMB Bloom summary when rebuilt) every
// node.state_publish_interval_ms; GetStats, SetSplit, Drain, GetControl, SetControlFrozen.
// SetSplit, Drain and SetControlFrozen are admin calls: grpc.admin decides who may make them
// (rpc/admin_auth.h); a refused call changes nothing. A SetSplit freezes the split controller
// (NodeCore::OverrideSplit) until SetControlFrozen(false) resumes it.
//
// Threads: node.workers workers (each pulls batches from the core's queue and sleeps until the next
// one is ready), the publisher (state feed), the control thread (every control.interval_ms: closes
// the statistics window, runs the split controller on it, writes the audit log line, wakes the
// resizer when the target moved) and the resizer (runs pool resize steps while a move is pending,
// so refill never sits on a request's path).
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "helm/common/clock.h"
#include "helm/config/config.h"
#include "helm/metrics/registry.h"
#include "helm/rpc/admin_auth.h"
#include "helm/rpc/server.h"
#include "helm/serve/audit_log.h"
#include "helm/serve/batch_workers.h"
#include "helm/serve/node_core.h"
#include "helm/v1/node.grpc.pb.h"
#include "helm/v1/recommender.grpc.pb.h"

namespace helm::serve {

class NodeServer {
 public:
  // Builds the core and one worker per node.workers, starts the threads. InvalidArgument naming
  // grpc.admin.token_file when that file cannot be read, or control.audit_log when that file
  // cannot be opened for appending.
  static absl::StatusOr<std::unique_ptr<NodeServer>> Create(const config::Config& config,
                                                            Clock* clock = Clock::Real());
  ~NodeServer();

  // Services to register (not owned by the caller) and the drainer for rpc::Server.
  std::vector<grpc::Service*> services();
  rpc::Drainer* drainer() { return &drainer_; }

  // Starts draining: health is the rpc::Server's business; here new Rank calls are refused and
  // state streams report draining. Idempotent.
  void StartDraining();
  // Answers every queued request UNAVAILABLE, ends state streams, joins the threads. Idempotent.
  void Stop();

  // Adds the node's Prometheus metrics to `registry` (not owned; see docs/README "Metrics"):
  // per-request instruments (requests by method and status, latency, queue and compute time, batch
  // size) and collectors that read the core's and caches' counters at scrape time. REQUIRES: called
  // once, before the services serve; the registry is not rendered after this server is destroyed.
  void RegisterMetrics(metrics::Registry* registry);

  NodeCore& core() { return *core_; }
  Engine& engine() { return core_->engine(); }
  v1::NodeStats Stats() const;
  // The split controller's status with the pool's splits (GetControl, GetStats).
  v1::ControlStatus ControlStatusProto() const;
  // Rank calls whose client cancelled them (or whose deadline passed) before the reply; those
  // still queued then are answered CANCELLED without being computed.
  int64_t cancelled_calls() const { return cancelled_calls_.load(std::memory_order_relaxed); }

 private:
  class RecommenderService;
  class NodeService;
  class StateStream;
  struct RankCall;

  NodeServer(const config::Config& config, Clock* clock);
  void PublisherLoop();
  void ControlLoop();
  void ResizerLoop();
  void Subscribe(StateStream* stream);
  void Unsubscribe(StateStream* stream);
  double SetSplit(double emb_share);

  const config::Config config_;
  Clock* const clock_;
  std::unique_ptr<NodeCore> core_;
  std::unique_ptr<BatchWorkers> workers_;
  std::unique_ptr<RecommenderService> recommender_;
  std::unique_ptr<NodeService> node_service_;
  // Who may call SetSplit, Drain and SetControlFrozen (config grpc.admin).
  std::unique_ptr<rpc::AdminAuthorizer> admin_;
  // control.audit_log (null: off); written by the control thread only.
  std::unique_ptr<ControlAuditLog> audit_;
  rpc::Drainer drainer_;
  std::atomic<uint64_t> request_counter_{0};
  std::atomic<int64_t> cancelled_calls_{0};

  // Metrics instruments (null until RegisterMetrics; set before serving, read without a lock).
  struct Instruments;
  std::unique_ptr<Instruments> metrics_;
  void CountRequest(const char* method, grpc::StatusCode code);

  mutable absl::Mutex streams_mu_;
  std::vector<StateStream*> streams_ ABSL_GUARDED_BY(streams_mu_);

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool resize_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::thread publisher_;
  std::thread control_;
  std::thread resizer_;
};

// Wire forms of the core's values (the one place protos are converted).
v1::NodeLoad ToProto(const NodeLoad& load);
v1::NodeState ToProto(const NodeStateUpdate& state);
v1::ControlStatus ToProto(const ControlStatus& control, double committed_split,
                          double target_split);
// Cumulative counters (or a window's deltas) as helm.v1.CacheStats.
v1::CacheStats ToProto(const emb::EmbStats& emb, const kv::KvStats& kv, const pool::PoolStats& pool,
                       int64_t pending_bytes, double split);
// A view of `request` (which must outlive it).
RankInput FromProto(const v1::RankRequest& request);

}  // namespace helm::serve
