// A local cluster under traffic: helm-router and helm-node as real processes on 127.0.0.1, driven
// over real gRPC. Scores through the router equal direct scores; helm routing reuses more KV than
// round robin; a node killed mid-run loses no request; bad requests, a full queue, a passed
// deadline and a drain on SIGTERM each give their documented status while the cluster keeps
// serving. Nodes tell the router where each cached history starts.
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/load_generator.h"
#include "bench/stats.h"
#include "cluster_support.h"
#include "e2e_support.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "helm/cluster/local_cluster.h"
#include "helm/v1/node.grpc.pb.h"
#include "helm/v1/recommender.grpc.pb.h"
#include "helm/workload/generator.h"

namespace helm::e2e {
namespace {

using ::testing::HasSubstr;

v1::RankRequest MakeRequest(int64_t user, int history, int candidates, int top_k) {
  v1::RankRequest request;
  request.set_user_id(user);
  for (int i = 0; i < history; ++i) {
    request.add_history_item_ids((user * 7919 + i * 104729) % kNumItems);
    request.add_history_actions(i % 8);
    request.add_history_timestamps_ms(1'700'000'000'000 + int64_t{i} * 30'000);
  }
  for (int c = 0; c < candidates; ++c) request.add_candidate_item_ids((c * 613 + 5) % kNumItems);
  request.set_top_k(top_k);
  return request;
}

struct Reply {
  grpc::Status status;
  v1::RankResponse response;
};

Reply Rank(const std::string& address, const v1::RankRequest& request,
           absl::Duration deadline = absl::Seconds(10)) {
  auto stub = v1::Recommender::NewStub(Connect(address));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  Reply reply;
  reply.status = stub->Rank(&context, request, &reply.response);
  return reply;
}

// Polls the node's GetStats until `count` requests are in flight there; false after `timeout`.
bool WaitInFlight(const std::string& address, int count, absl::Duration timeout) {
  auto stub = v1::Node::NewStub(Connect(address));
  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    v1::GetStatsRequest request;
    v1::NodeStats stats;
    if (stub->GetStats(&context, request, &stats).ok() && stats.load().in_flight() >= count) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  return false;
}

void ExpectSameScores(const v1::RankResponse& got, const v1::RankResponse& want) {
  ASSERT_EQ(got.items_size(), want.items_size());
  for (int i = 0; i < got.items_size(); ++i) {
    EXPECT_EQ(got.items(i).item_id(), want.items(i).item_id()) << "rank " << i;
    // One side may have reused cached K/V, the other recomputed it: equal to fp32 rounding.
    EXPECT_NEAR(got.items(i).score(), want.items(i).score(),
                1e-5 * std::max(1.0f, std::abs(want.items(i).score())))
        << "rank " << i;
  }
}

TEST(Cluster, ScoresThroughTheRouterEqualDirectScores) {
  TempDir dir;
  auto cluster = StartCluster(dir, 2, "helm", ClusterConfig());
  ASSERT_NE(cluster, nullptr);

  for (int top_k : {0, 10}) {
    const v1::RankRequest request = MakeRequest(/*user=*/42 + top_k, 700, 128, top_k);
    const Reply routed = Rank(cluster->router_address(), request);
    ASSERT_TRUE(routed.status.ok()) << routed.status.error_message();
    EXPECT_EQ(routed.response.items_size(), top_k == 0 ? 128 : top_k);
    EXPECT_THAT(routed.response.info().node_id(), HasSubstr("node-"));
    EXPECT_FALSE(routed.response.request_id().empty());
    for (const std::string& node : cluster->node_addresses()) {
      const Reply direct = Rank(node, request);
      ASSERT_TRUE(direct.status.ok()) << direct.status.error_message();
      ExpectSameScores(routed.response, direct.response);
    }
  }
  EXPECT_EQ(cluster->Stop(absl::Seconds(10)), 0);
}

TEST(Cluster, AUsersNextRequestFindsItsCachedHistoryAtOnce) {
  TempDir dir;
  auto cluster = StartCluster(dir, 2, "helm", ClusterConfig());
  ASSERT_NE(cluster, nullptr);
  // Each user's second request is sent as soon as the first is answered, before the node's state
  // stream could have reported the new residency: the router learns it from the reply.
  for (int64_t user = 500; user < 510; ++user) {
    const Reply first = Rank(cluster->router_address(), MakeRequest(user, 600, 16, 5));
    ASSERT_TRUE(first.status.ok()) << first.status.error_message();
    EXPECT_EQ(first.response.info().resident_tokens(), 600);
    const Reply second = Rank(cluster->router_address(), MakeRequest(user, 640, 16, 5));
    ASSERT_TRUE(second.status.ok()) << second.status.error_message();
    EXPECT_EQ(second.response.info().node_id(), first.response.info().node_id()) << "user " << user;
    EXPECT_EQ(second.response.info().cached_tokens(), 600) << "user " << user;
  }
  EXPECT_EQ(cluster->Stop(absl::Seconds(10)), 0);
}

// `request` without its oldest `n` history events, as a client that caps histories sends it.
v1::RankRequest DropOldest(v1::RankRequest request, int n) {
  request.mutable_history_item_ids()->erase(request.history_item_ids().begin(),
                                            request.history_item_ids().begin() + n);
  request.mutable_history_actions()->erase(request.history_actions().begin(),
                                           request.history_actions().begin() + n);
  request.mutable_history_timestamps_ms()->erase(request.history_timestamps_ms().begin(),
                                                 request.history_timestamps_ms().begin() + n);
  return request;
}

TEST(Cluster, NodesTellTheRouterWhereEachCachedHistoryStarts) {
  TempDir dir;
  auto cluster = StartCluster(dir, 2, "kv_affinity", ClusterConfig());
  ASSERT_NE(cluster, nullptr);
  const std::vector<std::string>& nodes = cluster->node_addresses();
  // For each user: a short history starting at event 8 goes through the router to node X (no
  // residency yet: consistent hashing), so the router learns from the reply that X caches 100
  // tokens starting at event 8. Then the user's full 600-event history is sent straight to the
  // other node Y: the router learns of it only from Y's state stream.
  struct Placed {
    int64_t user;
    std::string x, y;  // node ids
  };
  std::vector<Placed> placed;
  for (int64_t user = 700; user < 706; ++user) {
    const Reply probe =
        Rank(cluster->router_address(), DropOldest(MakeRequest(user, 108, 8, 5), 8));
    ASSERT_TRUE(probe.status.ok()) << probe.status.error_message();
    const std::string x = probe.response.info().node_id();
    const int y = x == "node-0" ? 1 : 0;
    const Reply warm = Rank(nodes[y], MakeRequest(user, 600, 8, 5));
    ASSERT_TRUE(warm.status.ok()) << warm.status.error_message();
    ASSERT_EQ(warm.response.info().resident_tokens(), 600);
    placed.push_back({user, x, absl::StrCat("node-", y)});
  }
  absl::SleepFor(absl::Milliseconds(500));  // state streams publish every 20 ms
  for (const Placed& p : placed) {
    if (p.user % 2 == 0) {
      // The history grew: Y's cache, known from its stream, is the longest reusable prefix.
      const Reply grown = Rank(cluster->router_address(), MakeRequest(p.user, 640, 8, 5));
      ASSERT_TRUE(grown.status.ok()) << grown.status.error_message();
      EXPECT_EQ(grown.response.info().node_id(), p.y) << "user " << p.user;
      EXPECT_EQ(grown.response.info().cached_tokens(), 600) << "user " << p.user;
    } else {
      // The client dropped the 8 oldest events: Y's stream said its cache starts at event 0, so
      // it is useless; X's 100 tokens starting at event 8 are the reusable prefix.
      const Reply capped =
          Rank(cluster->router_address(), DropOldest(MakeRequest(p.user, 648, 8, 5), 8));
      ASSERT_TRUE(capped.status.ok()) << capped.status.error_message();
      EXPECT_EQ(capped.response.info().node_id(), p.x) << "user " << p.user;
      EXPECT_EQ(capped.response.info().cached_tokens(), 100) << "user " << p.user;
    }
  }
  EXPECT_EQ(cluster->Stop(absl::Seconds(10)), 0);
}

// A steady Zipf user stream of MovieLens-like users over the test catalog, 32 candidates each.
workload::WorkloadOptions SteadyWorkload(double rate_per_s, double duration_s, int32_t max_history,
                                         int64_t max_users, uint64_t seed) {
  workload::WorkloadOptions options;
  options.profile = "movielens-20m";
  options.regime = "steady";
  options.rate_per_s = rate_per_s;
  options.duration_s = duration_s;
  options.candidates = 32;
  options.max_items = kNumItems;
  options.max_history = max_history;
  options.max_users = max_users;
  options.seed = seed;
  options.slo_ms = 1000;
  return options;
}

// Runs the Zipf user stream of `options` through the router of a fresh cluster with `policy`.
bench::Summary RunWorkload(const std::string& policy, const workload::WorkloadOptions& options,
                           int nodes, const std::string& config_text) {
  TempDir dir;
  auto cluster = StartCluster(dir, nodes, policy, config_text);
  if (cluster == nullptr) return {};
  auto generator = workload::Generator::Create(options);
  EXPECT_TRUE(generator.ok()) << generator.status();
  if (!generator.ok()) return {};
  bench::LoadOptions load;
  load.target = cluster->router_address();
  load.nodes = cluster->node_addresses();
  load.deadline_ms = 5000;
  auto loader = bench::LoadGenerator::Create(load, *std::move(generator));
  EXPECT_TRUE(loader.ok()) << loader.status();
  if (!loader.ok()) return {};
  absl::StatusOr<bench::RunResult> run = (*loader)->Run();
  EXPECT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(cluster->Stop(absl::Seconds(10)), 0);
  if (!run.ok()) return {};
  return bench::Summarize(*run, policy, 0, run->duration_us, options.slo_ms * 1000);
}

TEST(Cluster, HelmRoutingReusesAtLeastOneAndAHalfTimesTheKvOfRoundRobin) {
  const workload::WorkloadOptions options =
      SteadyWorkload(/*rate_per_s=*/40, /*duration_s=*/10, /*max_history=*/512,
                     /*max_users=*/600, /*seed=*/7);
  const bench::Summary helm = RunWorkload("helm", options, 3, ClusterConfig());
  const bench::Summary round_robin = RunWorkload("round_robin", options, 3, ClusterConfig());
  std::printf("KV token hit ratio: helm %.3f, round_robin %.3f (%lld / %lld OK)\n",
              helm.kv_token_hit_ratio, round_robin.kv_token_hit_ratio,
              static_cast<long long>(helm.ok), static_cast<long long>(round_robin.ok));
  ASSERT_GT(helm.ok, 0.95 * helm.scheduled);
  ASSERT_GT(round_robin.ok, 0.95 * round_robin.scheduled);
  EXPECT_GE(helm.kv_token_hit_ratio, 1.5 * round_robin.kv_token_hit_ratio);
}

TEST(Cluster, KillingANodeMidRunLosesNoRequest) {
  TempDir dir;
  auto cluster = StartCluster(dir, 2, "helm", ClusterConfig());
  ASSERT_NE(cluster, nullptr);
  const workload::WorkloadOptions options =
      SteadyWorkload(/*rate_per_s=*/25, /*duration_s=*/8, /*max_history=*/256,
                     /*max_users=*/200, /*seed=*/3);
  auto generator = workload::Generator::Create(options);
  ASSERT_TRUE(generator.ok()) << generator.status();
  bench::LoadOptions load;
  load.target = cluster->router_address();
  load.deadline_ms = 5000;
  auto loader = bench::LoadGenerator::Create(load, *std::move(generator));
  ASSERT_TRUE(loader.ok()) << loader.status();

  constexpr int64_t kKillAtUs = 3'000'000;
  std::thread killer([&] {
    absl::SleepFor(absl::Microseconds(kKillAtUs));
    cluster->node(1)->Signal(SIGKILL);
  });
  absl::StatusOr<bench::RunResult> run = (*loader)->Run();
  killer.join();
  ASSERT_TRUE(run.ok()) << run.status();

  int64_t ok = 0;
  int64_t after_kill = 0;
  for (const bench::Completion& c : run->completions) {
    // Every request ends with OK or, at worst, a clear UNAVAILABLE: never dropped, never INTERNAL.
    EXPECT_TRUE(c.code == grpc::StatusCode::OK || c.code == grpc::StatusCode::UNAVAILABLE)
        << "scheduled at " << c.scheduled_us << " us ended " << bench::CodeName(c.code) << ": "
        << run->first_error[c.code];
    ok += c.code == grpc::StatusCode::OK;
    if (c.scheduled_us > kKillAtUs + 1'000'000) {
      ++after_kill;
      // Once the router has seen the failure, everything lands on the live node.
      EXPECT_EQ(c.code, grpc::StatusCode::OK) << "scheduled at " << c.scheduled_us << " us";
      if (c.code == grpc::StatusCode::OK) {
        EXPECT_EQ(run->node_ids[c.node], "node-0");
      }
    }
  }
  EXPECT_GE(ok, static_cast<int64_t>(0.98 * run->completions.size()));
  EXPECT_GT(after_kill, 50);
  EXPECT_EQ(HealthStatus(Connect(cluster->router_address())), "SERVING");
  cluster->Stop(absl::Seconds(10));  // node-1's exit status is the kill's
}

TEST(Cluster, DocumentedStatusesAndTheClusterKeepsServing) {
  TempDir dir;
  // One worker that takes one request at a time behind a queue of two, so a burst overflows it.
  auto cluster = StartCluster(dir, 2, "helm", ClusterConfig(R"(  workers: 1
  queue_capacity: 2
  max_batch: 1
  max_history: 4096
  max_candidates: 512
  grace_period_ms: 10000
)"));
  ASSERT_NE(cluster, nullptr);
  const std::string router = cluster->router_address();
  const v1::RankRequest good = MakeRequest(1, 300, 64, 10);

  {  // Bad requests: INVALID_ARGUMENT naming the field, through the router and direct.
    v1::RankRequest unequal = good;
    unequal.mutable_history_actions()->RemoveLast();
    for (const std::string& target : {router, cluster->node_addresses()[0]}) {
      const Reply reply = Rank(target, unequal);
      EXPECT_EQ(reply.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << target;
      EXPECT_THAT(reply.status.error_message(), HasSubstr("history_actions"));
    }
    v1::RankRequest outside = good;
    outside.set_candidate_item_ids(3, kNumItems + 5);
    const Reply reply = Rank(router, outside);
    EXPECT_EQ(reply.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(reply.status.error_message(), HasSubstr("candidate_item_ids[3]"));
  }
  {  // A deadline that passes before compute: DEADLINE_EXCEEDED.
    const Reply reply = Rank(router, MakeRequest(2, 4000, 512, 10), absl::Milliseconds(2));
    EXPECT_EQ(reply.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  {  // A burst at one node overflows its queue: RESOURCE_EXHAUSTED for some, OK for the rest.
    const std::string node = cluster->node_addresses()[0];
    std::vector<Reply> replies(16);
    std::vector<std::thread> senders;
    for (int i = 0; i < 16; ++i) {
      senders.emplace_back(
          [&, i] { replies[i] = Rank(node, MakeRequest(100 + i, 3000, 512, 10)); });
    }
    for (std::thread& t : senders) t.join();
    int exhausted = 0;
    int ok = 0;
    for (const Reply& reply : replies) {
      exhausted += reply.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
      ok += reply.status.ok();
    }
    EXPECT_GT(exhausted, 0);
    EXPECT_GT(ok, 0);
    EXPECT_EQ(exhausted + ok, 16);
  }
  {  // SIGTERM drains: requests in flight finish OK, the node exits 0, the router moves on.
    const std::string node = cluster->node_addresses()[1];
    std::vector<Reply> replies(2);
    std::vector<absl::Time> answered(2);
    std::vector<std::thread> senders;
    for (int i = 0; i < 2; ++i) {
      senders.emplace_back([&, i] {
        replies[i] = Rank(node, MakeRequest(200 + i, 3000, 512, 10));
        answered[i] = absl::Now();
      });
    }
    ASSERT_TRUE(WaitInFlight(node, 2, absl::Seconds(10))) << "the requests never arrived";
    const absl::Time signalled = absl::Now();
    cluster->node(1)->Signal(SIGTERM);
    for (std::thread& t : senders) t.join();
    for (const Reply& reply : replies) {
      EXPECT_TRUE(reply.status.ok()) << reply.status.error_message();
    }
    // The node had both in flight when the signal came: they were answered after it.
    EXPECT_GT(*std::min_element(answered.begin(), answered.end()), signalled);
    const Reply refused = Rank(node, good, absl::Seconds(2));
    EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
    const std::optional<int> status = cluster->node(1)->Wait(absl::Seconds(20));
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(ExitCode(*status), 0);
  }
  // The cluster keeps serving: every request lands on the remaining node.
  for (int i = 0; i < 5; ++i) {
    const Reply reply = Rank(router, MakeRequest(300 + i, 200, 32, 5));
    ASSERT_TRUE(reply.status.ok()) << reply.status.error_message();
    EXPECT_EQ(reply.response.info().node_id(), "node-0");
  }
  cluster->Stop(absl::Seconds(10));
}

}  // namespace
}  // namespace helm::e2e
