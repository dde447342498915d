#include "helm/serve/node_server.h"

#include <array>
#include <deque>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "helm/common/logging.h"
#include "helm/common/status.h"
#include "helm/rpc/admin_auth.h"
#include "helm/rpc/status.h"
#include "helm/serve/validate.h"
#include "spdlog/spdlog.h"

namespace helm::serve {
namespace {

// A subscriber that falls this far behind is dropped; it reconnects and gets a fresh snapshot.
constexpr size_t kMaxQueuedStates = 256;

}  // namespace

struct NodeServer::Instruments {
  metrics::Family<metrics::Counter>* requests = nullptr;
  // Rank's counter per status code, looked up in `requests` once (the request path then takes no
  // lock).
  std::array<std::atomic<metrics::Counter*>, 17> rank_by_code{};
  metrics::Histogram* latency = nullptr;
  metrics::Histogram* queue_time = nullptr;
  metrics::Histogram* compute_time = nullptr;
  metrics::Histogram* batch_size = nullptr;
};

// One Rank call from admission to reply.
struct NodeServer::RankCall : RankJob {
  grpc::ServerUnaryReactor* reactor = nullptr;
  const v1::RankRequest* request = nullptr;
  v1::RankResponse* response = nullptr;
  int64_t received_us = 0;  // when the handler got it (Clock micros)
};

// One WatchState subscriber: a bounded queue of states written in order.
class NodeServer::StateStream final : public grpc::ServerWriteReactor<v1::NodeState> {
 public:
  StateStream(NodeServer* server, std::string subscriber)
      : server_(server), subscriber_(std::move(subscriber)) {}

  // The core's subscription id (set once subscribed).
  int feed_id = 0;

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
    if (!token || server_->core_->draining()) {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      server_->CountRequest("Rank", grpc::StatusCode::UNAVAILABLE);
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "node is draining"));
      return reactor;
    }
    // The token ends with the call, after the reply is sent.
    auto* reactor = new rpc::DrainingReactor(std::move(token), &server_->cancelled_calls_);
    const config::Config& c = server_->config_;
    const absl::Status valid =
        ValidateRankRequest(*request, RequestLimits{c.node.max_history, c.node.max_candidates,
                                                    c.emb.num_items, c.model.num_actions});
    if (!valid.ok()) {
      const grpc::Status status = rpc::ToGrpcStatus(valid);
      server_->CountRequest("Rank", status.error_code());
      reactor->Finish(status);
      return reactor;
    }
    auto* call = new RankCall();
    call->reactor = reactor;
    call->request = request;
    call->response = response;
    call->received_us = server_->clock_->NowMicros();
    call->input = FromProto(*request);
    // A client that cancels (or whose deadline passes) while the job waits is not computed.
    call->cancelled = reactor->cancelled();
    // The gRPC deadline, on the core's clock.
    const auto left = context->deadline() - std::chrono::system_clock::now();
    if (context->deadline() != std::chrono::system_clock::time_point::max()) {
      call->deadline_us = server_->clock_->NowMicros() +
                          std::chrono::duration_cast<std::chrono::microseconds>(left).count();
    }
    NodeServer* server = server_;
    call->done = [server](RankJob* job, const absl::Status& status) {
      auto* call = static_cast<RankCall*>(job);
      if (status.ok()) {
        const RankOutput& out = call->output;
        v1::RankResponse* response = call->response;
        response->clear_items();
        for (const ScoredItem& item : out.items) {
          v1::ScoredItem* scored = response->add_items();
          scored->set_item_id(item.item_id);
          scored->set_score(item.score);
        }
        v1::ServingInfo* info = response->mutable_info();
        info->set_node_id(server->config_.node.id);
        info->set_cached_tokens(out.cached_tokens);
        info->set_computed_tokens(out.computed_tokens);
        info->set_emb_hits(out.emb_hits);
        info->set_emb_misses(out.emb_misses);
        info->set_resident_tokens(out.resident_tokens);
        info->set_queue_us(out.queue_us);
        info->set_compute_us(out.compute_us);
        info->set_batch_size(out.batch_size);
        if (const Instruments* m = server->metrics_.get(); m != nullptr) {
          m->latency->Observe((server->clock_->NowMicros() - call->received_us) * 1e-6);
          m->queue_time->Observe(out.queue_us * 1e-6);
          m->compute_time->Observe(out.compute_us * 1e-6);
          m->batch_size->Observe(out.batch_size);
        }
        if (call->request->request_id().empty()) {
          response->set_request_id(absl::StrCat(server->config_.node.id, "-",
                                                server->request_counter_.fetch_add(1) + 1));
        } else {
          response->set_request_id(call->request->request_id());
        }
      } else if (!absl::IsDeadlineExceeded(status) && !absl::IsUnavailable(status) &&
                 !absl::IsCancelled(status)) {
        spdlog::warn("Rank for user {} failed: {}", call->request->user_id(), status);
      }
      const grpc::Status reply = rpc::ToGrpcStatus(status);
      server->CountRequest("Rank", reply.error_code());
      call->reactor->Finish(reply);
      delete call;
    };
    if (const absl::Status admitted = server_->workers_->Submit(call); !admitted.ok()) {
      const grpc::Status reply = rpc::ToGrpcStatus(admitted);
      server_->CountRequest("Rank", reply.error_code());
      reactor->Finish(reply);
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
    server_->CountRequest("GetStats", grpc::StatusCode::OK);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* SetSplit(grpc::CallbackServerContext* context,
                                     const v1::SetSplitRequest* request,
                                     v1::SetSplitResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (!Authorised("SetSplit", context, reactor)) return reactor;
    const double share = request->emb_share();
    if (!(share >= 0.0 && share <= 1.0)) {
      server_->CountRequest("SetSplit", grpc::StatusCode::INVALID_ARGUMENT);
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   absl::StrCat("emb_share: must be in [0, 1], got ", share)));
      return reactor;
    }
    response->set_target_split(server_->SetSplit(share));
    response->set_committed_split(server_->engine().pool().Snapshot().committed_split);
    response->set_control_frozen(server_->core_->control_frozen());
    server_->CountRequest("SetSplit", grpc::StatusCode::OK);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* GetControl(grpc::CallbackServerContext* context,
                                       const v1::GetControlRequest*,
                                       v1::ControlStatus* response) override {
    *response = server_->ControlStatusProto();
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    server_->CountRequest("GetControl", grpc::StatusCode::OK);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* SetControlFrozen(grpc::CallbackServerContext* context,
                                             const v1::SetControlFrozenRequest* request,
                                             v1::ControlStatus* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (!Authorised("SetControlFrozen", context, reactor)) return reactor;
    if (request->frozen() != server_->core_->control_frozen()) {
      spdlog::info("split controller {} by {}", request->frozen() ? "frozen" : "resumed",
                   context->peer());
    }
    server_->core_->FreezeControl(request->frozen());
    *response = server_->ControlStatusProto();
    server_->CountRequest("SetControlFrozen", grpc::StatusCode::OK);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context, const v1::DrainRequest*,
                                  v1::DrainResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (!Authorised("Drain", context, reactor)) return reactor;
    server_->StartDraining();
    response->set_in_flight(server_->core_->Load().in_flight);
    server_->CountRequest("Drain", grpc::StatusCode::OK);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  // Admin calls change the node: checked before anything happens (rpc/admin_auth.h). A refused
  // call is finished here with its status.
  bool Authorised(const char* method, grpc::CallbackServerContext* context,
                  grpc::ServerUnaryReactor* reactor) {
    const absl::Status allowed = server_->admin_->Check(rpc::PeerOf(*context));
    if (allowed.ok()) return true;
    spdlog::warn("{} from {} refused: {}", method, context->peer(), allowed.message());
    const grpc::Status status = rpc::ToGrpcStatus(allowed);
    server_->CountRequest(method, status.error_code());
    reactor->Finish(status);
    return false;
  }

  NodeServer* server_;
};

absl::StatusOr<std::unique_ptr<NodeServer>> NodeServer::Create(const config::Config& config,
                                                               Clock* clock) {
  std::unique_ptr<NodeServer> server(new NodeServer(config, clock));
  HELM_ASSIGN_OR_RETURN(server->admin_, rpc::AdminAuthorizer::Create(config.grpc.admin));
  if (!config.control.audit_log.empty()) {
    HELM_ASSIGN_OR_RETURN(server->audit_, ControlAuditLog::Open(config.control.audit_log));
  }
  HELM_ASSIGN_OR_RETURN(server->core_, NodeCore::Create(config, clock));
  HELM_ASSIGN_OR_RETURN(server->workers_,
                        BatchWorkers::Start(server->core_.get(), config.node.workers));
  NodeServer* s = server.get();
  server->publisher_ = std::thread([s] { s->PublisherLoop(); });
  server->control_ = std::thread([s] { s->ControlLoop(); });
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

void NodeServer::StartDraining() {
  if (!core_->draining()) spdlog::info("draining: new requests are refused");
  core_->StartDraining();
}

void NodeServer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (core_ != nullptr) core_->StartDraining();
  // Running batches finish; what is still queued is answered UNAVAILABLE.
  if (workers_ != nullptr) workers_->Stop();
  if (core_ != nullptr) core_->Stop();
  if (publisher_.joinable()) publisher_.join();
  if (control_.joinable()) control_.join();
  if (resizer_.joinable()) resizer_.join();
  absl::MutexLock lock(&streams_mu_);
  for (StateStream* stream : streams_) stream->End();
}

double NodeServer::SetSplit(double emb_share) {
  // An operator's split holds: the controller stays frozen until resumed.
  if (!core_->control_frozen() && core_->controller() != nullptr) {
    spdlog::info("split controller frozen by SetSplit (helm-ctl control resume to resume)");
  }
  const double target = core_->OverrideSplit(emb_share);
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
      const pool::StepResult step = core_->StepResize();
      if (step.idle) break;
      if (step.blocked) {
        absl::SleepFor(absl::Milliseconds(1));  // pinned content: let in-flight requests finish
      }
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
  }
}

void NodeServer::Subscribe(StateStream* stream) {
  {
    absl::MutexLock lock(&streams_mu_);
    streams_.push_back(stream);
  }
  stream->feed_id =
      core_->Subscribe([stream](const NodeStateUpdate& state) { stream->Push(ToProto(state)); });
}

void NodeServer::Unsubscribe(StateStream* stream) {
  core_->Unsubscribe(stream->feed_id);
  absl::MutexLock lock(&streams_mu_);
  streams_.erase(std::remove(streams_.begin(), streams_.end(), stream), streams_.end());
}

void NodeServer::PublisherLoop() {
  const absl::Duration interval = absl::Milliseconds(config_.node.state_publish_interval_ms);
  int64_t last_summary_us = clock_->NowMicros();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval)) return;
    }
    const int64_t now_us = clock_->NowMicros();
    const bool summary =
        now_us - last_summary_us >= int64_t{config_.node.emb_summary_interval_ms} * 1000;
    if (summary) last_summary_us = now_us;
    core_->Publish(summary);
  }
}

void NodeServer::ControlLoop() {
  const absl::Duration interval = absl::Milliseconds(config_.control.interval_ms);
  // Wakes on a fixed schedule (not interval after the last decision's end), so that windows do
  // not drift longer by the time each decision takes.
  absl::Time next = absl::Now() + interval;
  bool audit_failed = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithDeadline(absl::Condition(&stopping_), next)) return;
    }
    next += interval;
    // After a long stall (a stopped process), resume the schedule from now rather than catch up.
    if (next < absl::Now()) next = absl::Now() + interval;
    const StatsWindow window = core_->CloseWindow();
    ControlDecision decision;
    core_->Control(window, &decision);
    if (decision.decided && decision.new_target != decision.old_target) {
      absl::MutexLock lock(&mu_);
      resize_pending_ = true;
    }
    if (audit_ != nullptr && decision.decided) {
      const absl::Status written = audit_->Append(ControlAuditLine(
          config_.node.id, config_.control.policy, clock_->WallMillis(), decision, window));
      // Logged once per run of failures, not once a second.
      if (!written.ok() && !audit_failed) spdlog::error("{}", written);
      audit_failed = !written.ok();
    }
  }
}

v1::NodeStats NodeServer::Stats() const {
  const Engine& engine = core_->engine();
  const pool::PoolSnapshot pool = engine.pool().Snapshot();
  const StatsWindow window = core_->last_window();
  const NodeCounters counters = core_->counters();
  v1::NodeStats stats;
  stats.set_node_id(config_.node.id);
  *stats.mutable_total() = ToProto(engine.emb().stats(), engine.kv().stats(), engine.pool().stats(),
                                   pool.pending_bytes, pool.committed_split);
  *stats.mutable_window() = ToProto(window.emb, window.kv, window.pool,
                                    window.pending_migration_bytes, window.committed_split);
  v1::LatencySummary* latency = stats.mutable_latency();
  const LatencyHistogram& h = window.latency_us;
  latency->set_count(h.Count());
  latency->set_p50_us(h.Quantile(0.5));
  latency->set_p90_us(h.Quantile(0.9));
  latency->set_p99_us(h.Quantile(0.99));
  latency->set_p999_us(h.Quantile(0.999));
  latency->set_mean_us(h.Mean());
  *stats.mutable_load() = ToProto(core_->Load());
  stats.set_requests_ok(counters.completions);
  stats.set_requests_failed(counters.failures + counters.rejected);
  stats.set_committed_split(pool.committed_split);
  stats.set_target_split(pool.target_split);
  stats.set_pool_bytes(config_.pool.bytes);
  stats.set_chunk_bytes(config_.pool.chunk_bytes);
  stats.set_backend(engine.backend_description());
  *stats.mutable_control() =
      ToProto(core_->control_status(), pool.committed_split, pool.target_split);
  return stats;
}

v1::ControlStatus NodeServer::ControlStatusProto() const {
  const pool::PoolSnapshot pool = core_->engine().pool().Snapshot();
  return ToProto(core_->control_status(), pool.committed_split, pool.target_split);
}

// ---- Metrics ----------------------------------------------------------------------------------

void NodeServer::CountRequest(const char* method, grpc::StatusCode code) {
  if (metrics_ == nullptr) return;
  const size_t i = static_cast<size_t>(code);
  if (std::string_view(method) != "Rank" || i >= metrics_->rank_by_code.size()) {
    metrics_->requests->WithLabels({method, rpc::StatusCodeName(code)}).Increment();
    return;
  }
  std::atomic<metrics::Counter*>& slot = metrics_->rank_by_code[i];
  metrics::Counter* counter = slot.load(std::memory_order_acquire);
  if (counter == nullptr) {
    // Racing threads find the same counter in the family.
    counter = &metrics_->requests->WithLabels({method, rpc::StatusCodeName(code)});
    slot.store(counter, std::memory_order_release);
  }
  counter->Increment();
}

void NodeServer::RegisterMetrics(metrics::Registry* registry) {
  using metrics::MetricType;
  using metrics::Sample;
  auto m = std::make_unique<Instruments>();
  m->requests = &registry->AddCounter("helm_requests_total",
                                      "Requests answered, by gRPC method and status code.",
                                      {"method", "status"});
  // The usual outcomes appear at 0 from the first scrape, so rates over them are defined at once.
  for (const char* status : {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "UNAVAILABLE"}) {
    m->requests->WithLabels({"Rank", status});
  }
  m->latency = &registry
                    ->AddHistogram("helm_request_latency_seconds",
                                   "Rank latency on the node, receipt to reply, of OK replies.",
                                   metrics::LatencyBucketsSeconds())
                    .WithLabels({});
  m->queue_time = &registry
                       ->AddHistogram("helm_queue_time_seconds",
                                      "Rank time from admission to its batch's compute (OK "
                                      "replies; batching wait included).",
                                      metrics::LatencyBucketsSeconds())
                       .WithLabels({});
  m->compute_time =
      &registry
           ->AddHistogram("helm_compute_time_seconds",
                          "Rank time in its batch's compute, start to this reply (OK replies).",
                          metrics::LatencyBucketsSeconds())
           .WithLabels({});
  m->batch_size =
      &registry
           ->AddHistogram("helm_batch_size", "Requests in the batch each OK reply was computed in.",
                          metrics::PowerOfTwoBuckets(std::max(1, config_.node.max_batch)))
           .WithLabels({});

  // Read at scrape time from the counters the core and the caches keep anyway.
  auto one = [](double v) { return std::vector<Sample>{Sample{{}, v}}; };
  auto counter = [&](const std::string& name, const std::string& help,
                     std::function<double()> read) {
    registry->AddCollector(name, help, MetricType::kCounter, {},
                           [one, read = std::move(read)] { return one(read()); });
  };
  auto gauge = [&](const std::string& name, const std::string& help, std::function<double()> read) {
    registry->AddCollector(name, help, MetricType::kGauge, {},
                           [one, read = std::move(read)] { return one(read()); });
  };
  NodeCore* core = core_.get();
  Engine* engine = &core_->engine();
  counter("helm_cancelled_calls_total",
          "Rank calls cancelled by their client or past their deadline before the reply (queued "
          "ones are then not computed).",
          [this] { return cancelled_calls(); });
  counter("helm_batches_total", "Batches (forwards) computed.",
          [core] { return core->counters().batches; });
  counter("helm_emb_lookups_total", "Embedding ids looked up (repeats included).",
          [engine] { return engine->emb().stats().lookups; });
  counter("helm_emb_hits_total", "Embedding lookups served from a resident row of the EMB cache.",
          [engine] { return engine->emb().stats().hits; });
  counter("helm_emb_misses_total", "Embedding lookups copied from host memory.",
          [engine] { return engine->emb().stats().misses; });
  counter("helm_emb_h2d_bytes_total", "Bytes copied host to device for embedding misses.",
          [engine] { return engine->emb().stats().h2d_bytes; });
  counter("helm_emb_fetch_seconds_total",
          "Time the EMB lookups spent fetching their misses (host gather and copies).",
          [engine] { return engine->emb().stats().fetch_ns / 1e9; });
  counter("helm_emb_ghost_hits_total",
          "EMB misses of rows evicted lately (hits of a cache larger by pool.ghost_share).",
          [engine] { return engine->emb().stats().ghost_hits; });
  counter("helm_emb_evictions_total", "EMB cache rows evicted.",
          [engine] { return engine->emb().stats().evictions; });
  counter("helm_kv_requested_tokens_total", "History tokens of requests (KV lookups).",
          [engine] { return engine->kv().stats().requested_tokens; });
  counter("helm_kv_hit_tokens_total", "History tokens whose K/V came from the KV cache.",
          [engine] { return engine->kv().stats().hit_tokens; });
  counter("helm_kv_miss_tokens_total", "History tokens recomputed (not in the KV cache).",
          [engine] { return engine->kv().stats().recomputed_tokens; });
  counter("helm_kv_ghost_hit_tokens_total",
          "Recomputed tokens users had lost to make room (hits of a KV cache larger by "
          "pool.ghost_share).",
          [engine] { return engine->kv().stats().ghost_hit_tokens; });
  counter("helm_kv_evicted_users_total", "Users whose K/V were evicted whole.",
          [engine] { return engine->kv().stats().evicted_users; });
  counter("helm_resize_steps_total", "Pool resize steps run.",
          [engine] { return engine->pool().stats().steps; });
  counter("helm_resize_migrated_bytes_total", "Bytes relocated by pool resize steps.",
          [engine] { return engine->pool().stats().migration_bytes_done; });
  registry->AddCollector("helm_pool_emb_share",
                         "EMB share of the unified pool: committed, and the target.",
                         MetricType::kGauge, {"kind"}, [engine] {
                           const pool::PoolSnapshot p = engine->pool().Snapshot();
                           return std::vector<Sample>{{{"committed"}, p.committed_split},
                                                      {{"target"}, p.target_split}};
                         });
  gauge("helm_pool_pending_migration_bytes", "Bytes a pending resize still has to move.",
        [engine] { return engine->pool().Snapshot().pending_bytes; });
  gauge("helm_queue_depth", "Admitted requests waiting for a batch.",
        [core] { return core->Load().queue_depth; });
  gauge("helm_queue_capacity", "Admission queue capacity; beyond it RESOURCE_EXHAUSTED.",
        [core] { return core->Load().queue_capacity; });
  gauge("helm_in_flight_requests", "Admitted requests not yet answered (queued + computing).",
        [core] { return core->Load().in_flight; });
  gauge("helm_kv_occupancy_ratio", "Used KV blocks over KV capacity.",
        [core] { return core->Load().kv_occupancy; });
  gauge("helm_node_draining", "1 while the node drains (refuses new requests).",
        [core] { return core->draining() ? 1.0 : 0.0; });
  counter("helm_control_decisions_total",
          "Decisions of the split controller (one per control interval unless frozen or static).",
          [core] { return core->control_status().decisions; });
  counter("helm_control_reversals_total",
          "Split controller decisions that turned a move round (flapping).",
          [core] { return core->control_status().reversals; });
  gauge("helm_control_frozen", "1 while the split controller is frozen (helm-ctl, or a SetSplit).",
        [core] { return core->control_frozen() ? 1.0 : 0.0; });
  registry->AddCollector("helm_control_mode",
                         "1 for the split controller's current mode (and its control.policy).",
                         MetricType::kGauge, {"policy", "mode"}, [core] {
                           const ControlStatus c = core->control_status();
                           return std::vector<Sample>{{{c.policy, c.mode}, 1.0}};
                         });
  metrics_ = std::move(m);
}

// ---- Wire forms -------------------------------------------------------------------------------

v1::NodeLoad ToProto(const NodeLoad& load) {
  v1::NodeLoad p;
  p.set_queue_depth(load.queue_depth);
  p.set_in_flight(load.in_flight);
  p.set_capacity(load.capacity);
  p.set_workers(load.workers);
  p.set_ewma_service_us(load.ewma_service_us);
  p.set_queue_capacity(load.queue_capacity);
  p.set_kv_occupancy(load.kv_occupancy);
  p.set_kv_eviction_rate(load.kv_eviction_rate);
  return p;
}

v1::NodeState ToProto(const NodeStateUpdate& state) {
  v1::NodeState p;
  p.set_node_id(state.node_id);
  p.set_seq(state.seq);
  p.set_full_snapshot(state.full_snapshot);
  *p.mutable_load() = ToProto(state.load);
  p.set_committed_split(state.committed_split);
  p.set_target_split(state.target_split);
  p.set_draining(state.draining);
  for (const kv::ResidencyEvent& e : state.kv_events) {
    v1::KvResidencyEvent* event = p.add_kv_events();
    event->set_user_id(e.user_id);
    event->set_cached_tokens(static_cast<int32_t>(e.cached_tokens));
    event->set_history_start(e.history_start);
  }
  p.set_kv_resident_users(state.kv_resident_users);
  *p.mutable_control() = ToProto(state.control, state.committed_split, state.target_split);
  if (state.emb_summary.has_value()) {
    v1::EmbSummary* summary = p.mutable_emb_summary();
    summary->set_bits(state.emb_summary->bits);
    summary->set_num_hashes(state.emb_summary->num_hashes);
    summary->set_seed(state.emb_summary->seed);
    summary->set_resident_rows(state.emb_summary->resident_rows);
  }
  return p;
}

v1::ControlStatus ToProto(const ControlStatus& control, double committed_split,
                          double target_split) {
  v1::ControlStatus p;
  p.set_policy(control.policy);
  p.set_mode(control.mode);
  p.set_frozen(control.frozen);
  p.set_decisions(control.decisions);
  p.set_reversals(control.reversals);
  p.set_committed_split(committed_split);
  p.set_target_split(target_split);
  p.set_interval_ms(control.interval_ms);
  return p;
}

v1::CacheStats ToProto(const emb::EmbStats& e, const kv::KvStats& k, const pool::PoolStats& p,
                       int64_t pending_bytes, double split) {
  v1::CacheStats s;
  s.set_emb_lookups(e.lookups);
  s.set_emb_unique_ids(e.unique_ids);
  s.set_emb_hits(e.hits);
  s.set_emb_misses(e.misses);
  s.set_emb_h2d_bytes(e.h2d_bytes);
  s.set_emb_fetch_ns(e.fetch_ns);
  s.set_emb_ghost_hits(e.ghost_hits);
  s.set_kv_ghost_hit_tokens(k.ghost_hit_tokens);
  s.set_emb_evictions(e.evictions);
  s.set_emb_admission_rejects(e.admission_rejects);
  s.set_kv_requested_tokens(k.requested_tokens);
  s.set_kv_hit_tokens(k.hit_tokens);
  s.set_kv_recomputed_tokens(k.recomputed_tokens);
  s.set_kv_evictions(k.evicted_users);
  s.set_kv_trims(k.trimmed_users);
  s.set_migration_bytes_done(p.migration_bytes_done);
  s.set_migration_bytes_pending(pending_bytes);
  s.set_split(split);
  return s;
}

RankInput FromProto(const v1::RankRequest& r) {
  RankInput in;
  in.user_id = r.user_id();
  in.history_item_ids = absl::MakeConstSpan(r.history_item_ids().data(), r.history_item_ids_size());
  in.history_actions = absl::MakeConstSpan(r.history_actions().data(), r.history_actions_size());
  in.history_timestamps_ms =
      absl::MakeConstSpan(r.history_timestamps_ms().data(), r.history_timestamps_ms_size());
  in.candidate_item_ids =
      absl::MakeConstSpan(r.candidate_item_ids().data(), r.candidate_item_ids_size());
  in.top_k = r.top_k();
  return in;
}

}  // namespace helm::serve
