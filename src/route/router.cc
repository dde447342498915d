#include "helm/route/router.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "helm/common/logging.h"
#include "spdlog/spdlog.h"

namespace helm::route {

struct Router::NodeConn {
  std::string address;
  int index = -1;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Recommender::Stub> recommender;
  std::unique_ptr<v1::Node::Stub> node;
  std::unique_ptr<grpc::health::v1::Health::Stub> health;
  std::atomic<int> consecutive_failures{0};
  std::atomic<bool> ejected{false};
  std::atomic<bool> removed{false};  // no longer in DNS
  std::atomic<bool> watching{false};
  StateWatcher* watcher = nullptr;  // guarded by Router::mu_
};

// Streams NodeState messages of one node into the ClusterState.
class Router::StateWatcher final : public grpc::ClientReadReactor<v1::NodeState> {
 public:
  StateWatcher(Router* router, NodeConn* conn) : router_(router), conn_(conn) {
    request_.set_subscriber("helm-router");
    conn_->node->async()->WatchState(&context_, &request_, this);
    StartRead(&state_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    router_->cluster_.ApplyState(conn_->index, state_);
    StartRead(&state_);
  }
  void OnDone(const grpc::Status& status) override {
    Router* router = router_;
    const int node = conn_->index;
    delete this;
    router->OnWatchDone(node, status);
  }

 private:
  Router* router_;
  NodeConn* conn_;
  grpc::ClientContext context_;
  v1::WatchStateRequest request_;
  v1::NodeState state_;
};

// One Rank call: picks a node, forwards, retries on retryable errors, answers the client.
class Router::ForwardCall final : public grpc::ServerUnaryReactor {
 public:
  ForwardCall(Router* router, grpc::CallbackServerContext* server_context,
              const v1::RankRequest* request, v1::RankResponse* response, rpc::Drainer::Token token)
      : router_(router), request_(request), response_(response), token_(std::move(token)) {
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
    std::optional<grpc::Status> finish;
    int attempts = 0;
    {
      absl::MutexLock lock(&mu_);
      finish = DispatchLocked();
      attempts = attempts_;
    }
    if (finish.has_value()) Complete(*finish, attempts);
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (!contexts_.empty()) contexts_.back()->TryCancel();
  }

  void OnDone() override { delete this; }

 private:
  // Sends the next attempt; returns the status to finish with instead when there is none to send.
  std::optional<grpc::Status> DispatchLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (cancelled_) return grpc::Status::CANCELLED;
    if (std::chrono::system_clock::now() >= deadline_) {
      return grpc::Status(
          grpc::StatusCode::DEADLINE_EXCEEDED,
          absl::StrCat("deadline passed in the router after ", attempts_, " attempt(s)"));
    }
    const int node = router_->policy_->Pick(route_, router_->cluster_, tried_);
    if (node < 0) {
      return attempts_ == 0 ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "no healthy node")
                            : last_status_;
    }
    ++attempts_;
    tried_ |= NodeMask{1} << node;
    router_->cluster_.OnDispatch(node);
    // Each attempt's context lives as long as the call (at most max_attempts of them).
    contexts_.push_back(std::make_unique<grpc::ClientContext>());
    contexts_.back()->set_deadline(deadline_);
    response_->Clear();
    router_->conn(node)->recommender->async()->Rank(
        contexts_.back().get(), request_, response_,
        [this, node](grpc::Status status) { OnAttemptDone(node, std::move(status)); });
    return std::nullopt;
  }

  void OnAttemptDone(int node, grpc::Status status) {
    router_->cluster_.OnComplete(node);
    if (status.ok() && response_->info().has_resident_tokens()) {
      router_->cluster_.NoteResidency(node, route_.user_id, response_->info().resident_tokens(),
                                      route_.history_start);
    }
    router_->OnNodeResult(node, status);
    std::optional<grpc::Status> finish;
    int attempts = 0;
    {
      absl::MutexLock lock(&mu_);
      const bool retryable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                             status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
      if (retryable && attempts_ < router_->options_.max_attempts && !cancelled_) {
        last_status_ = status;
        router_->retries_.fetch_add(1, std::memory_order_relaxed);
        finish = DispatchLocked();
      } else {
        finish = std::move(status);
      }
      attempts = attempts_;
    }
    if (finish.has_value()) Complete(*finish, attempts);
  }

  // Answers the client. Called without mu_ held and with no attempt outstanding: Finish may run
  // OnDone, which deletes this, before it returns.
  void Complete(const grpc::Status& status, int attempts) {
    if (status.ok()) {
      response_->mutable_info()->set_attempts(attempts);
      router_->ok_.fetch_add(1, std::memory_order_relaxed);
    } else {
      router_->failed_.fetch_add(1, std::memory_order_relaxed);
    }
    // token_ ends with this call, in OnDone: after the reply is sent.
    Finish(status);
  }

  Router* router_;
  const v1::RankRequest* request_;
  v1::RankResponse* response_;
  rpc::Drainer::Token token_;
  RouteRequest route_;
  std::chrono::system_clock::time_point deadline_;

  absl::Mutex mu_;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts_ ABSL_GUARDED_BY(mu_);
  NodeMask tried_ ABSL_GUARDED_BY(mu_) = 0;
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

absl::StatusOr<std::unique_ptr<Router>> Router::Create(const RouterOptions& options) {
  std::unique_ptr<Router> router(new Router(options));
  absl::StatusOr<std::unique_ptr<Policy>> policy = CreatePolicy(options);
  if (!policy.ok()) return policy.status();
  router->policy_ = *std::move(policy);
  return router;
}

Router::Router(const RouterOptions& options)
    : options_(options), service_(std::make_unique<Service>(this)) {}

Router::~Router() { Stop(); }

grpc::Service* Router::service() { return service_.get(); }

Router::NodeConn* Router::conn(int node) const { return conns_[node].get(); }

Router::Counters Router::counters() const {
  return Counters{requests_.load(), ok_.load(), failed_.load(), retries_.load()};
}

void Router::EnsureNode(const std::string& address) {
  const int n = cluster_.num_nodes();
  for (int i = 0; i < n; ++i) {
    if (conns_[i]->address == address) {
      conns_[i]->removed.store(false);
      return;
    }
  }
  if (n >= kMaxNodes) {
    spdlog::error("router: ignoring node {}: at most {} nodes", address, kMaxNodes);
    return;
  }
  auto conn = std::make_unique<NodeConn>();
  conn->address = address;
  conn->index = n;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  // Reconnect quickly after a node restarts.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // The router retries on the next-best node itself; gRPC's own retry layer would only buffer
  // every forwarded request.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  conn->channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
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
  absl::MutexLock lock(&mu_);
  for (const std::string& address : addresses) EnsureNode(address);
  const int n = cluster_.num_nodes();
  for (int i = 0; i < n; ++i) {
    const bool gone = !addresses.count(conns_[i]->address);
    conns_[i]->removed.store(gone);
    if (gone) cluster_.SetHealthy(i, false);
  }
}

void Router::OnNodeResult(int node, const grpc::Status& status) {
  NodeConn* c = conn(node);
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
    c->consecutive_failures.store(0, std::memory_order_relaxed);
    return;
  }
  const int failures = c->consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (failures >= options_.failures_to_eject && !c->ejected.exchange(true)) {
    cluster_.SetHealthy(node, false);
    spdlog::warn("router: node {} ({}) ejected after {} consecutive failures: {}", node, c->address,
                 failures, status.error_message());
  }
}

void Router::OnWatchDone(int node, const grpc::Status& status) {
  NodeConn* c = conn(node);
  cluster_.ForgetStreamedState(node);
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    // The node went away: stop sending it traffic now rather than at the next health check.
    cluster_.SetHealthy(node, false);
  }
  absl::MutexLock lock(&mu_);
  c->watcher = nullptr;
  c->watching.store(false);
  --active_watchers_;
}

void Router::EnsureWatchers() {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  const int n = cluster_.num_nodes();
  for (int i = 0; i < n; ++i) {
    NodeConn* c = conns_[i].get();
    if (c->watching.load() || c->removed.load() || !cluster_.healthy(i)) continue;
    c->watching.store(true);
    ++active_watchers_;
    c->watcher = new StateWatcher(this, c);
  }
}

void Router::CheckHealthAll(absl::Duration timeout) {
  const int n = cluster_.num_nodes();
  struct Probe {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Probe>> probes(n);
  absl::Mutex done_mu;
  int pending = 0;
  for (int i = 0; i < n; ++i) {
    if (conns_[i]->removed.load()) continue;
    probes[i] = std::make_unique<Probe>();
    probes[i]->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    {
      absl::MutexLock lock(&done_mu);
      ++pending;
    }
    Probe* probe = probes[i].get();
    conns_[i]->health->async()->Check(&probe->context, &probe->request, &probe->response,
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
  for (int i = 0; i < n; ++i) {
    if (probes[i] == nullptr) continue;
    NodeConn* c = conns_[i].get();
    const bool serving =
        probes[i]->status.ok() &&
        probes[i]->response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
    const bool was = cluster_.healthy(i);
    if (serving) {
      c->ejected.store(false);
      c->consecutive_failures.store(0);
    }
    cluster_.SetHealthy(i, serving);
    if (serving != was) {
      spdlog::info("router: node {} ({}) is {}", i, c->address,
                   serving ? "healthy" : "not serving: " + probes[i]->status.error_message());
    }
  }
}

void Router::Start() {
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& address : options_.nodes) EnsureNode(address);
  }
  RefreshDns();
  CheckHealthAll(absl::Milliseconds(options_.health_check_interval_ms));
  EnsureWatchers();
  maintenance_ = std::thread([this] { MaintenanceLoop(); });
}

void Router::MaintenanceLoop() {
  const absl::Duration interval = absl::Milliseconds(options_.health_check_interval_ms);
  int round = 0;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval)) return;
    }
    if (++round % 10 == 0) RefreshDns();
    CheckHealthAll(interval);
    EnsureWatchers();
  }
}

bool Router::WaitForRoutable(int count, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (std::popcount(cluster_.RoutableMask()) < count) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

void Router::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    const int n = cluster_.num_nodes();
    for (int i = 0; i < n; ++i) {
      if (conns_[i]->watcher != nullptr) conns_[i]->watcher->Cancel();
    }
  }
  if (maintenance_.joinable()) maintenance_.join();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* active) { return *active == 0; }, &active_watchers_));
}

}  // namespace helm::route
