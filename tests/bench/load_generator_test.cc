// The load generator's gRPC edge against a real in-process server on 127.0.0.1 (port 0), for what
// only the edge does: connecting (and failing to), translating requests, status codes, serving
// info and deadlines to and from gRPC, and polling GetStats. The test Recommender answers at once
// with chosen status codes, or holds every request until the test ends (so only the client's
// deadline ends it). The timing of the open loop itself is tested on a fake clock
// (open_loop_test.cc).
#include "bench/load_generator.h"

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bench/stats.h"
#include "gtest/gtest.h"
#include "helm/common/clock.h"
#include "helm/rpc/server.h"
#include "helm/v1/node.grpc.pb.h"
#include "helm/v1/recommender.grpc.pb.h"

namespace helm::bench {
namespace {

uint64_t TestSeed() {
  return static_cast<uint64_t>(::testing::UnitTest::GetInstance()->random_seed()) + 11;
}

struct Behaviour {
  bool hold = false;  // never answer while the test runs (answered CANCELLED at its end)
  // Status code by user_id % 4 (all OK when empty).
  std::vector<grpc::StatusCode> code_by_user_mod4;
};

Behaviour Held() {
  Behaviour b;
  b.hold = true;
  return b;
}

Behaviour Codes(std::vector<grpc::StatusCode> by_user_mod4) {
  Behaviour b;
  b.code_by_user_mod4 = std::move(by_user_mod4);
  return b;
}

class FakeRecommender final : public v1::Recommender::CallbackService {
 public:
  explicit FakeRecommender(Behaviour behaviour) : behaviour_(std::move(behaviour)) {}

  grpc::ServerUnaryReactor* Rank(grpc::CallbackServerContext* context,
                                 const v1::RankRequest* request,
                                 v1::RankResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    {
      absl::MutexLock lock(&mu_);
      ++received_;
      top_k_ = request->top_k();
      if (behaviour_.hold) {
        held_.push_back(reactor);
        return reactor;
      }
    }
    grpc::Status status = grpc::Status::OK;
    if (!behaviour_.code_by_user_mod4.empty()) {
      const grpc::StatusCode code = behaviour_.code_by_user_mod4[request->user_id() % 4];
      if (code != grpc::StatusCode::OK) status = grpc::Status(code, "chosen by the test");
    }
    // Two "nodes" by user parity: 3 of 4 history tokens cached on node-a, 1 of 4 on node-b.
    v1::ServingInfo* info = response->mutable_info();
    const bool a = request->user_id() % 2 == 0;
    const int32_t n = request->history_item_ids_size();
    info->set_node_id(a ? "node-a" : "node-b");
    info->set_cached_tokens(a ? n * 3 / 4 : n / 4);
    info->set_computed_tokens(n - info->cached_tokens());
    info->set_emb_hits(request->candidate_item_ids_size());
    reactor->Finish(status);
    return reactor;
  }

  int64_t received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  int32_t top_k() {
    absl::MutexLock lock(&mu_);
    return top_k_;
  }
  // Ends every held request, so that none is pending while the server shuts down.
  void ReleaseHeld() {
    absl::MutexLock lock(&mu_);
    for (grpc::ServerUnaryReactor* reactor : held_) {
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "test over"));
    }
    held_.clear();
  }

 private:
  const Behaviour behaviour_;
  absl::Mutex mu_;
  int64_t received_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t top_k_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<grpc::ServerUnaryReactor*> held_ ABSL_GUARDED_BY(mu_);
};

// GetStats: the split moves by 0.01 per call; counters grow by 100 tokens (75 hits) per call.
class FakeNode final : public v1::Node::CallbackService {
 public:
  explicit FakeNode(std::string id) : id_(std::move(id)) {}
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const v1::GetStatsRequest*, v1::NodeStats* stats) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    stats->set_node_id(id_);
    stats->set_committed_split(0.5 + 0.01 * calls_);
    stats->mutable_total()->set_kv_requested_tokens(100 * calls_);
    stats->mutable_total()->set_kv_hit_tokens(75 * calls_);
    stats->mutable_total()->set_emb_hits(9 * calls_);
    stats->mutable_total()->set_emb_misses(calls_);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  int64_t calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  const std::string id_;
  absl::Mutex mu_;
  int64_t calls_ ABSL_GUARDED_BY(mu_) = 0;
};

class TestServer {
 public:
  explicit TestServer(Behaviour behaviour, const std::string& node_id = "node-a")
      : recommender_(std::move(behaviour)), node_(node_id) {
    rpc::ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.services = {&recommender_, &node_};
    absl::StatusOr<std::unique_ptr<rpc::Server>> server = rpc::Server::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  ~TestServer() {
    recommender_.ReleaseHeld();
    server_->Shutdown(absl::ZeroDuration());
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  FakeRecommender& recommender() { return recommender_; }
  FakeNode& node() { return node_; }

 private:
  FakeRecommender recommender_;
  FakeNode node_;
  std::unique_ptr<rpc::Server> server_;
};

workload::WorkloadOptions SmallWorkload(double rate_per_s, double duration_s) {
  workload::WorkloadOptions options;
  options.seed = TestSeed();
  options.rate_per_s = rate_per_s;
  options.duration_s = duration_s;
  options.max_users = 500;
  options.max_history = 256;
  options.candidates = 16;
  return options;
}

RunResult MustRun(const LoadOptions& options, const workload::WorkloadOptions& workload) {
  absl::StatusOr<std::unique_ptr<workload::Generator>> generator =
      workload::Generator::Create(workload);
  EXPECT_TRUE(generator.ok()) << generator.status();
  absl::StatusOr<std::unique_ptr<LoadGenerator>> runner =
      LoadGenerator::Create(options, *std::move(generator));
  EXPECT_TRUE(runner.ok()) << runner.status();
  absl::StatusOr<RunResult> result = (*runner)->Run();
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *std::move(result) : RunResult();
}

TEST(LoadGenerator, TranslatesRequestsStatusCodesAndServingInfo) {
  using grpc::StatusCode;
  TestServer server(Codes({StatusCode::OK, StatusCode::RESOURCE_EXHAUSTED,
                           StatusCode::INVALID_ARGUMENT, StatusCode::UNAVAILABLE}));
  LoadOptions options;
  options.target = server.address();
  const workload::WorkloadOptions workload = SmallWorkload(300, 0.7);
  // The same seed gives the same users: the expected count of each code.
  std::map<int64_t, int64_t> by_mod;
  {
    std::unique_ptr<workload::Generator> generator = *workload::Generator::Create(workload);
    workload::Request r;
    while (generator->Next(&r)) ++by_mod[r.user_id % 4];
  }
  const RunResult run = MustRun(options, workload);
  const Summary s = Summarize(run, "overall", 0, run.duration_us, 1e9);
  EXPECT_EQ(s.ok, by_mod[0]);
  EXPECT_EQ(
      s.errors_by_code.count("RESOURCE_EXHAUSTED") ? s.errors_by_code.at("RESOURCE_EXHAUSTED") : 0,
      by_mod[1]);
  EXPECT_EQ(
      s.errors_by_code.count("INVALID_ARGUMENT") ? s.errors_by_code.at("INVALID_ARGUMENT") : 0,
      by_mod[2]);
  EXPECT_EQ(s.errors_by_code.count("UNAVAILABLE") ? s.errors_by_code.at("UNAVAILABLE") : 0,
            by_mod[3]);
  EXPECT_EQ(s.errors, by_mod[1] + by_mod[2] + by_mod[3]);
  EXPECT_EQ(s.dropped, 0);
  EXPECT_EQ(run.first_error.at(static_cast<int32_t>(StatusCode::UNAVAILABLE)),
            "chosen by the test");
  // OK replies (even users) name their node and carry its serving info; top_k reached the server.
  EXPECT_EQ(run.node_ids, std::vector<std::string>{"node-a"});
  EXPECT_NEAR(s.kv_token_hit_ratio, 0.75, 0.01);
  EXPECT_DOUBLE_EQ(s.emb_hit_rate, 1.0);
  EXPECT_EQ(server.recommender().top_k(), options.top_k);
}

TEST(LoadGenerator, ServerThatNeverAnswersEndsEachRequestAtItsGrpcDeadline) {
  TestServer server(Held());
  LoadOptions options;
  options.target = server.address();
  options.deadline_ms = 50;
  const workload::WorkloadOptions workload = SmallWorkload(50, 0.4);
  const RunResult run = MustRun(options, workload);
  const Summary s = Summarize(run, "overall", 0, run.duration_us, 1e9);
  EXPECT_GT(s.scheduled, 5) << "seed " << workload.seed;
  EXPECT_EQ(server.recommender().received(), s.scheduled);
  EXPECT_EQ(s.errors_by_code.at("DEADLINE_EXCEEDED"), s.scheduled);
  EXPECT_EQ(s.ok, 0);
  // Ended by the deadline, not by the test's end: about 50 ms after the schedule. gRPC arms the
  // deadline from the wall clock and its own cached "now", so it may fire a few ms early (46.6 ms
  // seen in CI); the run itself lasts far longer than 60 ms.
  for (const Completion& c : run.completions) {
    EXPECT_GE(c.latency_us, 45'000);
    EXPECT_LT(c.latency_us, 1'000'000);
  }
}

TEST(LoadGenerator, PollsNodesForSplitAndCounters) {
  TestServer server(Behaviour{}, "node-a");
  LoadOptions options;
  options.target = server.address();
  options.nodes = {server.address()};
  options.poll_interval_ms = 100;
  const RunResult run = MustRun(options, SmallWorkload(100, 0.6));
  // A baseline poll, ~5 during the run, a final one.
  EXPECT_GE(server.node().calls(), 4);
  ASSERT_GE(run.samples.size(), 4u);
  EXPECT_LT(run.samples.front().t_us, 0);
  ASSERT_FALSE(run.completions.empty());
  EXPECT_GT(run.samples.back().t_us, run.completions.back().scheduled_us);
  for (const NodeSample& sample : run.samples) EXPECT_TRUE(sample.ok) << sample.error;
  const Report report = BuildReport(run, 80.0);
  const NodeSummary* a = nullptr;
  for (const NodeSummary& n : report.overall.nodes) {
    if (n.node_id == "node-a") a = &n;
  }
  ASSERT_NE(a, nullptr);
  EXPECT_DOUBLE_EQ(a->split_first, 0.51);
  EXPECT_NEAR(a->split_last, 0.5 + 0.01 * server.node().calls(), 1e-9);
  EXPECT_DOUBLE_EQ(a->node_kv_token_hit_ratio, 0.75);
  EXPECT_DOUBLE_EQ(a->node_emb_hit_rate, 0.9);
  // Reply-based: node-a serves even users with 3/4 of history tokens cached.
  EXPECT_NEAR(a->kv_token_hit_ratio, 0.75, 0.01);
  EXPECT_DOUBLE_EQ(a->emb_hit_rate, 1.0);
  EXPECT_TRUE(report.poll_errors.empty());
}

TEST(LoadGenerator, UnreachableTargetIsUnavailable) {
  LoadOptions options;
  options.target = "127.0.0.1:1";
  options.connect_timeout_ms = 200;
  absl::StatusOr<std::unique_ptr<LoadGenerator>> runner =
      LoadGenerator::Create(options, *workload::Generator::Create(SmallWorkload(10, 0.1)));
  ASSERT_TRUE(runner.ok());
  absl::StatusOr<RunResult> result = (*runner)->Run();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(result.status().message().find("127.0.0.1:1"), absl::string_view::npos);
}

TEST(LoadGenerator, BadOptionsAreErrors) {
  LoadOptions options;
  EXPECT_FALSE(
      LoadGenerator::Create(options, *workload::Generator::Create(SmallWorkload(10, 0.1))).ok());
  options.target = "127.0.0.1:5";
  options.max_in_flight = 0;
  absl::StatusOr<std::unique_ptr<LoadGenerator>> runner =
      LoadGenerator::Create(options, *workload::Generator::Create(SmallWorkload(10, 0.1)));
  ASSERT_FALSE(runner.ok());
  EXPECT_NE(runner.status().message().find("max_in_flight"), absl::string_view::npos);
}

}  // namespace
}  // namespace helm::bench
