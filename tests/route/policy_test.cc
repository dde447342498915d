#include "helm/route/policy.h"

#include <map>

#include "gtest/gtest.h"
#include "helm/common/bloom.h"

namespace helm::route {
namespace {

RouterOptions Options(const std::string& policy) {
  RouterOptions options;
  options.policy = policy;
  return options;
}

std::unique_ptr<Policy> Make(const std::string& name) {
  absl::StatusOr<std::unique_ptr<Policy>> policy = CreatePolicy(Options(name));
  EXPECT_TRUE(policy.ok()) << policy.status();
  return *std::move(policy);
}

void AddHealthyNodes(ClusterState& cluster, int n, int capacity = 4) {
  for (int i = 0; i < n; ++i) {
    cluster.AddNode("n" + std::to_string(i));
    cluster.SetHealthy(i, true);
    NodeUpdate state;
    state.load = NodeLoadUpdate{.capacity = capacity};
    ASSERT_TRUE(cluster.ApplyUpdate(i, state).ok());
  }
}

void Resident(ClusterState& cluster, int node, int64_t user, int32_t tokens) {
  NodeUpdate state;
  state.kv_events.push_back({.user_id = user, .cached_tokens = tokens});
  ASSERT_TRUE(cluster.ApplyUpdate(node, state).ok());
}

RouteRequest Request(int64_t user, int32_t history,
                     const std::vector<int64_t>* candidates = nullptr) {
  RouteRequest r;
  r.user_id = user;
  r.history_length = history;
  if (candidates != nullptr) {
    r.candidate_ids = candidates->data();
    r.num_candidates = static_cast<int32_t>(candidates->size());
  }
  return r;
}

TEST(Policy, UnknownNameIsInvalidArgument) {
  EXPECT_EQ(CreatePolicy(Options("random")).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HelmPolicy, PrefersTheNodeHoldingTheUsersKv) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 4);
  Resident(cluster, 2, 42, 900);
  Resident(cluster, 1, 42, 100);
  auto policy = Make("helm");
  EXPECT_EQ(policy->Pick(Request(42, 1000), cluster, {}), 2);
  // Excluding it (a failed try) falls back to the next best: the shorter prefix.
  EXPECT_EQ(policy->Pick(Request(42, 1000), cluster, NodeSet{2}), 1);
}

TEST(HelmPolicy, CreditsNoKvLongerThanTheRequestsHistory) {
  // The client dropped the user's oldest events (1200 -> 900): node 2's 1200 cached tokens start
  // with events the request no longer has; node 1's 600 may still be a prefix of it.
  ClusterState cluster;
  AddHealthyNodes(cluster, 4);
  Resident(cluster, 2, 42, 1200);
  Resident(cluster, 1, 42, 600);
  EXPECT_EQ(Make("helm")->Pick(Request(42, 900), cluster, {}), 1);
  EXPECT_EQ(Make("kv_affinity")->Pick(Request(42, 900), cluster, {}), 1);
  EXPECT_EQ(Make("helm")->Pick(Request(42, 1300), cluster, {}), 2);
}

TEST(HelmPolicy, CreditsNoKvCachedForAnotherHistoryStart) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 3);
  const uint64_t old_start = HistoryStartFingerprint(11, 0, 1000);
  const uint64_t new_start = HistoryStartFingerprint(12, 1, 2000);
  cluster.NoteResidency(2, 42, 950, old_start);  // before the client dropped the oldest events
  cluster.NoteResidency(1, 42, 500, new_start);
  RouteRequest request = Request(42, 1000);
  request.history_start = new_start;
  EXPECT_EQ(Make("helm")->Pick(request, cluster, {}), 1);
  EXPECT_EQ(Make("kv_affinity")->Pick(request, cluster, {}), 1);
  request.history_start = old_start;
  EXPECT_EQ(Make("helm")->Pick(request, cluster, {}), 2);
}

TEST(HelmPolicy, LoadOutweighsKvWhenTheCachedNodeIsSaturated) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 2, /*capacity=*/1);
  Resident(cluster, 0, 42, 200);  // kv = 0.2 on node 0
  auto policy = Make("helm");
  EXPECT_EQ(policy->Pick(Request(42, 1000), cluster, {}), 0);
  cluster.OnDispatch(0);  // load 0.5 on node 0 > kv gain 0.2
  EXPECT_EQ(policy->Pick(Request(42, 1000), cluster, {}), 1);
}

TEST(HelmPolicy, UsesEmbLocalityBetweenOtherwiseEqualNodes) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 3);
  std::vector<int64_t> candidates;
  for (int64_t i = 0; i < 64; ++i) candidates.push_back(1000 + i);
  for (int n = 0; n < 3; ++n) {
    BloomFilter filter(1 << 14, 2, 3);
    if (n == 1) {
      for (int64_t id : candidates) filter.Add(id);
    }
    NodeUpdate state;
    state.emb_summary = EmbSummaryUpdate{.bits = filter.ToBytes(), .num_hashes = 2, .seed = 3};
    ASSERT_TRUE(cluster.ApplyUpdate(n, state).ok());
  }
  auto policy = Make("helm");
  for (int64_t user = 0; user < 20; ++user) {
    EXPECT_EQ(policy->Pick(Request(user, 100, &candidates), cluster, {}), 1) << user;
  }
}

TEST(HelmPolicy, SpreadsNewUsersOverAnIdleClusterAndKeepsThemThere) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 4);
  auto policy = Make("helm");
  std::map<int, int> per_node;
  for (int64_t user = 0; user < 400; ++user) {
    const int first = policy->Pick(Request(user, 10), cluster, {});
    EXPECT_EQ(policy->Pick(Request(user, 10), cluster, {}), first);  // stable
    ++per_node[first];
  }
  ASSERT_EQ(per_node.size(), 4u);
  for (const auto& [node, count] : per_node) EXPECT_GT(count, 60) << node;
}

TEST(HelmPolicy, DoesNotHerdOntoOneNodeUnderABurstOfColdUsers) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 4, /*capacity=*/2);
  auto policy = Make("helm");
  std::array<int, 4> dispatched{};
  // 40 requests in flight at once, none completing: each dispatch raises that node's load.
  for (int64_t user = 0; user < 40; ++user) {
    const int node = policy->Pick(Request(user * 7919, 10), cluster, {});
    ASSERT_GE(node, 0);
    cluster.OnDispatch(node);
    ++dispatched[node];
  }
  for (int n = 0; n < 4; ++n) EXPECT_GE(dispatched[n], 7) << n;
}

TEST(Policies, ReturnMinusOneWhenNothingIsRoutable) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 2);
  for (const char* name :
       {"helm", "round_robin", "least_loaded", "consistent_hash", "kv_affinity"}) {
    EXPECT_EQ(Make(name)->Pick(Request(1, 10), cluster, NodeSet{0, 1}), -1) << name;
  }
  cluster.SetHealthy(0, false);
  cluster.SetHealthy(1, false);
  for (const char* name :
       {"helm", "round_robin", "least_loaded", "consistent_hash", "kv_affinity"}) {
    EXPECT_EQ(Make(name)->Pick(Request(1, 10), cluster, {}), -1) << name;
  }
}

TEST(RoundRobinPolicy, CyclesThroughRoutableNodes) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 3);
  cluster.SetHealthy(1, false);
  auto policy = Make("round_robin");
  std::map<int, int> seen;
  for (int i = 0; i < 30; ++i) ++seen[policy->Pick(Request(i, 1), cluster, {})];
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], 15);
  EXPECT_EQ(seen[2], 15);
}

TEST(LeastLoadedPolicy, PicksTheLeastLoadedNode) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 3);
  cluster.OnDispatch(0);
  cluster.OnDispatch(0);
  cluster.OnDispatch(2);
  EXPECT_EQ(Make("least_loaded")->Pick(Request(5, 1), cluster, {}), 1);
}

TEST(ConsistentHashPolicy, MovesOnlyTheUsersOfARemovedNode) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 5);
  auto policy = Make("consistent_hash");
  std::vector<int> before(1000);
  for (int64_t u = 0; u < 1000; ++u) before[u] = policy->Pick(Request(u, 1), cluster, {});
  cluster.SetHealthy(3, false);
  int moved = 0;
  for (int64_t u = 0; u < 1000; ++u) {
    const int after = policy->Pick(Request(u, 1), cluster, {});
    if (before[u] != 3) {
      EXPECT_EQ(after, before[u]) << u;
    }
    moved += after != before[u] ? 1 : 0;
  }
  EXPECT_GT(moved, 100);  // node 3's share (~200) moved
  EXPECT_LT(moved, 300);
}

TEST(KvAffinityPolicy, FollowsResidencyAndHashesOnAMiss) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 4);
  Resident(cluster, 3, 77, 10);
  auto policy = Make("kv_affinity");
  EXPECT_EQ(policy->Pick(Request(77, 1000), cluster, {}), 3);
  // Residency only: a saturated node still gets the request.
  for (int i = 0; i < 50; ++i) cluster.OnDispatch(3);
  EXPECT_EQ(policy->Pick(Request(77, 1000), cluster, {}), 3);
  EXPECT_EQ(policy->Pick(Request(78, 1000), cluster, {}),
            Make("consistent_hash")->Pick(Request(78, 1000), cluster, {}));
}

TEST(Policies, RouteOverMoreThan64NodesLikeOverFew) {
  constexpr int kNodes = 1024;
  ClusterState cluster;
  AddHealthyNodes(cluster, kNodes);
  Resident(cluster, 1000, 42, 900);
  Resident(cluster, 70, 42, 300);
  std::vector<int64_t> candidates;
  for (int64_t i = 0; i < 32; ++i) candidates.push_back(5000 + i);
  for (int n = 0; n < kNodes; ++n) {
    BloomFilter filter(1 << 12, 2, 3);
    if (n == 777) {
      for (int64_t id : candidates) filter.Add(id);
    }
    NodeUpdate state;
    state.emb_summary = EmbSummaryUpdate{.bits = filter.ToBytes(), .num_hashes = 2, .seed = 3};
    ASSERT_TRUE(cluster.ApplyUpdate(n, state).ok());
  }
  auto helm = Make("helm");
  EXPECT_EQ(helm->Pick(Request(42, 1000), cluster, {}), 1000);
  EXPECT_EQ(helm->Pick(Request(42, 1000), cluster, NodeSet{1000}), 70);
  EXPECT_EQ(Make("kv_affinity")->Pick(Request(42, 1000), cluster, {}), 1000);
  // A new user goes where its candidates' embeddings are.
  EXPECT_EQ(helm->Pick(Request(43, 10, &candidates), cluster, {}), 777);
  // Every node takes its turn, in order, skipping the unhealthy.
  cluster.SetHealthy(500, false);
  auto round_robin = Make("round_robin");
  std::vector<int> picks;
  for (int i = 0; i < 2 * (kNodes - 1); ++i) {
    picks.push_back(round_robin->Pick(Request(i, 1), cluster, {}));
  }
  for (int i = 0; i < kNodes - 1; ++i) {
    EXPECT_EQ(picks[i], i < 500 ? i : i + 1);
    EXPECT_EQ(picks[i + kNodes - 1], picks[i]);
  }
  // Consistent hashing spreads users over all of them.
  std::map<int, int> per_node;
  auto hash = Make("consistent_hash");
  for (int64_t user = 0; user < 20000; ++user)
    ++per_node[hash->Pick(Request(user, 1), cluster, {})];
  EXPECT_GT(per_node.size(), 900u);
  EXPECT_EQ(per_node.count(500), 0u);
  // Least loaded finds the one idle node past the first word.
  for (int n = 0; n < kNodes; ++n) {
    if (n != 900) cluster.OnDispatch(n);
  }
  EXPECT_EQ(Make("least_loaded")->Pick(Request(1, 1), cluster, {}), 900);
}

}  // namespace
}  // namespace helm::route
