#include "helm/route/policy.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <random>

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

TEST(HelmPolicy, KvThatSparesLittleOfTheRequestDoesNotBindTheUser) {
  // 256 candidates and a 100-event history: 356 token passes, 10% of them is 35.6 tokens.
  std::vector<int64_t> candidates(256);
  for (int i = 0; i < 256; ++i) candidates[i] = 1000 + i;
  for (const int32_t tokens : {20, 60}) {
    SCOPED_TRACE(tokens);
    ClusterState cluster;
    AddHealthyNodes(cluster, 2);
    Resident(cluster, 0, 42, tokens);
    cluster.OnPlaced(0);  // node 0 took the last new user: the next one is node 1's
    const RouteDecision d = Make("helm")->Decide(Request(42, 100, &candidates), cluster, {});
    if (tokens < 36) {
      // 20 tokens spare 5.6%: the user is placed as a new one, by the bound.
      EXPECT_EQ(d.node, 1);
      EXPECT_TRUE(d.new_user);
    } else {
      EXPECT_EQ(d.node, 0);  // 60 tokens spare 16.9%: the K/V binds
      EXPECT_FALSE(d.new_user);
    }
    // With kv_min_share 0 any K/V binds.
    RouterOptions any = Options("helm");
    any.kv_min_share = 0;
    auto policy = CreatePolicy(any);
    ASSERT_TRUE(policy.ok());
    EXPECT_EQ((*policy)->Pick(Request(42, 100, &candidates), cluster, {}), 0);
  }
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

// Node n publishes an EMB summary holding held[n].
void PublishEmbSummaries(ClusterState& cluster, const std::vector<std::vector<int64_t>>& held) {
  for (size_t n = 0; n < held.size(); ++n) {
    BloomFilter filter(1 << 14, 2, 3);
    for (int64_t id : held[n]) filter.Add(id);
    NodeUpdate state;
    state.emb_summary = EmbSummaryUpdate{.bits = filter.ToBytes(), .num_hashes = 2, .seed = 3};
    ASSERT_TRUE(cluster.ApplyUpdate(static_cast<int>(n), state).ok());
  }
}

TEST(HelmPolicy, UsesEmbLocalityBetweenOtherwiseEqualNodes) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 3);
  std::vector<int64_t> candidates;
  for (int64_t i = 0; i < 64; ++i) candidates.push_back(1000 + i);
  PublishEmbSummaries(cluster, {{}, candidates, {}});
  auto policy = Make("helm");
  for (int64_t user = 0; user < 20; ++user) {
    EXPECT_EQ(policy->Pick(Request(user, 100, &candidates), cluster, {}), 1) << user;
  }
}

// A caller may pick the ids the EMB term reads (the simulator's sampling EMB caches): the policy
// reads those, not its own sample of the candidates.
TEST(HelmPolicy, ReadsTheEmbIdsTheCallerPickedInsteadOfItsOwnSample) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 3);
  std::vector<int64_t> candidates;
  for (int64_t i = 0; i < 64; ++i) candidates.push_back(1000 + i);
  const std::vector<int64_t> picked = {5, 6, 7};
  // Node 1 holds every candidate, node 2 the picked ids only.
  PublishEmbSummaries(cluster, {{}, candidates, picked});
  auto policy = Make("helm");
  for (int64_t user = 0; user < 20; ++user) {
    RouteRequest request = Request(user, 100, &candidates);
    EXPECT_EQ(policy->Pick(request, cluster, {}), 1) << user;
    request.emb_ids = picked.data();
    request.num_emb_ids = static_cast<int32_t>(picked.size());
    EXPECT_EQ(policy->Pick(request, cluster, {}), 2) << user;
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

uint64_t Seed() {
  return static_cast<uint64_t>(::testing::UnitTest::GetInstance()->random_seed()) + 15u;
}

void PublishSummary(ClusterState& cluster, int node, const std::vector<int64_t>& ids) {
  BloomFilter filter(1 << 14, 2, 3);
  for (int64_t id : ids) filter.Add(id);
  NodeUpdate state;
  state.emb_summary = EmbSummaryUpdate{.bits = filter.ToBytes(), .num_hashes = 2, .seed = 3};
  ASSERT_TRUE(cluster.ApplyUpdate(node, state).ok());
}

void ReportKvPressure(ClusterState& cluster, int node, double occupancy, double eviction_rate,
                      int in_flight = 0) {
  NodeUpdate state;
  state.load = NodeLoadUpdate{.in_flight = in_flight,
                              .capacity = 4,
                              .kv_occupancy = occupancy,
                              .kv_eviction_rate = eviction_rate};
  ASSERT_TRUE(cluster.ApplyUpdate(node, state).ok());
}

enum class Summaries { kNone, kOneNodeHoldsEveryCandidate, kRandom };

TEST(HelmPolicy, PlacesNewUsersWithinTheBoundWhateverEmbSummariesTheNodesPublish) {
  const RouterOptions options = Options("helm");
  const double slack = options.placement_slack;
  for (const int nodes : {2, 4, 32}) {
    for (const Summaries summaries :
         {Summaries::kNone, Summaries::kOneNodeHoldsEveryCandidate, Summaries::kRandom}) {
      const uint64_t seed = Seed() + nodes * 7 + static_cast<int>(summaries);
      SCOPED_TRACE(testing::Message() << nodes << " nodes, summaries "
                                      << static_cast<int>(summaries) << ", seed " << seed);
      std::mt19937_64 rng(seed);
      ClusterState cluster;
      AddHealthyNodes(cluster, nodes);
      std::vector<int64_t> pool;  // every candidate any request carries
      for (int64_t i = 0; i < 512; ++i) pool.push_back(100000 + i);
      const int favourite = static_cast<int>(rng() % nodes);
      for (int n = 0; n < nodes; ++n) {
        std::vector<int64_t> held;
        if (summaries == Summaries::kOneNodeHoldsEveryCandidate && n == favourite) held = pool;
        if (summaries == Summaries::kRandom) {
          const double density = std::uniform_real_distribution<double>(0, 1)(rng);
          for (int64_t id : pool) {
            if (std::uniform_real_distribution<double>(0, 1)(rng) < density) held.push_back(id);
          }
        }
        if (summaries != Summaries::kNone) PublishSummary(cluster, n, held);
      }
      auto policy = CreatePolicy(options).value();
      // Several decay windows' worth of new users, each with its own candidates.
      const int users = 3 * ClusterState::kPlacementWindowPerNode * nodes;
      std::vector<int> placed(nodes, 0);
      std::vector<int64_t> candidates(64);
      for (int u = 0; u < users; ++u) {
        for (int64_t& id : candidates) id = pool[rng() % pool.size()];
        const RouteDecision decision = policy->Decide(
            Request(static_cast<int64_t>(rng() >> 1), 100, &candidates), cluster, {});
        ASSERT_GE(decision.node, 0);
        ASSERT_TRUE(decision.new_user);
        // The bound: recent placements + 1 <= ceil((1 + slack) x (all recent + 1) / nodes).
        int64_t recent = 0;
        for (int n = 0; n < nodes; ++n) recent += cluster.recent_placements(n);
        ASSERT_LE(cluster.recent_placements(decision.node) + 1,
                  std::ceil((1 + slack) * static_cast<double>(recent + 1) / nodes))
            << "user " << u;
        cluster.OnPlaced(decision.node);
        ++placed[decision.node];
      }
      // Over the whole run too, no node takes much more than (1 + slack) x its fair share.
      const int most = *std::max_element(placed.begin(), placed.end());
      EXPECT_LE(most, std::ceil((1 + slack) * users / nodes) + 2);
      if (nodes == 2) {
        EXPECT_LE(static_cast<double>(most) / users, 0.6);
      }
    }
  }
}

TEST(HelmPolicy, SessionTrafficOnTwoNodesDoesNotHerdOntoTheWarmerEmbCache) {
  // The replay in miniature: users come in sessions (a new user's first request places
  // it, the rest of the session follows its K/V), and node 1's EMB cache holds every candidate.
  std::mt19937_64 rng(Seed());
  SCOPED_TRACE(testing::Message() << "seed " << Seed());
  ClusterState cluster;
  AddHealthyNodes(cluster, 2);
  std::vector<int64_t> candidates;
  for (int64_t i = 0; i < 64; ++i) candidates.push_back(9000 + i);
  PublishSummary(cluster, 0, {});
  PublishSummary(cluster, 1, candidates);
  auto policy = Make("helm");
  std::array<int, 2> replies{};
  std::geometric_distribution<int> extra_requests(0.25);  // sessions of 4 requests on average
  for (int u = 0; u < 600; ++u) {
    const int64_t user = static_cast<int64_t>(rng() >> 1);
    int32_t history = 20 + static_cast<int32_t>(rng() % 200);
    const int requests = 1 + extra_requests(rng);
    for (int r = 0; r < requests; ++r, history += 3) {
      const RouteDecision decision =
          policy->Decide(Request(user, history, &candidates), cluster, {});
      ASSERT_GE(decision.node, 0);
      ASSERT_EQ(decision.new_user, r == 0);
      cluster.OnDispatch(decision.node);
      if (decision.new_user) cluster.OnPlaced(decision.node);
      cluster.OnComplete(decision.node);
      cluster.NoteResidency(decision.node, user, history, 0);  // the reply's resident_tokens
      ++replies[decision.node];
    }
  }
  const double largest_share =
      static_cast<double>(std::max(replies[0], replies[1])) / (replies[0] + replies[1]);
  EXPECT_LE(largest_share, 0.6) << replies[0] << " vs " << replies[1];
}

TEST(HelmPolicy, NodeWithAFullEvictingKvCacheReceivesFewerNewUsersThanAnIdlePeer) {
  std::mt19937_64 rng(Seed());
  ClusterState cluster;
  AddHealthyNodes(cluster, 2);
  ReportKvPressure(cluster, 0, /*occupancy=*/1.0, /*eviction_rate=*/0.2);
  ReportKvPressure(cluster, 1, /*occupancy=*/0.3, /*eviction_rate=*/0.0);
  // Even with the full node's EMB cache holding every candidate.
  std::vector<int64_t> candidates;
  for (int64_t i = 0; i < 64; ++i) candidates.push_back(5000 + i);
  PublishSummary(cluster, 0, candidates);
  PublishSummary(cluster, 1, {});
  auto policy = Make("helm");
  std::array<int, 2> placed{};
  for (int u = 0; u < 400; ++u) {
    const RouteDecision decision =
        policy->Decide(Request(static_cast<int64_t>(rng() >> 1), 100, &candidates), cluster, {});
    ASSERT_GE(decision.node, 0);
    ASSERT_TRUE(decision.new_user);
    cluster.OnPlaced(decision.node);
    ++placed[decision.node];
  }
  EXPECT_LT(placed[0], placed[1]);
  // Its share follows its headroom (the floor of 0.05 against 1, with the slack): a few percent.
  EXPECT_LE(placed[0], 400 / 10) << placed[0] << " vs " << placed[1];
  // Once the peer is as full, both take new users again, within the bound.
  ReportKvPressure(cluster, 1, 1.0, 0.2);
  placed = {};
  for (int u = 0; u < 400; ++u) {
    const int node =
        policy->Pick(Request(static_cast<int64_t>(rng() >> 1), 100, &candidates), cluster, {});
    ASSERT_GE(node, 0);
    cluster.OnPlaced(node);
    ++placed[node];
  }
  EXPECT_GT(placed[0], 400 / 3) << placed[0] << " vs " << placed[1];
  EXPECT_GT(placed[1], 400 / 3) << placed[0] << " vs " << placed[1];
}

TEST(HelmPolicy, MemoryPressureRepelsNewUsersInTheScoreLikeAQueue) {
  // No placements recorded (every node within its bound): the score alone decides.
  ClusterState cluster;
  AddHealthyNodes(cluster, 2);
  ReportKvPressure(cluster, 0, 0.95, 0.05);
  auto policy = Make("helm");
  for (int64_t user = 0; user < 50; ++user) {
    EXPECT_EQ(policy->Pick(Request(user, 100), cluster, {}), 1) << user;
  }
  // Below the knee and not evicting: no pressure, users spread by hash again.
  ReportKvPressure(cluster, 0, 0.5, 0.0);
  std::array<int, 2> picks{};
  for (int64_t user = 0; user < 50; ++user) ++picks[policy->Pick(Request(user, 100), cluster, {})];
  EXPECT_GT(picks[0], 10);
  EXPECT_GT(picks[1], 10);
}

TEST(HelmPolicy, ReturningUserStaysOnItsKvNodeUnderModerateLoadAndMemoryPressure) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 2);
  std::vector<int64_t> candidates;
  for (int64_t i = 0; i < 64; ++i) candidates.push_back(7000 + i);
  // Node 0 holds 900 of the user's 1000 events, is 3/8 loaded and its KV cache full and
  // evicting; node 1 is idle and its EMB cache holds every candidate.
  Resident(cluster, 0, 42, 900);
  ReportKvPressure(cluster, 0, 1.0, 0.2, /*in_flight=*/3);
  PublishSummary(cluster, 0, {});
  PublishSummary(cluster, 1, candidates);
  auto policy = Make("helm");
  const RouteDecision decision = policy->Decide(Request(42, 1000, &candidates), cluster, {});
  EXPECT_EQ(decision.node, 0);
  EXPECT_FALSE(decision.new_user);
  // Really overloaded (every slot and as many queued), it gives the user up.
  ReportKvPressure(cluster, 0, 1.0, 0.2, /*in_flight=*/8);
  EXPECT_EQ(policy->Pick(Request(42, 1000, &candidates), cluster, {}), 1);
}

TEST(KvAffinityPolicy, SaysWhenItPlacesAUserWithNoKvAnywhere) {
  ClusterState cluster;
  AddHealthyNodes(cluster, 3);
  Resident(cluster, 2, 77, 10);
  auto policy = Make("kv_affinity");
  EXPECT_FALSE(policy->Decide(Request(77, 100), cluster, {}).new_user);
  EXPECT_TRUE(policy->Decide(Request(78, 100), cluster, {}).new_user);
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
