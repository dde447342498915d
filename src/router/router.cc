#include "helm/router/router.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "helm/common/hash.h"
#include "helm/common/logging.h"
#include "helm/rpc/status.h"
#include "helm/v1/node.grpc.pb.h"
#include "helm/v1/recommender.grpc.pb.h"
#include "router/node_update_proto.h"
#include "spdlog/spdlog.h"

// Locks and gRPC calls: no gRPC call is started (Rank, WatchState, Check) or cancelled (TryCancel)
// while Router::mu_ or a ForwardCall's mu_ is held. Each step that needs one decides under the
// lock what to start or cancel, keeps the objects involved alive (a ForwardCall owns its
// contexts until OnDone; a StateWatcher is shared-owned), releases the lock, then acts:
//   - ForwardCall::Dispatch / OnAttemptDone: PlanLocked() under mu_, then Act() starts the attempt.
//   - ForwardCall::OnCancel: picks the context under mu_, cancels it after.
//   - Router::EnsureWatchers: registers watchers under mu_, starts their streams after.
//   - Router::Stop: collects the watchers under mu_, cancels them after.
//   - Router::CheckHealth: holds no router lock at all.
// gRPC allows cancelling a context whose call has not started yet: the call is cancelled as it
// starts, so a cancel that overtakes a start is not lost.

namespace helm::router {

using route::NodeSet;

struct Router::NodeConn {
  std::string address;
  int index = -1;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Recommender::Stub> recommender;
  std::unique_ptr<v1::Node::Stub> node;
  std::unique_ptr<grpc::health::v1::Health::Stub> health;
  std::shared_ptr<StateWatcher> watcher;  // guarded by Router::mu_; null: no stream
  // The node's load as its state stream last reported it, for attempt timeouts (0 before the
  // first report and once the stream ends).
  std::atomic<double> ewma_batch_us{0};
  std::atomic<int> reported_in_flight{0};
  std::atomic<int> capacity{0};
};

// Streams NodeState messages of one node into the ClusterState, converted once, here.
class Router::StateWatcher final : public grpc::ClientReadReactor<v1::NodeState> {
 public:
  StateWatcher(Router* router, NodeConn* conn) : router_(router), conn_(conn) {
    request_.set_subscriber("helm-router");
  }
  // Starts the stream; `self` (this) keeps it alive until OnDone. Called once, with no router
  // lock held.
  void Start(std::shared_ptr<StateWatcher> self) {
    self_ = std::move(self);
    conn_->node->async()->WatchState(&context_, &request_, this);
    StartRead(&state_);
    StartCall();
  }
  // Called with no router lock held; fine before Start (the stream is cancelled as it starts).
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    if (state_.has_load()) {
      conn_->ewma_batch_us.store(state_.load().ewma_service_us(), std::memory_order_relaxed);
      conn_->reported_in_flight.store(state_.load().in_flight(), std::memory_order_relaxed);
      conn_->capacity.store(state_.load().capacity(), std::memory_order_relaxed);
    }
    // A rejected EMB summary is logged by the cluster state, where it is handled; the rest of the
    // message is applied regardless.
    router_->cluster_.ApplyUpdate(conn_->index, ToNodeUpdate(std::move(state_))).IgnoreError();
    StartRead(&state_);
  }
  void OnDone(const grpc::Status& status) override {
    // Possibly the last reference: this is destroyed when `self` goes, after the router is told.
    std::shared_ptr<StateWatcher> self = std::move(self_);
    router_->OnWatchDone(conn_->index, status);
  }

 private:
  Router* router_;
  NodeConn* conn_;
  std::shared_ptr<StateWatcher> self_;
  grpc::ClientContext context_;
  v1::WatchStateRequest request_;
  v1::NodeState state_;
};

// One Rank call: picks a node, forwards, retries on retryable errors, answers the client.
class Router::ForwardCall final : public grpc::ServerUnaryReactor {
 public:
  ForwardCall(Router* router, grpc::CallbackServerContext* server_context,
              const v1::RankRequest* request, v1::RankResponse* response, rpc::Drainer::Token token)
      : router_(router),
        request_(request),
        response_(response),
        token_(std::move(token)),
        received_(std::chrono::steady_clock::now()) {
    deadline_ = server_context->deadline();
    if (deadline_ == std::chrono::system_clock::time_point::max()) {
      deadline_ = std::chrono::system_clock::now() +
                  std::chrono::milliseconds(router->options_.default_deadline_ms);
    }
    route_.user_id = request->user_id();
    route_.history_length = request->history_item_ids_size();
    if (route_.history_length > 0 && request->history_actions_size() > 0 &&
        request->history_timestamps_ms_size() > 0) {
      route_.history_start =
          HistoryStartFingerprint(request->history_item_ids(0), request->history_actions(0),
                                  request->history_timestamps_ms(0));
    }
    route_.candidate_ids = request->candidate_item_ids().data();
    route_.num_candidates = request->candidate_item_ids_size();
  }

  void Dispatch() {
    Next next;
    {
      absl::MutexLock lock(&mu_);
      next = PlanLocked();
    }
    Act(next);
  }

  void OnCancel() override {
    grpc::ClientContext* outstanding = nullptr;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (!contexts_.empty()) outstanding = contexts_.back().get();
    }
    // After releasing mu_ (contexts live until OnDone, which follows every other reaction).
    if (outstanding != nullptr) outstanding->TryCancel();
  }

  void OnDone() override { delete this; }

 private:
  // What to do once mu_ is released: start an attempt on `node`, or answer the client.
  struct Next {
    int node = -1;
    grpc::ClientContext* context = nullptr;
    // The attempt's own timeout (us) when it ends the attempt before the client's deadline; 0:
    // the attempt has the client's deadline.
    int64_t timeout_us = 0;
    std::optional<grpc::Status> finish;
    int attempts = 0;
  };

  // Plans the next attempt (counted in flight on its node at once, so concurrent decisions see
  // it); or the status to finish with when there is none to make.
  Next PlanLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Next next;
    next.attempts = attempts_;
    if (cancelled_) {
      next.finish = grpc::Status::CANCELLED;
      return next;
    }
    const std::chrono::system_clock::time_point now = std::chrono::system_clock::now();
    if (now >= deadline_) {
      next.finish = grpc::Status(
          grpc::StatusCode::DEADLINE_EXCEEDED,
          absl::StrCat("deadline passed in the router after ", attempts_, " attempt(s)"));
      return next;
    }
    const route::RouteDecision decision =
        router_->policy_->Decide(route_, router_->cluster_, tried_);
    const int node = decision.node;
    if (node < 0) {
      next.finish = attempts_ == 0 ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "no healthy node")
                                   : last_status_;
      return next;
    }
    next.attempts = ++attempts_;
    tried_.Insert(node);
    router_->CountDecision(node);
    router_->cluster_.OnDispatch(node);
    if (decision.new_user) router_->cluster_.OnPlaced(node);
    // Each attempt's context lives as long as the call (at most max_attempts of them).
    contexts_.push_back(std::make_unique<grpc::ClientContext>());
    std::chrono::system_clock::time_point attempt_deadline = deadline_;
    const int64_t timeout_us = router_->AttemptTimeoutUs(node);
    if (timeout_us > 0 && now + std::chrono::microseconds(timeout_us) < deadline_) {
      attempt_deadline = now + std::chrono::microseconds(timeout_us);
      next.timeout_us = timeout_us;
    }
    contexts_.back()->set_deadline(attempt_deadline);
    next.node = node;
    next.context = contexts_.back().get();
    return next;
  }

  // Called without mu_ held. At most one attempt is outstanding, and none when this finishes.
  void Act(const Next& next) {
    if (next.finish.has_value()) {
      Complete(*next.finish, next.attempts);
      return;
    }
    response_->Clear();
    const int node = next.node;
    const int64_t timeout_us = next.timeout_us;
    router_->conn(node)->recommender->async()->Rank(
        next.context, request_, response_, [this, node, timeout_us](grpc::Status status) {
          OnAttemptDone(node, timeout_us, std::move(status));
        });
  }

  // `timeout_us`: the attempt's own timeout, when it had one shorter than the client's deadline.
  void OnAttemptDone(int node, int64_t timeout_us, grpc::Status status) {
    router_->cluster_.OnComplete(node);
    if (status.ok() && response_->info().has_resident_tokens()) {
      router_->cluster_.NoteResidency(node, route_.user_id, response_->info().resident_tokens(),
                                      route_.history_start);
    }
    // The attempt's deadline, not the client's, passed: gRPC's own (no answer in time) or the
    // node's (it found the propagated deadline passed). Either way the node did not answer in the
    // time it was given: a failure of the node, and the request may still succeed elsewhere.
    const bool timed_out =
        timeout_us > 0 && status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (timed_out) {
      router_->OnAttemptTimeout(node);
      status = grpc::Status(
          grpc::StatusCode::DEADLINE_EXCEEDED,
          absl::StrCat("node ", router_->cluster_.address(node),
                       " did not answer within the attempt timeout of ", timeout_us / 1000, " ms"));
    }
    router_->OnNodeResult(node, timed_out || status.error_code() == grpc::StatusCode::UNAVAILABLE,
                          status.error_message());
    Next next;
    {
      absl::MutexLock lock(&mu_);
      const bool retryable = timed_out || status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                             status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
      if (retryable && attempts_ < router_->options_.max_attempts && !cancelled_) {
        last_status_ = status;
        router_->retries_.fetch_add(1, std::memory_order_relaxed);
        next = PlanLocked();
      } else {
        next.finish = std::move(status);
        next.attempts = attempts_;
      }
    }
    Act(next);
  }

  // Answers the client. Called without mu_ held and with no attempt outstanding: Finish may run
  // OnDone, which deletes this, before it returns.
  void Complete(const grpc::Status& status, int attempts) {
    if (status.ok()) {
      response_->mutable_info()->set_attempts(attempts);
      router_->ok_.fetch_add(1, std::memory_order_relaxed);
      if (router_->latency_metric_ != nullptr) {
        router_->latency_metric_->Observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - received_).count());
      }
    } else {
      router_->failed_.fetch_add(1, std::memory_order_relaxed);
    }
    router_->CountRequest(status.error_code());
    // token_ ends with this call, in OnDone: after the reply is sent.
    Finish(status);
  }

  Router* router_;
  const v1::RankRequest* request_;
  v1::RankResponse* response_;
  rpc::Drainer::Token token_;
  route::RouteRequest route_;
  std::chrono::system_clock::time_point deadline_;
  const std::chrono::steady_clock::time_point received_;

  absl::Mutex mu_;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts_ ABSL_GUARDED_BY(mu_);
  NodeSet tried_ ABSL_GUARDED_BY(mu_);
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status last_status_ ABSL_GUARDED_BY(mu_);
};

class Router::Service final : public v1::Recommender::CallbackService {
 public:
  explicit Service(Router* router) : router_(router) {}
  grpc::ServerUnaryReactor* Rank(grpc::CallbackServerContext* context,
                                 const v1::RankRequest* request,
                                 v1::RankResponse* response) override {
    router_->requests_.fetch_add(1, std::memory_order_relaxed);
    rpc::Drainer::Token token = router_->drainer_.TryEnter();
    if (!token) {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      router_->CountRequest(grpc::StatusCode::UNAVAILABLE);
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "router is shutting down"));
      return reactor;
    }
    auto* call = new ForwardCall(router_, context, request, response, std::move(token));
    call->Dispatch();
    return call;
  }

 private:
  Router* router_;
};

int64_t AttemptTimeoutUs(int64_t floor_us, double ewma_batch_us, int outstanding, int capacity) {
  if (floor_us <= 0) return 0;
  const int64_t per_wave = std::max(1, capacity);
  const int64_t waves = (std::max(1, outstanding) + per_wave - 1) / per_wave;
  const double expected_us = static_cast<double>(waves) * std::max(0.0, ewma_batch_us);
  // Bounded before the conversion: a day is far past any deadline.
  const double scaled_us = std::min(kAttemptTimeoutServiceMultiple * expected_us, 86'400e6);
  return std::max(floor_us, static_cast<int64_t>(scaled_us));
}

absl::StatusOr<std::unique_ptr<Router>> Router::Create(const route::RouterOptions& options,
                                                       Clock* clock, rpc::ChannelSecurity security,
                                                       rpc::ChannelLimits limits) {
  absl::StatusOr<std::unique_ptr<route::Policy>> policy = route::CreatePolicy(options);
  if (!policy.ok()) return policy.status();
  std::unique_ptr<Router> router(
      new Router(options, clock != nullptr ? clock : Clock::Real(), std::move(security), limits));
  router->policy_ = *std::move(policy);
  return router;
}

Router::Router(const route::RouterOptions& options, Clock* clock, rpc::ChannelSecurity security,
               rpc::ChannelLimits limits)
    : options_(options),
      security_(std::move(security)),
      limits_(limits),
      clock_(clock),
      health_(&cluster_, route::NodeHealthOptions::FromRouterOptions(options), clock),
      service_(std::make_unique<Service>(this)) {}

Router::~Router() { Stop(); }

grpc::Service* Router::service() { return service_.get(); }

Router::NodeConn* Router::conn(int node) const { return conns_[node].get(); }

Router::Counters Router::counters() const {
  return Counters{requests_.load(), ok_.load(), failed_.load(), retries_.load(),
                  attempt_timeouts_.load()};
}

int64_t Router::AttemptTimeoutUs(int node) const {
  const NodeConn& c = *conns_[node];
  // The router's own count includes an attempt being dispatched; the node's report does not.
  const int outstanding = std::max(cluster_.router_in_flight(node),
                                   c.reported_in_flight.load(std::memory_order_relaxed) + 1);
  return router::AttemptTimeoutUs(int64_t{options_.attempt_timeout_ms} * 1000,
                                  c.ewma_batch_us.load(std::memory_order_relaxed), outstanding,
                                  c.capacity.load(std::memory_order_relaxed));
}

void Router::EnsureNode(const std::string& address) {
  const int n = cluster_.num_nodes();
  for (int i = 0; i < n; ++i) {
    if (conns_[i]->address == address) return;
  }
  if (n >= route::kMaxNodes) {
    spdlog::error("router: ignoring node {}: at most {} nodes", address, route::kMaxNodes);
    return;
  }
  auto conn = std::make_unique<NodeConn>();
  conn->address = address;
  conn->index = n;
  grpc::ChannelArguments args;
  // Bounded by the config's limits (app::NodeChannelLimits), as the servers' receive sizes are.
  args.SetMaxReceiveMessageSize(limits_.max_receive_bytes);
  args.SetMaxSendMessageSize(limits_.max_send_bytes);
  // Reconnect quickly after a node restarts.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // The router retries on the next-best node itself; gRPC's own retry layer would only buffer
  // every forwarded request.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  // Creating a channel and stubs starts no call (channels connect lazily).
  conn->channel = rpc::CreateChannel(address, security_, args);
  conn->recommender = v1::Recommender::NewStub(conn->channel);
  conn->node = v1::Node::NewStub(conn->channel);
  conn->health = grpc::health::v1::Health::NewStub(conn->channel);
  conns_[n] = std::move(conn);
  const int index = cluster_.AddNode(address);
  spdlog::info("router: node {} = {}", index, address);
}

void Router::RefreshDns() {
  if (options_.dns.empty()) return;
  addrinfo hints{};
  hints.ai_family = AF_INET;  // one address per host: "localhost" must not count twice
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const int rc = getaddrinfo(options_.dns.c_str(), nullptr, &hints, &result);
  if (rc != 0) {
    spdlog::warn("router: cannot resolve '{}': {}", options_.dns, gai_strerror(rc));
    return;
  }
  std::set<std::string> addresses;
  for (addrinfo* a = result; a != nullptr; a = a->ai_next) {
    char ip[INET_ADDRSTRLEN];
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
    if (inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip)) != nullptr) {
      addresses.insert(absl::StrCat(ip, ":", options_.dns_port));
    }
  }
  freeaddrinfo(result);
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& address : addresses) EnsureNode(address);
  }
  const int n = cluster_.num_nodes();
  for (int i = 0; i < n; ++i) health_.SetRemoved(i, addresses.count(conns_[i]->address) == 0);
}

void Router::OnNodeResult(int node, bool node_failed, const std::string& detail) {
  const bool ejected = health_.OnRequestResult(node, node_failed, detail);
  if (ejected && ejections_metric_ != nullptr) {
    ejections_metric_->WithLabels({cluster_.address(node)}).Increment();
  }
}

void Router::OnAttemptTimeout(int node) {
  attempt_timeouts_.fetch_add(1, std::memory_order_relaxed);
  // Rare (a hung or far too slow node), so the family's lookup is affordable here.
  if (attempt_timeouts_metric_ != nullptr) {
    attempt_timeouts_metric_->WithLabels({cluster_.address(node)}).Increment();
  }
}

void Router::CountDecision(int node) {
  if (decisions_metric_ == nullptr) return;
  metrics::Counter* counter = decisions_by_node_[node].load(std::memory_order_acquire);
  if (counter == nullptr) {
    // Racing threads find the same counter in the family.
    counter = &decisions_metric_->WithLabels({policy_->name(), cluster_.address(node)});
    decisions_by_node_[node].store(counter, std::memory_order_release);
  }
  counter->Increment();
}

void Router::CountRequest(grpc::StatusCode code) {
  if (requests_metric_ == nullptr) return;
  const size_t i = static_cast<size_t>(code);
  if (i >= requests_by_code_.size()) {
    requests_metric_->WithLabels({"Rank", rpc::StatusCodeName(code)}).Increment();
    return;
  }
  metrics::Counter* counter = requests_by_code_[i].load(std::memory_order_acquire);
  if (counter == nullptr) {
    // Racing threads find the same counter in the family.
    counter = &requests_metric_->WithLabels({"Rank", rpc::StatusCodeName(code)});
    requests_by_code_[i].store(counter, std::memory_order_release);
  }
  counter->Increment();
}

void Router::RegisterMetrics(metrics::Registry* registry) {
  using metrics::MetricType;
  using metrics::Sample;
  requests_metric_ = &registry->AddCounter("helm_requests_total",
                                           "Requests answered, by gRPC method and status code.",
                                           {"method", "status"});
  for (const char* status : {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "UNAVAILABLE"}) {
    requests_metric_->WithLabels({"Rank", status});
  }
  latency_metric_ =
      &registry
           ->AddHistogram("helm_request_latency_seconds",
                          "Rank latency through the router, receipt to reply, of OK replies.",
                          metrics::LatencyBucketsSeconds())
           .WithLabels({});
  decisions_metric_ = &registry->AddCounter(
      "helm_router_decisions_total",
      "Routing decisions (attempts dispatched), by policy and chosen node.", {"policy", "node"});
  ejections_metric_ = &registry->AddCounter(
      "helm_router_ejections_total",
      "Nodes ejected after router.failures_to_eject consecutive failed requests.", {"node"});
  attempt_timeouts_metric_ = &registry->AddCounter(
      "helm_router_attempt_timeouts_total",
      "Attempts a node did not answer within router.attempt_timeout_ms (or its longer expected "
      "response time), by node; each is retried on another node within the client's deadline.",
      {"node"});
  registry->AddCollector(
      "helm_router_retries_total",
      "Attempts retried on another node (UNAVAILABLE, RESOURCE_EXHAUSTED, attempt "
      "timeout).",
      MetricType::kCounter, {}, [this] {
        return std::vector<Sample>{
            {{}, static_cast<double>(retries_.load(std::memory_order_relaxed))}};
      });
  registry->AddCollector(
      "helm_router_node_state",
      "Each node's state as the router sees it: 1 for the state it is in (healthy, unhealthy "
      "(a failed health check or state stream), ejected, draining, removed; only healthy nodes get "
      "requests), 0 for the others.",
      MetricType::kGauge, {"node", "state"}, [this] {
        std::vector<Sample> samples;
        const int n = cluster_.num_nodes();
        for (int i = 0; i < n; ++i) {
          const std::string& address = cluster_.address(i);
          const bool removed = health_.removed(i);
          const bool ejected = !removed && health_.ejected(i);
          const bool draining = !removed && !ejected && cluster_.draining(i);
          const bool healthy = !removed && !ejected && !draining && cluster_.healthy(i);
          samples.push_back({{address, "healthy"}, healthy ? 1.0 : 0.0});
          samples.push_back(
              {{address, "unhealthy"}, !removed && !ejected && !draining && !healthy ? 1.0 : 0.0});
          samples.push_back({{address, "ejected"}, ejected ? 1.0 : 0.0});
          samples.push_back({{address, "draining"}, draining ? 1.0 : 0.0});
          samples.push_back({{address, "removed"}, removed ? 1.0 : 0.0});
        }
        return samples;
      });
  registry->AddCollector("helm_router_node_in_flight",
                         "Requests the router has in flight on each node.", MetricType::kGauge,
                         {"node"}, [this] {
                           std::vector<Sample> samples;
                           const int n = cluster_.num_nodes();
                           for (int i = 0; i < n; ++i) {
                             samples.push_back({{cluster_.address(i)},
                                                static_cast<double>(cluster_.router_in_flight(i))});
                           }
                           return samples;
                         });
}

void Router::OnWatchDone(int node, const grpc::Status& status) {
  cluster_.ForgetStreamedState(node);
  conns_[node]->ewma_batch_us.store(0, std::memory_order_relaxed);
  conns_[node]->reported_in_flight.store(0, std::memory_order_relaxed);
  conns_[node]->capacity.store(0, std::memory_order_relaxed);
  health_.OnStreamEnded(node, status.error_code() == grpc::StatusCode::UNAVAILABLE);
  absl::MutexLock lock(&mu_);
  conns_[node]->watcher.reset();  // not the last reference: OnDone holds one
  --active_watchers_;
}

void Router::EnsureWatchers() {
  std::vector<std::shared_ptr<StateWatcher>> to_start;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    const int n = cluster_.num_nodes();
    for (int i = 0; i < n; ++i) {
      NodeConn* c = conns_[i].get();
      if (c->watcher != nullptr || health_.removed(i) || !cluster_.healthy(i)) continue;
      c->watcher = std::make_shared<StateWatcher>(this, c);
      ++active_watchers_;
      to_start.push_back(c->watcher);
    }
  }
  // Started after mu_ is released. A Stop in between cancels them before they start, which
  // gRPC honours as they start; either way each ends in OnDone -> OnWatchDone.
  for (std::shared_ptr<StateWatcher>& watcher : to_start) watcher->Start(watcher);
}

void Router::CheckHealth(const std::vector<int>& nodes, absl::Duration timeout) {
  struct Probe {
    int node = -1;
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Probe>> probes;
  probes.reserve(nodes.size());
  absl::Mutex done_mu;
  int pending = static_cast<int>(nodes.size());
  for (int node : nodes) {
    probes.push_back(std::make_unique<Probe>());
    Probe* probe = probes.back().get();
    probe->node = node;
    probe->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    conns_[node]->health->async()->Check(&probe->context, &probe->request, &probe->response,
                                         [&done_mu, &pending, probe](grpc::Status status) {
                                           probe->status = std::move(status);
                                           absl::MutexLock lock(&done_mu);
                                           --pending;
                                         });
  }
  {
    absl::MutexLock lock(&done_mu);
    done_mu.Await(absl::Condition(
        +[](int* p) { return *p == 0; }, &pending));
  }
  for (const std::unique_ptr<Probe>& probe : probes) {
    const bool serving = probe->status.ok() &&
                         probe->response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
    health_.OnHealthCheck(probe->node, serving, probe->status.error_message());
  }
}

void Router::RunMaintenance() {
  bool dns_due = false;
  if (!options_.dns.empty()) {
    const int64_t now_us = clock_->NowMicros();
    absl::MutexLock lock(&mu_);
    if (now_us >= next_dns_refresh_us_) {
      dns_due = true;
      next_dns_refresh_us_ = now_us + 10 * health_.options().check_interval_us;
    }
  }
  if (dns_due) RefreshDns();
  CheckHealth(health_.TakeDueChecks(), absl::Milliseconds(options_.health_check_interval_ms));
  EnsureWatchers();
}

void Router::Start(Maintenance maintenance) {
  {
    absl::MutexLock lock(&mu_);
    next_dns_refresh_us_ = clock_->NowMicros();
    for (const std::string& address : options_.nodes) EnsureNode(address);
  }
  RunMaintenance();
  if (maintenance == Maintenance::kThread) {
    maintenance_ = std::thread([this] { MaintenanceLoop(); });
  }
}

void Router::MaintenanceLoop() {
  const int64_t interval_us = health_.options().check_interval_us;
  while (true) {
    // Sleep (wall time) until the clock says a check falls due; at least 1 ms, so a clock that
    // does not move (a FakeClock) costs no spinning.
    const int64_t wait_us = std::clamp<int64_t>(health_.MicrosUntilNextCheck(), 1000, interval_us);
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Microseconds(wait_us))) return;
    }
    RunMaintenance();
  }
}

bool Router::WaitForRoutable(int count, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (cluster_.Routable().Count() < count) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

void Router::Stop() {
  std::vector<std::shared_ptr<StateWatcher>> watchers;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    const int n = cluster_.num_nodes();
    for (int i = 0; i < n; ++i) {
      if (conns_[i]->watcher != nullptr) watchers.push_back(conns_[i]->watcher);
    }
  }
  // Cancelled after mu_ is released; the shared references keep each watcher alive meanwhile.
  for (const std::shared_ptr<StateWatcher>& watcher : watchers) watcher->Cancel();
  watchers.clear();
  if (maintenance_.joinable()) maintenance_.join();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* active) { return *active == 0; }, &active_watchers_));
}

}  // namespace helm::router
