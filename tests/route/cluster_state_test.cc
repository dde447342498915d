#include "helm/route/cluster_state.h"

#include <random>

#include "gtest/gtest.h"
#include "helm/common/bloom.h"

namespace helm::route {
namespace {

struct Event {
  int64_t user;
  int32_t tokens;
  uint64_t history_start = 0;  // 0: the node did not say
};

v1::NodeState Events(std::initializer_list<Event> events, bool snapshot = false) {
  v1::NodeState state;
  state.set_full_snapshot(snapshot);
  for (const Event& event : events) {
    v1::KvResidencyEvent* e = state.add_kv_events();
    e->set_user_id(event.user);
    e->set_cached_tokens(event.tokens);
    e->set_history_start(event.history_start);
  }
  return state;
}

v1::NodeState Summary(const BloomFilter& filter) {
  v1::NodeState state;
  state.mutable_emb_summary()->set_bits(filter.ToBytes());
  state.mutable_emb_summary()->set_num_hashes(filter.num_hashes());
  state.mutable_emb_summary()->set_seed(filter.seed());
  return state;
}

TEST(ClusterState, TracksKvResidencyPerNodeFromEvents) {
  ClusterState cluster;
  const int a = cluster.AddNode("a:1");
  const int b = cluster.AddNode("b:1");
  cluster.ApplyState(a, Events({{7, 100}, {8, 50}}));
  cluster.ApplyState(b, Events({{7, 30}}));
  std::array<int32_t, kMaxNodes> tokens;
  cluster.CachedTokens(7, &tokens);
  EXPECT_EQ(tokens[a], 100);
  EXPECT_EQ(tokens[b], 30);
  cluster.ApplyState(a, Events({{7, 0}}));  // dropped on a
  cluster.CachedTokens(7, &tokens);
  EXPECT_EQ(tokens[a], 0);
  EXPECT_EQ(tokens[b], 30);
  cluster.ApplyState(b, Events({{9, 5}}, /*snapshot=*/true));  // b's snapshot forgets user 7
  cluster.CachedTokens(7, &tokens);
  EXPECT_EQ(tokens[b], 0);
  cluster.CachedTokens(8, &tokens);
  EXPECT_EQ(tokens[a], 50);
  cluster.ForgetStreamedState(a);
  cluster.CachedTokens(8, &tokens);
  EXPECT_EQ(tokens[a], 0);
}

TEST(ClusterState, RepliesNoteResidencyAndLaterEventsOverrideIt) {
  ClusterState cluster;
  const int a = cluster.AddNode("a:1");
  const int b = cluster.AddNode("b:1");
  std::array<int32_t, kMaxNodes> tokens;
  cluster.NoteResidency(b, 9, 640, /*history_start=*/0);
  cluster.CachedTokens(9, &tokens);
  EXPECT_EQ(tokens[a], 0);
  EXPECT_EQ(tokens[b], 640);
  cluster.ApplyState(b, Events({{9, 320}}));  // the node trimmed the user's tail since
  cluster.CachedTokens(9, &tokens);
  EXPECT_EQ(tokens[b], 320);
  cluster.NoteResidency(b, 9, 0, 0);  // a reply from a node that holds nothing of the user
  cluster.CachedTokens(9, &tokens);
  EXPECT_EQ(tokens[b], 0);
}

TEST(ClusterState, KvCachedForAnotherHistoryStartOrALongerHistoryCountsNothing) {
  ClusterState cluster;
  const int a = cluster.AddNode("a:1");
  const int b = cluster.AddNode("b:1");
  constexpr uint64_t kOldStart = 0x1111, kNewStart = 0x2223;
  cluster.NoteResidency(a, 5, 800, kOldStart);
  cluster.NoteResidency(b, 5, 400, kNewStart);
  cluster.ApplyState(a, Events({{5, 900}}));  // stream updates keep the fingerprint
  std::array<int32_t, kMaxNodes> tokens;
  cluster.ReusableTokens(5, 1000, kNewStart, &tokens);
  EXPECT_EQ(tokens[a], 0);
  EXPECT_EQ(tokens[b], 400);
  cluster.ReusableTokens(5, 1000, kOldStart, &tokens);
  EXPECT_EQ(tokens[a], 900);
  EXPECT_EQ(tokens[b], 0);
  cluster.ReusableTokens(5, 1000, /*history_start=*/0, &tokens);  // unknown: no check
  EXPECT_EQ(tokens[a], 900);
  EXPECT_EQ(tokens[b], 400);
  // A node known only from a stream that carries no fingerprint is not ruled out.
  cluster.ApplyState(b, Events({{6, 300}}));
  cluster.ReusableTokens(6, 1000, kNewStart, &tokens);
  EXPECT_EQ(tokens[b], 300);
  // A history shorter than what a node holds cannot extend it.
  cluster.ReusableTokens(6, 299, kNewStart, &tokens);
  EXPECT_EQ(tokens[b], 0);
  cluster.CachedTokens(6, &tokens);  // as reported
  EXPECT_EQ(tokens[b], 300);
}

TEST(ClusterState, StreamEventsTeachTheCachedHistoryStart) {
  ClusterState cluster;
  const int a = cluster.AddNode("a:1");
  constexpr uint64_t kOldStart = 0x1111, kNewStart = 0x2223;
  // A snapshot (as after a router restart) already says where each cached history starts.
  cluster.ApplyState(a, Events({{5, 800, kOldStart}}, /*snapshot=*/true));
  std::array<int32_t, kMaxNodes> tokens;
  cluster.ReusableTokens(5, 1000, kNewStart, &tokens);
  EXPECT_EQ(tokens[a], 0);
  cluster.ReusableTokens(5, 1000, kOldStart, &tokens);
  EXPECT_EQ(tokens[a], 800);
  // The node rewrote the user's cache for a history starting elsewhere.
  cluster.ApplyState(a, Events({{5, 600, kNewStart}}));
  cluster.ReusableTokens(5, 1000, kNewStart, &tokens);
  EXPECT_EQ(tokens[a], 600);
  cluster.ReusableTokens(5, 1000, kOldStart, &tokens);
  EXPECT_EQ(tokens[a], 0);
  // An event without a fingerprint updates the length and keeps the one known.
  cluster.ApplyState(a, Events({{5, 640}}));
  cluster.ReusableTokens(5, 1000, kOldStart, &tokens);
  EXPECT_EQ(tokens[a], 0);
  cluster.ReusableTokens(5, 1000, kNewStart, &tokens);
  EXPECT_EQ(tokens[a], 640);
}

TEST(ClusterState, EmbCountsMatchEachNodesBloomFilter) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  ClusterState cluster;
  std::vector<BloomFilter> filters;
  for (int n = 0; n < 5; ++n) {
    cluster.AddNode("n" + std::to_string(n));
    filters.emplace_back(1 << 14, 2, 77);
    for (int64_t id = n * 100; id < n * 100 + 300; ++id) filters[n].Add(id);
    cluster.ApplyState(n, Summary(filters[n]));
  }
  std::mt19937_64 rng(seed);
  std::vector<int64_t> ids(64);
  for (auto& id : ids) id = static_cast<int64_t>(rng() % 1000);
  std::array<int32_t, kMaxNodes> counts{};
  cluster.EmbCounts(ids.data(), static_cast<int>(ids.size()), 0b11111, &counts);
  for (int n = 0; n < 5; ++n) {
    int expected = 0;
    for (int64_t id : ids) expected += filters[n].MayContain(id) ? 1 : 0;
    EXPECT_EQ(counts[n], expected) << "node " << n << " seed " << seed;
  }
  // A new summary replaces the old one: node 0 now holds nothing.
  cluster.ApplyState(0, Summary(BloomFilter(1 << 14, 2, 77)));
  counts.fill(0);
  cluster.EmbCounts(ids.data(), static_cast<int>(ids.size()), 0b11111, &counts);
  EXPECT_EQ(counts[0], 0);
}

TEST(ClusterState, IgnoresSummariesOfAnotherShape) {
  ClusterState cluster;
  cluster.AddNode("a");
  cluster.AddNode("b");
  BloomFilter small(1 << 10, 2, 1), big(1 << 12, 2, 1);
  small.Add(5);
  big.Add(5);
  cluster.ApplyState(0, Summary(small));
  cluster.ApplyState(1, Summary(big));
  std::array<int32_t, kMaxNodes> counts{};
  const int64_t id = 5;
  cluster.EmbCounts(&id, 1, 0b11, &counts);
  EXPECT_EQ(counts[0], 1);
  EXPECT_EQ(counts[1], 0);
}

TEST(ClusterState, LoadCountsRouterDispatchesAndNodeReports) {
  ClusterState cluster;
  const int n = cluster.AddNode("a");
  v1::NodeState state;
  state.mutable_load()->set_capacity(4);
  state.mutable_load()->set_in_flight(2);
  cluster.ApplyState(n, state);
  EXPECT_DOUBLE_EQ(cluster.Load(n), 2.0 / 8.0);
  for (int i = 0; i < 6; ++i) cluster.OnDispatch(n);
  EXPECT_DOUBLE_EQ(cluster.Load(n), 6.0 / 8.0);
  for (int i = 0; i < 6; ++i) cluster.OnComplete(n);
  EXPECT_DOUBLE_EQ(cluster.Load(n), 2.0 / 8.0);
  for (int i = 0; i < 100; ++i) cluster.OnDispatch(n);
  EXPECT_DOUBLE_EQ(cluster.Load(n), 1.0);
}

TEST(ClusterState, RoutableMeansHealthyAndNotDraining) {
  ClusterState cluster;
  for (int i = 0; i < 3; ++i) cluster.AddNode("n");
  EXPECT_EQ(cluster.RoutableMask(), 0u);
  cluster.SetHealthy(0, true);
  cluster.SetHealthy(2, true);
  EXPECT_EQ(cluster.RoutableMask(), 0b101u);
  v1::NodeState draining;
  draining.set_draining(true);
  cluster.ApplyState(2, draining);
  EXPECT_EQ(cluster.RoutableMask(), 0b001u);
}

TEST(ClusterState, HoldsAtMost64Nodes) {
  ClusterState cluster;
  for (int i = 0; i < kMaxNodes; ++i) EXPECT_EQ(cluster.AddNode("n"), i);
  EXPECT_EQ(cluster.AddNode("one too many"), -1);
}

}  // namespace
}  // namespace helm::route
