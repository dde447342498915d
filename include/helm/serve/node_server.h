// helm-node's core: the Recommender and Node gRPC services on top of an Engine.
//
// Rank: validate (INVALID_ARGUMENT naming the field) -> admit into the scheduler's bounded queue
// (RESOURCE_EXHAUSTED when full) -> batch -> compute on a worker (DEADLINE_EXCEEDED without
// computing when the deadline passed while queued) -> reply with ServingInfo filled.
// Node: WatchState streams a snapshot then deltas (load, split, KV residency events, and the EMB
// Bloom summary when rebuilt) every node.state_publish_interval_ms; GetStats, SetSplit, Drain.
//
// Background threads: the publisher (state stream, statistics window) and the resizer (runs pool
// resize steps while a move is pending, so refill never sits on a request's path).
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
#include "helm/common/histogram.h"
#include "helm/config/config.h"
#include "helm/rpc/server.h"
#include "helm/serve/engine.h"
#include "helm/serve/scheduler.h"
#include "helm/v1/node.grpc.pb.h"
#include "helm/v1/recommender.grpc.pb.h"

namespace helm::serve {

class NodeServer {
 public:
  // Builds the engine and one worker per node.workers, starts the background threads.
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

  Engine& engine() { return *engine_; }
  v1::NodeStats Stats() const;
  v1::NodeLoad Load() const;

 private:
  class RecommenderService;
  class NodeService;
  class StateStream;
  struct RankCall;

  NodeServer(const config::Config& config, Clock* clock);
  void RunBatch(int worker, absl::Span<Job* const> batch);
  void PublisherLoop();
  void ResizerLoop();
  void Publish(bool with_summary);
  v1::NodeState Snapshot() const;
  v1::EmbSummary BuildSummary() const;
  void Subscribe(StateStream* stream);
  void Unsubscribe(StateStream* stream);
  double SetSplit(double emb_share);

  const config::Config config_;
  Clock* const clock_;
  std::unique_ptr<Engine> engine_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<RecommenderService> recommender_;
  std::unique_ptr<NodeService> node_service_;
  rpc::Drainer drainer_;
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> request_counter_{0};

  LatencyHistogram latency_us_;  // admission to reply, OK replies
  std::atomic<int64_t> ok_{0}, failed_{0};
  std::atomic<double> ewma_service_us_{0};

  mutable absl::Mutex streams_mu_;
  std::vector<StateStream*> streams_ ABSL_GUARDED_BY(streams_mu_);
  uint64_t seq_ ABSL_GUARDED_BY(streams_mu_) = 0;
  v1::EmbSummary last_summary_ ABSL_GUARDED_BY(streams_mu_);

  mutable absl::Mutex window_mu_;
  v1::CacheStats window_start_ ABSL_GUARDED_BY(window_mu_);
  v1::CacheStats last_window_ ABSL_GUARDED_BY(window_mu_);

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool resize_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::thread publisher_;
  std::thread resizer_;
};

}  // namespace helm::serve
