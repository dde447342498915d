#include "helm/serve/node_server.h"

#include <deque>

#include "absl/strings/str_cat.h"
#include "helm/common/bloom.h"
#include "helm/common/logging.h"
#include "helm/rpc/status.h"
#include "helm/serve/validate.h"
#include "spdlog/spdlog.h"

namespace helm::serve {
namespace {

// A subscriber that falls this far behind is dropped; it reconnects and gets a fresh snapshot.
constexpr size_t kMaxQueuedStates = 256;
// Seed of the EMB summary's hashes: the same on every node, so the router can combine them.
constexpr uint64_t kSummarySeed = 0x48454c4d;  // "HELM"

// Appends the KV cache's residency events to a state message.
void AddKvEvents(const std::vector<kv::ResidencyEvent>& events, v1::NodeState* state) {
  for (const kv::ResidencyEvent& e : events) {
    v1::KvResidencyEvent* event = state->add_kv_events();
    event->set_user_id(e.user_id);
    event->set_cached_tokens(static_cast<int32_t>(e.cached_tokens));
    event->set_history_start(e.history_start);
  }
}

}  // namespace

// One Rank call from admission to reply.
struct NodeServer::RankCall : Job {
  grpc::ServerUnaryReactor* reactor = nullptr;
  const v1::RankRequest* request = nullptr;
  v1::RankResponse* response = nullptr;
};

// One WatchState subscriber: a bounded queue of states written in order.
class NodeServer::StateStream final : public grpc::ServerWriteReactor<v1::NodeState> {
 public:
  StateStream(NodeServer* server, std::string subscriber)
      : server_(server), subscriber_(std::move(subscriber)) {}

  // Queues `state`; false when the subscriber is too far behind (the stream is then ended).
  bool Push(const v1::NodeState& state) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return false;
      if (queue_.size() < kMaxQueuedStates) {
        queue_.push_back(state);
        MaybeWriteLocked();
        return true;
      }
      finished_ = true;
    }
    Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "state subscriber too slow; reconnect for a fresh snapshot"));
    return false;
  }
  void End() {
    if (MarkFinished()) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "node is shutting down"));
    }
  }
  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      queue_.pop_front();
      if (ok) return MaybeWriteLocked();
    }
    if (MarkFinished()) Finish(grpc::Status::CANCELLED);
  }
  void OnCancel() override {
    if (MarkFinished()) Finish(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    server_->Unsubscribe(this);
    delete this;
  }

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_ || queue_.empty()) return;
    writing_ = true;
    StartWrite(&queue_.front());
  }
  // True for the one caller that must call Finish. Finish is called without mu_ held: OnDone,
  // which deletes this, may run on another thread as soon as Finish is called.
  bool MarkFinished() {
    absl::MutexLock lock(&mu_);
    if (finished_) return false;
    finished_ = true;
    return true;
  }

  NodeServer* server_;
  std::string subscriber_;
  absl::Mutex mu_;
  std::deque<v1::NodeState> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class NodeServer::RecommenderService final : public v1::Recommender::CallbackService {
 public:
  explicit RecommenderService(NodeServer* server) : server_(server) {}

  grpc::ServerUnaryReactor* Rank(grpc::CallbackServerContext* context,
                                 const v1::RankRequest* request,
                                 v1::RankResponse* response) override {
    rpc::Drainer::Token token = server_->drainer_.TryEnter();
    if (!token || server_->draining_.load()) {
      server_->failed_.fetch_add(1, std::memory_order_relaxed);
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "node is draining"));
      return reactor;
    }
    // The token ends with the call, after the reply is sent.
    grpc::ServerUnaryReactor* reactor = new rpc::DrainingReactor(std::move(token));
    const config::Config& c = server_->config_;
    const absl::Status valid =
        ValidateRankRequest(*request, RequestLimits{c.node.max_history, c.node.max_candidates,
                                                    c.emb.num_items, c.model.num_actions});
    if (!valid.ok()) {
      server_->failed_.fetch_add(1, std::memory_order_relaxed);
      reactor->Finish(rpc::ToGrpcStatus(valid));
      return reactor;
    }
    auto* call = new RankCall();
    call->reactor = reactor;
    call->request = request;
    call->response = response;
    call->deadline = context->deadline();
    NodeServer* server = server_;
    call->done = [server, call](Job* job, const absl::Status& status) {
      if (status.ok()) {
        const int64_t now_us = server->clock_->NowMicros();
        server->latency_us_.Record(now_us - job->admitted_us);
        server->ok_.fetch_add(1, std::memory_order_relaxed);
      } else {
        server->failed_.fetch_add(1, std::memory_order_relaxed);
      }
      call->reactor->Finish(rpc::ToGrpcStatus(status));
      delete call;
    };
    const absl::Status admitted = server_->scheduler_->Submit(call);
    if (!admitted.ok()) {
      server_->failed_.fetch_add(1, std::memory_order_relaxed);
      reactor->Finish(rpc::ToGrpcStatus(admitted));
      delete call;
    }
    return reactor;
  }

 private:
  NodeServer* server_;
};

class NodeServer::NodeService final : public v1::Node::CallbackService {
 public:
  explicit NodeService(NodeServer* server) : server_(server) {}

  grpc::ServerWriteReactor<v1::NodeState>* WatchState(
      grpc::CallbackServerContext*, const v1::WatchStateRequest* request) override {
    auto* stream = new StateStream(server_, request->subscriber());
    server_->Subscribe(stream);
    return stream;
  }

  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const v1::GetStatsRequest*, v1::NodeStats* stats) override {
    *stats = server_->Stats();
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* SetSplit(grpc::CallbackServerContext* context,
                                     const v1::SetSplitRequest* request,
                                     v1::SetSplitResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const double share = request->emb_share();
    if (!(share >= 0.0 && share <= 1.0)) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   absl::StrCat("emb_share: must be in [0, 1], got ", share)));
      return reactor;
    }
    response->set_target_split(server_->SetSplit(share));
    response->set_committed_split(server_->engine_->pool().Snapshot().committed_split);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context, const v1::DrainRequest*,
                                  v1::DrainResponse* response) override {
    server_->StartDraining();
    response->set_in_flight(server_->scheduler_->in_flight());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  NodeServer* server_;
};

absl::StatusOr<std::unique_ptr<NodeServer>> NodeServer::Create(const config::Config& config,
                                                               Clock* clock) {
  std::unique_ptr<NodeServer> server(new NodeServer(config, clock));
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Create(config);
  if (!engine.ok()) return engine.status();
  server->engine_ = *std::move(engine);
  for (int i = 0; i < config.node.workers; ++i) {
    absl::StatusOr<std::unique_ptr<Worker>> worker = server->engine_->NewWorker();
    if (!worker.ok()) return worker.status();
    server->workers_.push_back(*std::move(worker));
  }
  SchedulerOptions scheduler;
  scheduler.workers = config.node.workers;
  scheduler.queue_capacity = config.node.queue_capacity;
  scheduler.max_batch = config.node.max_batch;
  scheduler.max_batch_wait_us = config.node.max_batch_wait_us;
  NodeServer* s = server.get();
  server->scheduler_ = std::make_unique<Scheduler>(
      scheduler, clock,
      [s](int worker, absl::Span<Job* const> batch) { s->RunBatch(worker, batch); });
  {
    absl::MutexLock lock(&server->window_mu_);
    server->window_start_ = server->engine_->CacheStats();
  }
  server->publisher_ = std::thread([s] { s->PublisherLoop(); });
  server->resizer_ = std::thread([s] { s->ResizerLoop(); });
  return server;
}

NodeServer::NodeServer(const config::Config& config, Clock* clock)
    : config_(config),
      clock_(clock),
      recommender_(std::make_unique<RecommenderService>(this)),
      node_service_(std::make_unique<NodeService>(this)) {}

NodeServer::~NodeServer() { Stop(); }

std::vector<grpc::Service*> NodeServer::services() {
  return {recommender_.get(), node_service_.get()};
}

void NodeServer::RunBatch(int worker, absl::Span<Job* const> batch) {
  Worker& w = *workers_[worker];
  for (Job* job : batch) {
    RankCall* call = static_cast<RankCall*>(job);
    const int64_t start_us = clock_->NowMicros();
    RankStats stats;
    const absl::Status status = engine_->Rank(w, *call->request, call->response, &stats);
    const int64_t compute_us = clock_->NowMicros() - start_us;
    // Smoothed per-request service time for the router's load view.
    const double ewma = ewma_service_us_.load(std::memory_order_relaxed);
    ewma_service_us_.store(ewma == 0 ? compute_us : 0.9 * ewma + 0.1 * compute_us,
                           std::memory_order_relaxed);
    if (status.ok()) {
      v1::ServingInfo* info = call->response->mutable_info();
      info->set_node_id(config_.node.id);
      info->set_queue_us(job->started_us - job->admitted_us);
      info->set_compute_us(compute_us);
      info->set_batch_size(job->batch_size);
      if (call->request->request_id().empty()) {
        call->response->set_request_id(
            absl::StrCat(config_.node.id, "-", request_counter_.fetch_add(1) + 1));
      } else {
        call->response->set_request_id(call->request->request_id());
      }
    } else {
      spdlog::warn("Rank for user {} failed: {}", call->request->user_id(), status);
    }
    job->done(job, status);
  }
}

void NodeServer::StartDraining() {
  if (!draining_.exchange(true)) spdlog::info("draining: new requests are refused");
}

void NodeServer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  draining_.store(true);
  if (scheduler_ != nullptr) scheduler_->Stop();
  if (publisher_.joinable()) publisher_.join();
  if (resizer_.joinable()) resizer_.join();
  absl::MutexLock lock(&streams_mu_);
  for (StateStream* stream : streams_) stream->End();
}

double NodeServer::SetSplit(double emb_share) {
  const double target = engine_->pool().SetTarget(emb_share);
  absl::MutexLock lock(&mu_);
  resize_pending_ = true;
  return target;
}

void NodeServer::ResizerLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      // Wake for a new target, or now and then for background prefetch.
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](NodeServer* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                 return s->stopping_ || s->resize_pending_;
                               },
                               this),
                           absl::Milliseconds(20));
      if (stopping_) return;
      resize_pending_ = false;
    }
    // Steps back to back while a move is pending; each is bounded (pool.max_step_bytes).
    for (int i = 0; i < 1000; ++i) {
      const pool::StepResult step = engine_->pool().Step();
      if (step.idle) break;
      if (step.blocked) {
        absl::SleepFor(absl::Milliseconds(1));  // pinned content: let in-flight requests finish
      }
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
  }
}

v1::NodeLoad NodeServer::Load() const {
  v1::NodeLoad load;
  load.set_queue_depth(scheduler_->queue_depth());
  load.set_in_flight(scheduler_->in_flight());
  load.set_capacity(config_.node.workers * config_.node.max_batch);
  load.set_workers(config_.node.workers);
  load.set_ewma_service_us(ewma_service_us_.load(std::memory_order_relaxed));
  load.set_queue_capacity(config_.node.queue_capacity);
  return load;
}

v1::EmbSummary NodeServer::BuildSummary() const {
  BloomFilter filter(config_.node.emb_summary_bits, config_.node.emb_summary_hashes, kSummarySeed);
  engine_->emb().ForEachResidentId([&filter](int64_t id) { filter.Add(id); });
  v1::EmbSummary summary;
  summary.set_bits(filter.ToBytes());
  summary.set_num_hashes(filter.num_hashes());
  summary.set_seed(kSummarySeed);
  summary.set_resident_rows(engine_->emb().resident_rows());
  return summary;
}

v1::NodeState NodeServer::Snapshot() const {
  v1::NodeState state;
  state.set_node_id(config_.node.id);
  state.set_full_snapshot(true);
  *state.mutable_load() = Load();
  const pool::PoolSnapshot pool = engine_->pool().Snapshot();
  state.set_committed_split(pool.committed_split);
  state.set_target_split(pool.target_split);
  state.set_draining(draining_.load());
  AddKvEvents(engine_->kv().ResidentUsers(), &state);
  state.set_kv_resident_users(state.kv_events_size());
  return state;
}

void NodeServer::Subscribe(StateStream* stream) {
  v1::NodeState snapshot = Snapshot();
  absl::MutexLock lock(&streams_mu_);
  if (last_summary_.bits().empty()) last_summary_ = BuildSummary();
  *snapshot.mutable_emb_summary() = last_summary_;
  snapshot.set_seq(++seq_);
  streams_.push_back(stream);
  stream->Push(snapshot);
}

void NodeServer::Unsubscribe(StateStream* stream) {
  absl::MutexLock lock(&streams_mu_);
  streams_.erase(std::remove(streams_.begin(), streams_.end(), stream), streams_.end());
}

void NodeServer::Publish(bool with_summary) {
  v1::NodeState state;
  state.set_node_id(config_.node.id);
  *state.mutable_load() = Load();
  const pool::PoolSnapshot pool = engine_->pool().Snapshot();
  state.set_committed_split(pool.committed_split);
  state.set_target_split(pool.target_split);
  state.set_draining(draining_.load());
  state.set_kv_resident_users(engine_->kv().num_users());
  std::vector<kv::ResidencyEvent> events;
  engine_->kv().DrainResidencyEvents(&events);
  AddKvEvents(events, &state);
  v1::EmbSummary summary;
  if (with_summary) summary = BuildSummary();
  absl::MutexLock lock(&streams_mu_);
  if (with_summary) {
    last_summary_ = summary;
    *state.mutable_emb_summary() = std::move(summary);
  }
  state.set_seq(++seq_);
  for (StateStream* stream : streams_) stream->Push(state);
}

void NodeServer::PublisherLoop() {
  const absl::Duration interval = absl::Milliseconds(config_.node.state_publish_interval_ms);
  int64_t last_summary_us = 0;
  int64_t window_start_us = clock_->NowMicros();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval)) return;
    }
    const int64_t now_us = clock_->NowMicros();
    const bool summary =
        now_us - last_summary_us >= int64_t{config_.node.emb_summary_interval_ms} * 1000;
    if (summary) last_summary_us = now_us;
    Publish(summary);
    if (now_us - window_start_us >= int64_t{config_.node.stats_window_ms} * 1000) {
      const v1::CacheStats now = engine_->CacheStats();
      absl::MutexLock lock(&window_mu_);
      last_window_ = Subtract(now, window_start_);
      window_start_ = now;
      window_start_us = now_us;
    }
  }
}

v1::NodeStats NodeServer::Stats() const {
  v1::NodeStats stats;
  stats.set_node_id(config_.node.id);
  *stats.mutable_total() = engine_->CacheStats();
  {
    absl::MutexLock lock(&window_mu_);
    *stats.mutable_window() = last_window_;
  }
  v1::LatencySummary* latency = stats.mutable_latency();
  latency->set_count(latency_us_.Count());
  latency->set_p50_us(latency_us_.Quantile(0.5));
  latency->set_p90_us(latency_us_.Quantile(0.9));
  latency->set_p99_us(latency_us_.Quantile(0.99));
  latency->set_p999_us(latency_us_.Quantile(0.999));
  latency->set_mean_us(latency_us_.Mean());
  *stats.mutable_load() = Load();
  stats.set_requests_ok(ok_.load());
  stats.set_requests_failed(failed_.load());
  const pool::PoolSnapshot pool = engine_->pool().Snapshot();
  stats.set_committed_split(pool.committed_split);
  stats.set_target_split(pool.target_split);
  stats.set_pool_bytes(config_.pool.bytes);
  stats.set_chunk_bytes(config_.pool.chunk_bytes);
  stats.set_backend(engine_->backend_description());
  return stats;
}

}  // namespace helm::serve
