// The router against in-process test nodes: real gRPC servers on 127.0.0.1 whose Rank and state
// stream the test controls. Health checks run on a FakeClock where a test is about them.
#include "helm/router/router.h"

#include <deque>
#include <functional>
#include <set>

#include "absl/synchronization/notification.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "helm/common/bloom.h"
#include "helm/rpc/server.h"
#include "helm/v1/node.grpc.pb.h"
#include "helm/v1/recommender.grpc.pb.h"

namespace helm::router {
namespace {

using route::RouterOptions;

using RankFn = std::function<grpc::Status(grpc::CallbackServerContext*, const v1::RankRequest&,
                                          v1::RankResponse*)>;

// A test node: Rank runs `rank` (set by the test), WatchState streams what the test pushes.
class TestNode {
 public:
  explicit TestNode(std::string id) : id_(std::move(id)), recommender_(this), node_service_(this) {
    rpc::ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.services = {&recommender_, &node_service_};
    auto server = rpc::Server::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    rank_ = [this](grpc::CallbackServerContext*, const v1::RankRequest& request,
                   v1::RankResponse* response) {
      response->set_request_id(request.request_id());
      response->mutable_info()->set_node_id(id_);
      return grpc::Status::OK;
    };
  }
  ~TestNode() {
    CloseStreams();
    server_->Shutdown(absl::ZeroDuration());
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  void SetRank(RankFn fn) {
    absl::MutexLock lock(&mu_);
    rank_ = std::move(fn);
  }
  void SetServing(bool serving) { server_->SetServing(serving); }
  // Hanging, Rank answers nothing until the call is cancelled (its deadline, the client, shutdown):
  // a node stopped with its connections open.
  void SetHanging(bool hanging) { hanging_.store(hanging); }
  int ranks() const { return ranks_.load(); }

  // Sends `state` on every open state stream (and to streams opened later, as their snapshot).
  void Publish(v1::NodeState state) {
    absl::MutexLock lock(&mu_);
    state.set_node_id(id_);
    snapshot_.MergeFrom(state);
    for (Writer* w : writers_) w->Push(state);
  }
  void CloseStreams() {
    absl::MutexLock lock(&mu_);
    for (Writer* w : writers_) w->Close();
  }

 private:
  class Writer final : public grpc::ServerWriteReactor<v1::NodeState> {
   public:
    Writer(TestNode* node, v1::NodeState snapshot) : node_(node) {
      snapshot.set_full_snapshot(true);
      Push(std::move(snapshot));
    }
    void Push(v1::NodeState state) {
      absl::MutexLock lock(&mu_);
      queue_.push_back(std::move(state));
      MaybeWriteLocked();
    }
    void Close() {
      absl::MutexLock lock(&mu_);
      if (!finished_) {
        finished_ = true;
        Finish(grpc::Status::OK);
      }
    }
    void OnWriteDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      queue_.pop_front();
      if (ok) MaybeWriteLocked();
    }
    void OnCancel() override { Close(); }
    void OnDone() override {
      {
        absl::MutexLock lock(&node_->mu_);
        node_->writers_.erase(std::find(node_->writers_.begin(), node_->writers_.end(), this));
      }
      delete this;
    }

   private:
    void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (writing_ || finished_ || queue_.empty()) return;
      writing_ = true;
      StartWrite(&queue_.front());
    }
    TestNode* node_;
    absl::Mutex mu_;
    std::deque<v1::NodeState> queue_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
  };

  class HangingReactor final : public grpc::ServerUnaryReactor {
   public:
    void OnCancel() override { Finish(grpc::Status::CANCELLED); }
    void OnDone() override { delete this; }
  };

  class Recommender final : public v1::Recommender::CallbackService {
   public:
    explicit Recommender(TestNode* node) : node_(node) {}
    grpc::ServerUnaryReactor* Rank(grpc::CallbackServerContext* context,
                                   const v1::RankRequest* request,
                                   v1::RankResponse* response) override {
      node_->ranks_.fetch_add(1);
      if (node_->hanging_.load()) return new HangingReactor();
      RankFn fn;
      {
        absl::MutexLock lock(&node_->mu_);
        fn = node_->rank_;
      }
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      reactor->Finish(fn(context, *request, response));
      return reactor;
    }

   private:
    TestNode* node_;
  };

  class NodeService final : public v1::Node::CallbackService {
   public:
    explicit NodeService(TestNode* node) : node_(node) {}
    grpc::ServerWriteReactor<v1::NodeState>* WatchState(grpc::CallbackServerContext*,
                                                        const v1::WatchStateRequest*) override {
      absl::MutexLock lock(&node_->mu_);
      auto* writer = new Writer(node_, node_->snapshot_);
      node_->writers_.push_back(writer);
      return writer;
    }

   private:
    TestNode* node_;
  };

  std::string id_;
  Recommender recommender_;
  NodeService node_service_;
  std::unique_ptr<rpc::Server> server_;
  absl::Mutex mu_;
  RankFn rank_ ABSL_GUARDED_BY(mu_);
  v1::NodeState snapshot_ ABSL_GUARDED_BY(mu_);
  std::vector<Writer*> writers_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> ranks_{0};
  std::atomic<bool> hanging_{false};
};

// Makes `node` answer every Rank at once, storing in *remaining_ms how long the call's deadline
// had left when it arrived.
template <class Node>
void RecordRemainingDeadline(Node& node, std::atomic<int64_t>* remaining_ms) {
  node.SetRank([remaining_ms](grpc::CallbackServerContext* context, const v1::RankRequest&,
                              v1::RankResponse*) {
    *remaining_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        context->deadline() - std::chrono::system_clock::now())
                        .count();
    return grpc::Status::OK;
  });
}

class RouterTest : public ::testing::Test {
 protected:
  // kManual: no maintenance thread; the test runs RunMaintenance and moves clock_.
  // `configure` adjusts the router's options last; `limits` bound its channels to the nodes.
  void StartRouter(const std::string& policy, int num_nodes,
                   Router::Maintenance maintenance = Router::Maintenance::kThread,
                   const std::function<void(RouterOptions&)>& configure = {},
                   rpc::ChannelLimits limits = {}) {
    RouterOptions options;
    options.policy = policy;
    options.nodes.clear();
    // On the fake clock the interval costs no time, so a long one gives its checks a deadline
    // (the interval) that a loaded machine meets; the real-clock thread checks every 50 ms.
    options.health_check_interval_ms =
        maintenance == Router::Maintenance::kManual ? static_cast<int32_t>(kIntervalUs / 1000) : 50;
    options.failures_to_eject = 2;
    for (int i = 0; i < num_nodes; ++i) {
      nodes_.push_back(std::make_unique<TestNode>("node-" + std::to_string(i)));
      options.nodes.push_back(nodes_.back()->address());
    }
    if (configure) configure(options);
    // Health checks by clock_ when the test drives them, by the real clock otherwise.
    auto router = Router::Create(
        options, maintenance == Router::Maintenance::kManual ? &clock_ : nullptr, {}, limits);
    ASSERT_TRUE(router.ok()) << router.status();
    router_ = *std::move(router);
    rpc::ServerOptions server_options;
    server_options.services = {router_->service()};
    server_options.drainer = router_->drainer();
    auto server = rpc::Server::Start(server_options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::Recommender::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
    router_->Start(maintenance);
    if (maintenance == Router::Maintenance::kManual) {
      // Start ran the first checks; should one have failed (a node still starting), run more.
      for (int round = 0; round < 20 && router_->cluster().Routable().Count() < num_nodes;
           ++round) {
        clock_.AdvanceMicros(kIntervalUs);
        router_->RunMaintenance();
      }
      ASSERT_EQ(router_->cluster().Routable().Count(), num_nodes);
    } else {
      ASSERT_TRUE(router_->WaitForRoutable(num_nodes, absl::Seconds(10)));
    }
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(5));
    if (router_ != nullptr) router_->Stop();
  }

  grpc::Status Rank(int64_t user, v1::RankResponse* response, int history = 100,
                    int deadline_ms = 5000) {
    v1::RankRequest request;
    request.set_user_id(user);
    for (int i = 0; i < history; ++i) request.add_history_item_ids(i);
    request.add_candidate_item_ids(1);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
    return stub_->Rank(&context, request, response);
  }

  // Waits (bounded) until `predicate` holds; the router applies streamed state asynchronously.
  static bool Eventually(const std::function<bool()>& predicate) {
    for (int i = 0; i < 500; ++i) {
      if (predicate()) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return predicate();
  }

  // health_check_interval_ms of the fake-clock (kManual) tests.
  static constexpr int64_t kIntervalUs = 5'000'000;
  FakeClock clock_{1'000'000};
  std::vector<std::unique_ptr<TestNode>> nodes_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<rpc::Server> server_;
  std::unique_ptr<v1::Recommender::Stub> stub_;
};

TEST_F(RouterTest, ForwardsTheNodesReplyAndCountsOneAttempt) {
  StartRouter("round_robin", 2);
  v1::RankResponse response;
  const grpc::Status status = Rank(1, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.info().attempts(), 1);
  EXPECT_TRUE(response.info().node_id() == "node-0" || response.info().node_id() == "node-1");
}

TEST_F(RouterTest, RetriesUnavailableOnAnotherNode) {
  StartRouter("consistent_hash", 2);
  for (auto& node : nodes_) {
    node->SetRank([](grpc::CallbackServerContext*, const v1::RankRequest&, v1::RankResponse*) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
    });
  }
  nodes_[1]->SetRank(
      [](grpc::CallbackServerContext*, const v1::RankRequest&, v1::RankResponse* response) {
        response->mutable_info()->set_node_id("node-1");
        return grpc::Status::OK;
      });
  for (int64_t user = 0; user < 10; ++user) {
    v1::RankResponse response;
    const grpc::Status status = Rank(user, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.info().node_id(), "node-1");
    EXPECT_GE(response.info().attempts(), 1);
  }
  EXPECT_GT(router_->counters().retries, 0);
}

TEST_F(RouterTest, PassesOtherErrorsThroughWithoutRetrying) {
  StartRouter("round_robin", 2);
  for (auto& node : nodes_) {
    node->SetRank([](grpc::CallbackServerContext*, const v1::RankRequest&, v1::RankResponse*) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "history_actions: bad");
    });
  }
  v1::RankResponse response;
  const grpc::Status status = Rank(3, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "history_actions: bad");
  EXPECT_EQ(nodes_[0]->ranks() + nodes_[1]->ranks(), 1);
}

TEST_F(RouterTest, AllNodesFailingGivesTheLastErrorAfterMaxAttempts) {
  StartRouter("round_robin", 3);
  for (auto& node : nodes_) {
    node->SetRank([](grpc::CallbackServerContext*, const v1::RankRequest&, v1::RankResponse*) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "node draining");
    });
  }
  v1::RankResponse response;
  const grpc::Status status = Rank(3, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(nodes_[0]->ranks() + nodes_[1]->ranks() + nodes_[2]->ranks(), 3);
}

TEST_F(RouterTest, EjectsAFailingNodeAndTakesItBackWhenAHealthCheckPasses) {
  StartRouter("round_robin", 2, Router::Maintenance::kManual);
  nodes_[0]->SetRank([](grpc::CallbackServerContext*, const v1::RankRequest&, v1::RankResponse*) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
  });
  // Each request's node results are recorded before its reply, so ejection (2 failures) happens
  // within a few requests; bounded, so a router that never ejects fails here.
  for (int i = 0; i < 10 && !router_->health().ejected(0); ++i) {
    v1::RankResponse response;
    ASSERT_TRUE(Rank(i, &response).ok());
    EXPECT_EQ(response.info().node_id(), "node-1");
  }
  ASSERT_TRUE(router_->health().ejected(0));
  EXPECT_FALSE(router_->cluster().healthy(0));
  const int before = nodes_[0]->ranks();
  for (int i = 0; i < 6; ++i) {
    v1::RankResponse response;
    ASSERT_TRUE(Rank(i, &response).ok());
    EXPECT_EQ(response.info().node_id(), "node-1");
  }
  EXPECT_EQ(nodes_[0]->ranks(), before);
  nodes_[0]->SetRank(
      [](grpc::CallbackServerContext*, const v1::RankRequest&, v1::RankResponse* response) {
        response->mutable_info()->set_node_id("node-0");
        return grpc::Status::OK;
      });
  // Its health check (SERVING all along) is not due until an interval of the clock has passed.
  router_->RunMaintenance();
  EXPECT_TRUE(router_->health().ejected(0));
  clock_.AdvanceMicros(kIntervalUs - 1);
  router_->RunMaintenance();
  EXPECT_TRUE(router_->health().ejected(0));
  clock_.AdvanceMicros(1);
  router_->RunMaintenance();
  EXPECT_FALSE(router_->health().ejected(0));
  ASSERT_TRUE(router_->cluster().healthy(0));
  std::set<std::string> served_by;
  for (int i = 0; i < 2; ++i) {
    v1::RankResponse response;
    ASSERT_TRUE(Rank(i, &response).ok());
    served_by.insert(response.info().node_id());
  }
  EXPECT_EQ(served_by, (std::set<std::string>{"node-0", "node-1"}));
}

TEST_F(RouterTest, AFailingHealthCheckTakesANodeOutUntilOnePasses) {
  StartRouter("round_robin", 2, Router::Maintenance::kManual);
  nodes_[1]->SetServing(false);
  clock_.AdvanceMicros(kIntervalUs);
  router_->RunMaintenance();
  EXPECT_EQ(router_->cluster().Routable(), route::NodeSet{0});
  for (int i = 0; i < 4; ++i) {
    v1::RankResponse response;
    ASSERT_TRUE(Rank(i, &response).ok());
    EXPECT_EQ(response.info().node_id(), "node-0");
  }
  nodes_[1]->SetServing(true);
  router_->RunMaintenance();  // not due yet
  EXPECT_FALSE(router_->cluster().healthy(1));
  clock_.AdvanceMicros(kIntervalUs);
  router_->RunMaintenance();
  EXPECT_TRUE(router_->cluster().healthy(1));
}

TEST_F(RouterTest, ConcurrentRequestsRetriesAndCancellationsAllComplete) {
  StartRouter("round_robin", 2);
  nodes_[0]->SetRank([](grpc::CallbackServerContext*, const v1::RankRequest&, v1::RankResponse*) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
  });
  // Many calls in flight at once, every other one cancelled by its client as soon as it is sent:
  // cancellations race with dispatches and retries inside the router.
  constexpr int kCalls = 64;
  struct Call {
    grpc::ClientContext context;
    v1::RankRequest request;
    v1::RankResponse response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  absl::Mutex mu;
  int done = 0;
  for (int i = 0; i < kCalls; ++i) {
    calls.push_back(std::make_unique<Call>());
    Call* call = calls.back().get();
    call->request.set_user_id(i);
    call->request.add_history_item_ids(1);
    call->request.add_candidate_item_ids(1);
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    stub_->async()->Rank(&call->context, &call->request, &call->response,
                         [call, &mu, &done](grpc::Status status) {
                           absl::MutexLock lock(&mu);
                           call->status = std::move(status);
                           ++done;
                         });
    if (i % 2 == 1) call->context.TryCancel();
  }
  {
    absl::MutexLock lock(&mu);
    // Bounded: a call the router never answers fails the test instead of hanging it.
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(
                                        +[](int* n) { return *n == kCalls; }, &done),
                                    absl::Seconds(30)));
  }
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    const grpc::Status& status = calls[i]->status;
    if (status.ok()) {
      ++ok;
      EXPECT_EQ(calls[i]->response.info().node_id(), "node-1") << i;
    } else {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
          << i << " " << status.error_message();
      EXPECT_EQ(i % 2, 1) << i;  // only cancelled calls may fail
    }
  }
  EXPECT_GE(ok, kCalls / 2);
}

TEST_F(RouterTest, PropagatesTheClientDeadlineWhenItEndsBeforeTheAttemptTimeout) {
  StartRouter("round_robin", 1, Router::Maintenance::kThread,
              [](RouterOptions& o) { o.attempt_timeout_ms = 2000; });
  std::atomic<int64_t> remaining_ms{-1};
  RecordRemainingDeadline(*nodes_[0], &remaining_ms);
  v1::RankResponse response;
  ASSERT_TRUE(Rank(1, &response, 100, /*deadline_ms=*/700).ok());
  EXPECT_GT(remaining_ms.load(), 300);
  EXPECT_LE(remaining_ms.load(), 720);  // gRPC rounds deadlines up a little; the default is 1000
}

TEST_F(RouterTest, AnAttemptGetsItsTimeoutWhenThatEndsBeforeTheClientsDeadline) {
  StartRouter("round_robin", 1, Router::Maintenance::kThread,
              [](RouterOptions& o) { o.attempt_timeout_ms = 200; });
  std::atomic<int64_t> remaining_ms{-1};
  RecordRemainingDeadline(*nodes_[0], &remaining_ms);
  v1::RankResponse response;
  ASSERT_TRUE(Rank(1, &response, 100, /*deadline_ms=*/5000).ok());
  EXPECT_GT(remaining_ms.load(), 0);
  EXPECT_LE(remaining_ms.load(), 220);
}

TEST(AttemptTimeout, IsTheFloorOrAMultipleOfTheNodesExpectedResponseTime) {
  // No report yet (no batch time): the floor.
  EXPECT_EQ(AttemptTimeoutUs(250'000, 0, 1, 0), 250'000);
  // 5 requests on a node computing 2 at once: 3 batches of 10 ms, x4 = 120 ms over a 100 ms floor.
  EXPECT_EQ(AttemptTimeoutUs(100'000, 10'000, 5, 2), 120'000);
  // The same node idle: one batch, 40 ms, under the floor.
  EXPECT_EQ(AttemptTimeoutUs(100'000, 10'000, 1, 2), 100'000);
  // Capacity and outstanding below 1 count as 1.
  EXPECT_EQ(AttemptTimeoutUs(1'000, 10'000, 0, 0), 40'000);
  // Off.
  EXPECT_EQ(AttemptTimeoutUs(0, 10'000, 100, 1), 0);
  // Absurd reports stay bounded (a day).
  EXPECT_EQ(AttemptTimeoutUs(1'000, 1e300, 1, 1), int64_t{86'400'000'000});
}

TEST_F(RouterTest, AHungNodesAttemptsTimeOutAndAreRetriedOnAnotherNodeUntilItIsEjected) {
  // Manual maintenance: no health check readmits the hung node (it still answers SERVING).
  StartRouter("round_robin", 2, Router::Maintenance::kManual,
              [](RouterOptions& o) { o.attempt_timeout_ms = 100; });
  nodes_[0]->SetHanging(true);
  int retried = 0;
  // Round robin sends every other first attempt to node-0: two timeouts (failures_to_eject) within
  // a few requests; bounded, so a router that never times out or ejects fails here.
  for (int i = 0; i < 10 && !router_->health().ejected(0); ++i) {
    v1::RankResponse response;
    // The client's deadline (5 s) is far past the attempt timeout: without it, a request sent to
    // node-0 would end DEADLINE_EXCEEDED.
    const grpc::Status status = Rank(i, &response);
    ASSERT_TRUE(status.ok()) << i << ": " << status.error_message();
    EXPECT_EQ(response.info().node_id(), "node-1");
    retried += response.info().attempts() == 2;
  }
  ASSERT_TRUE(router_->health().ejected(0));
  EXPECT_EQ(retried, 2);
  EXPECT_EQ(router_->counters().attempt_timeouts, 2);
  EXPECT_EQ(router_->counters().retries, 2);
  // Ejected: no further attempt goes to node-0.
  const int before = nodes_[0]->ranks();
  for (int i = 0; i < 4; ++i) {
    v1::RankResponse response;
    ASSERT_TRUE(Rank(i, &response).ok());
    EXPECT_EQ(response.info().attempts(), 1);
  }
  EXPECT_EQ(nodes_[0]->ranks(), before);
}

TEST_F(RouterTest, ATimedOutAttemptWithNoNodeLeftEndsTheRequestNamingTheTimeout) {
  StartRouter("round_robin", 1, Router::Maintenance::kManual,
              [](RouterOptions& o) { o.attempt_timeout_ms = 100; });
  nodes_[0]->SetHanging(true);
  v1::RankResponse response;
  const grpc::Status status = Rank(1, &response, 100, /*deadline_ms=*/5000);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_NE(status.error_message().find("did not answer within the attempt timeout of 100 ms"),
            std::string::npos)
      << status.error_message();
  EXPECT_EQ(nodes_[0]->ranks(), 1);
  EXPECT_EQ(router_->counters().attempt_timeouts, 1);
}

TEST_F(RouterTest, WithoutAnAttemptTimeoutAHungNodeHoldsTheRequestToTheClientsDeadline) {
  StartRouter("round_robin", 2, Router::Maintenance::kManual,
              [](RouterOptions& o) { o.attempt_timeout_ms = 0; });
  nodes_[0]->SetHanging(true);
  nodes_[1]->SetHanging(true);
  v1::RankResponse response;
  const grpc::Status status = Rank(1, &response, 100, /*deadline_ms=*/300);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(status.error_message().find("attempt timeout"), std::string::npos)
      << status.error_message();
  EXPECT_EQ(nodes_[0]->ranks() + nodes_[1]->ranks(), 1);
  EXPECT_EQ(router_->counters().attempt_timeouts, 0);
  EXPECT_EQ(router_->counters().retries, 0);
}

TEST_F(RouterTest, ANodeReportingAQueueGetsItsExpectedResponseTimeBeforeTimingOut) {
  StartRouter("round_robin", 1, Router::Maintenance::kThread,
              [](RouterOptions& o) { o.attempt_timeout_ms = 100; });
  EXPECT_EQ(router_->AttemptTimeoutUs(0), 100'000);
  // 7 requests in flight on a node computing 2 at once in batches of 100 ms: with one more, 4
  // batches, 400 ms; x4 = 1.6 s.
  v1::NodeState state;
  state.mutable_load()->set_capacity(2);
  state.mutable_load()->set_in_flight(7);
  state.mutable_load()->set_ewma_service_us(100'000);
  nodes_[0]->Publish(state);
  ASSERT_TRUE(Eventually([&] { return router_->AttemptTimeoutUs(0) == 1'600'000; }))
      << router_->AttemptTimeoutUs(0);
  std::atomic<int64_t> remaining_ms{-1};
  RecordRemainingDeadline(*nodes_[0], &remaining_ms);
  v1::RankResponse response;
  ASSERT_TRUE(Rank(1, &response, 100, /*deadline_ms=*/5000).ok());
  EXPECT_GT(remaining_ms.load(), 1000);
  EXPECT_LE(remaining_ms.load(), 1620);
}

TEST_F(RouterTest, ARequestOverTheChannelSendLimitNeverReachesANode) {
  StartRouter("round_robin", 2, Router::Maintenance::kThread, {},
              rpc::ChannelLimits{.max_send_bytes = 2000, .max_receive_bytes = 4 << 20});
  EXPECT_EQ(router_->channel_limits().max_send_bytes, 2000);
  v1::RankResponse response;
  // 1000 history items: about 9 KB on the wire. Every node is tried; none receives it.
  const grpc::Status big = Rank(1, &response, 1000);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << big.error_message();
  EXPECT_EQ(nodes_[0]->ranks() + nodes_[1]->ranks(), 0);
  // 10 items: about 100 bytes.
  EXPECT_TRUE(Rank(2, &response, 10).ok());
  EXPECT_EQ(nodes_[0]->ranks() + nodes_[1]->ranks(), 1);
}

TEST_F(RouterTest, AReplyOverTheChannelReceiveLimitIsRefused) {
  StartRouter("round_robin", 1, Router::Maintenance::kThread, {},
              rpc::ChannelLimits{.max_send_bytes = 4 << 20, .max_receive_bytes = 8192});
  int items = 10;
  nodes_[0]->SetRank(
      [&items](grpc::CallbackServerContext*, const v1::RankRequest&, v1::RankResponse* response) {
        for (int i = 0; i < items; ++i) {
          v1::ScoredItem* item = response->add_items();
          item->set_item_id(int64_t{1} << 40 | i);
          item->set_score(1.0f);
        }
        return grpc::Status::OK;
      });
  v1::RankResponse response;
  EXPECT_TRUE(Rank(1, &response).ok());
  EXPECT_EQ(response.items_size(), 10);
  items = 1000;  // about 16 KB
  const grpc::Status big = Rank(2, &response);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << big.error_message();
}

TEST_F(RouterTest, HelmPolicyFollowsStreamedKvResidency) {
  StartRouter("helm", 3);
  v1::NodeState state;
  auto* event = state.add_kv_events();
  event->set_user_id(555);
  event->set_cached_tokens(90);
  nodes_[2]->Publish(state);
  ASSERT_TRUE(Eventually([&] { return router_->cluster().CachedTokens(555)[2] == 90; }));
  for (int i = 0; i < 5; ++i) {
    v1::RankResponse response;
    ASSERT_TRUE(Rank(555, &response).ok());
    EXPECT_EQ(response.info().node_id(), "node-2");
  }
}

TEST_F(RouterTest, ABrokenStateStreamForgetsResidency) {
  StartRouter("helm", 2);
  v1::NodeState state;
  auto* event = state.add_kv_events();
  event->set_user_id(9);
  event->set_cached_tokens(50);
  nodes_[1]->Publish(state);
  auto tokens_on_1 = [&] { return router_->cluster().CachedTokens(9)[1]; };
  ASSERT_TRUE(Eventually([&] { return tokens_on_1() == 50; }));
  nodes_[1]->CloseStreams();
  // Forgotten when the stream ends, then restored by the snapshot of the reconnected stream.
  EXPECT_TRUE(Eventually([&] { return tokens_on_1() == 50; }));
}

TEST_F(RouterTest, NoHealthyNodeIsUnavailable) {
  StartRouter("helm", 1, Router::Maintenance::kManual);
  nodes_[0]->SetServing(false);
  clock_.AdvanceMicros(kIntervalUs);
  router_->RunMaintenance();
  ASSERT_TRUE(router_->cluster().Routable().Empty());
  v1::RankResponse response;
  const grpc::Status status = Rank(1, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "no healthy node");
}

TEST_F(RouterTest, ABadEmbSummaryOnTheWireIsRejectedAndTheRestApplied) {
  StartRouter("helm", 2);
  v1::NodeState state;
  state.mutable_emb_summary()->set_bits(BloomFilter(1 << 10, 2, 1).ToBytes());
  state.mutable_emb_summary()->set_num_hashes(40);  // would overflow the router's probe buffers
  auto* event = state.add_kv_events();
  event->set_user_id(31);
  event->set_cached_tokens(64);
  nodes_[0]->Publish(state);
  ASSERT_TRUE(Eventually([&] { return router_->cluster().CachedTokens(31)[0] == 64; }));
  EXPECT_FALSE(router_->cluster().has_emb_summary(0));
  // The stream lives on: a good summary afterwards is taken.
  v1::NodeState good;
  good.mutable_emb_summary()->set_bits(BloomFilter(1 << 10, 2, 1).ToBytes());
  good.mutable_emb_summary()->set_num_hashes(2);
  good.mutable_emb_summary()->set_seed(1);
  nodes_[0]->Publish(good);
  EXPECT_TRUE(Eventually([&] { return router_->cluster().has_emb_summary(0); }));
  v1::RankResponse response;
  EXPECT_TRUE(Rank(31, &response, 100).ok());
  EXPECT_EQ(response.info().node_id(), "node-0");
}

}  // namespace
}  // namespace helm::router
