// The load generator against a real in-process gRPC server on 127.0.0.1 (port 0) whose test
// Recommender answers after a controlled delay (or through one FIFO server, so a queue builds)
// with chosen status codes, and whose Node service answers GetStats.
#include "bench/load_generator.h"

#include <algorithm>
#include <functional>
#include <map>
#include <queue>
#include <thread>

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

// Runs actions at chosen times from one thread, so a slow fake server holds no gRPC thread.
class Scheduler {
 public:
  Scheduler() : thread_([this] { Loop(); }) {}
  ~Scheduler() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }

  void At(int64_t due_us, std::function<void()> action) {
    absl::MutexLock lock(&mu_);
    queue_.push(Item{due_us, seq_++, std::move(action)});
  }

 private:
  struct Item {
    int64_t due_us;
    int64_t seq;
    std::function<void()> action;
    bool operator>(const Item& o) const {
      return due_us != o.due_us ? due_us > o.due_us : seq > o.seq;
    }
  };

  void Loop() {
    while (true) {
      std::vector<Item> due;
      {
        absl::MutexLock lock(&mu_);
        if (stop_ && queue_.empty()) return;
        const int64_t now = Clock::Real()->NowMicros();
        while (!queue_.empty() && queue_.top().due_us <= now) {
          due.push_back(queue_.top());
          queue_.pop();
        }
      }
      for (Item& item : due) item.action();
      // Polling (not waiting for a condition): 200 us granularity for the fake's reply times.
      if (due.empty()) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

struct Behaviour {
  int64_t delay_us = 0;    // per request, requests served in parallel
  int64_t service_us = 0;  // > 0: one FIFO server with this service time (a queue builds)
  // Status code by user_id % 4 (all OK when empty).
  std::vector<grpc::StatusCode> code_by_user_mod4;
};

Behaviour Delayed(int64_t delay_us) {
  Behaviour b;
  b.delay_us = delay_us;
  return b;
}

Behaviour Queued(int64_t service_us) {
  Behaviour b;
  b.service_us = service_us;
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
    const int64_t now = Clock::Real()->NowMicros();
    int64_t due = now + behaviour_.delay_us;
    {
      absl::MutexLock lock(&mu_);
      ++received_;
      ++in_flight_;
      max_in_flight_ = std::max(max_in_flight_, in_flight_);
      if (behaviour_.service_us > 0) {
        next_free_us_ = std::max(next_free_us_, now) + behaviour_.service_us;
        due = next_free_us_;
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
    scheduler_.At(due, [this, reactor, status] {
      {
        absl::MutexLock lock(&mu_);
        --in_flight_;
      }
      reactor->Finish(status);
    });
    return reactor;
  }

  int64_t received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  // Waits (10 s at most) until every request has been answered, so that no scheduled Finish
  // runs while the server shuts down.
  void WaitAnswered() {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](int64_t* in_flight) { return *in_flight == 0; }, &in_flight_),
                         absl::Seconds(10));
  }
  int64_t max_in_flight() {
    absl::MutexLock lock(&mu_);
    return max_in_flight_;
  }

 private:
  const Behaviour behaviour_;
  absl::Mutex mu_;
  int64_t received_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t max_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_free_us_ ABSL_GUARDED_BY(mu_) = 0;
  Scheduler scheduler_;  // last: its thread stops before the counters go
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
    recommender_.WaitAnswered();
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

// Mean latency of the OK completions scheduled in [from, to) of the run.
double MeanLatencyUs(const RunResult& run, int64_t from_us, int64_t to_us) {
  double sum = 0;
  int n = 0;
  for (const Completion& c : run.completions) {
    if (c.code == 0 && c.scheduled_us >= from_us && c.scheduled_us < to_us) {
      sum += static_cast<double>(c.latency_us);
      ++n;
    }
  }
  return n > 0 ? sum / n : 0;
}

TEST(LoadGenerator, KeepsSendingOnScheduleWhileAStalledServerQueuesAndLatencyGrows) {
  // One FIFO server at 10 ms per request (100/s) under 200/s offered for 1 s: a second of work
  // arrives per half second of service, so a request scheduled at t waits ~t longer than one at 0.
  TestServer server(Queued(10'000));
  LoadOptions options;
  options.target = server.address();
  options.deadline_ms = 10'000;
  const workload::WorkloadOptions workload = SmallWorkload(200, 1.0);
  const RunResult run = MustRun(options, workload);

  int64_t scheduled = 0;
  for (const Completion& c : run.completions) {
    ++scheduled;
    ASSERT_EQ(c.code, 0) << CodeName(c.code);
    ASSERT_GE(c.latency_us, 10'000);  // at least one service time, counted from the schedule
  }
  EXPECT_GT(scheduled, 140) << "seed " << workload.seed;
  EXPECT_EQ(server.recommender().received(), scheduled);
  // Open loop: every request left on time although replies came later and later.
  const Summary summary = Summarize(run, "overall", 0, run.duration_us, 1e9);
  EXPECT_LT(summary.p99_send_lag_us, 100'000);
  // Latency grows with the queue: the last fifth waits far longer than the first.
  const double early = MeanLatencyUs(run, 0, 200'000);
  const double late = MeanLatencyUs(run, 800'000, 1'000'000);
  EXPECT_GT(late, early + 250'000) << "early " << early << " us, late " << late << " us";
  EXPECT_GT(summary.latency.p99_us, 300'000);
}

TEST(LoadGenerator, CountsErrorsByCode) {
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
  // Replies name their node; OK replies carry serving info.
  ASSERT_FALSE(run.node_ids.empty());
  EXPECT_GT(s.ok, 0);
}

TEST(LoadGenerator, DropsRequestsBeyondMaxInFlightInsteadOfDelayingThem) {
  // 300 ms per request in parallel, 100/s offered: ~30 would be outstanding; the cap is 8.
  TestServer server(Delayed(300'000));
  LoadOptions options;
  options.target = server.address();
  options.max_in_flight = 8;
  const workload::WorkloadOptions workload = SmallWorkload(100, 1.0);
  const RunResult run = MustRun(options, workload);
  const Summary s = Summarize(run, "overall", 0, run.duration_us, 1e9);
  EXPECT_GT(s.dropped, s.scheduled / 3) << "seed " << workload.seed;
  EXPECT_EQ(s.sent + s.dropped, s.scheduled);
  EXPECT_EQ(s.ok, s.sent);
  EXPECT_EQ(s.errors_by_code.at("DROPPED"), s.dropped);
  EXPECT_LE(server.recommender().max_in_flight(), 8);
  EXPECT_EQ(server.recommender().received(), s.sent);
  // A sent request was not held back: it left on time.
  EXPECT_LT(s.p99_send_lag_us, 100'000);
}

TEST(LoadGenerator, DeadlineCountsFromTheScheduledTime) {
  TestServer server(Delayed(400'000));
  LoadOptions options;
  options.target = server.address();
  options.deadline_ms = 50;
  const RunResult run = MustRun(options, SmallWorkload(50, 0.4));
  const Summary s = Summarize(run, "overall", 0, run.duration_us, 1e9);
  EXPECT_GT(s.scheduled, 5);
  EXPECT_EQ(s.errors_by_code.at("DEADLINE_EXCEEDED"), s.scheduled);
  EXPECT_EQ(s.ok, 0);
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
