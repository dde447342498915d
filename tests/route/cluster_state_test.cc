#include "helm/route/cluster_state.h"

#include <cmath>
#include <random>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "helm/common/bloom.h"

namespace helm::route {
namespace {

struct Event {
  int64_t user;
  int32_t tokens;
  uint64_t history_start = 0;  // 0: the node did not say
};

NodeUpdate Events(std::initializer_list<Event> events, bool snapshot = false) {
  NodeUpdate update;
  update.full_snapshot = snapshot;
  for (const Event& event : events) {
    update.kv_events.push_back({event.user, event.tokens, event.history_start});
  }
  return update;
}

NodeUpdate Summary(const BloomFilter& filter) {
  NodeUpdate update;
  update.emb_summary = EmbSummaryUpdate{
      .bits = filter.ToBytes(), .num_hashes = filter.num_hashes(), .seed = filter.seed()};
  return update;
}

// Applies an update that must be accepted whole.
void Apply(ClusterState& cluster, int node, const NodeUpdate& update) {
  const absl::Status status = cluster.ApplyUpdate(node, update);
  EXPECT_TRUE(status.ok()) << status;
}

// How many of `ids` node `node` may hold by its summary in `cluster`.
int EmbCount(const ClusterState& cluster, int node, const std::vector<int64_t>& ids) {
  std::vector<int32_t> counts(cluster.num_nodes());
  cluster.EmbCounts(ids.data(), static_cast<int>(ids.size()), NodeSet{node},
                    absl::MakeSpan(counts));
  return counts[node];
}

TEST(ClusterState, TracksKvResidencyPerNodeFromEvents) {
  ClusterState cluster;
  const int a = cluster.AddNode("a:1");
  const int b = cluster.AddNode("b:1");
  Apply(cluster, a, Events({{7, 100}, {8, 50}}));
  Apply(cluster, b, Events({{7, 30}}));
  std::vector<int32_t> tokens;
  tokens = cluster.CachedTokens(7);
  EXPECT_EQ(tokens[a], 100);
  EXPECT_EQ(tokens[b], 30);
  Apply(cluster, a, Events({{7, 0}}));  // dropped on a
  tokens = cluster.CachedTokens(7);
  EXPECT_EQ(tokens[a], 0);
  EXPECT_EQ(tokens[b], 30);
  Apply(cluster, b, Events({{9, 5}}, /*snapshot=*/true));  // b's snapshot forgets user 7
  tokens = cluster.CachedTokens(7);
  EXPECT_EQ(tokens[b], 0);
  tokens = cluster.CachedTokens(8);
  EXPECT_EQ(tokens[a], 50);
  cluster.ForgetStreamedState(a);
  tokens = cluster.CachedTokens(8);
  EXPECT_EQ(tokens[a], 0);
}

TEST(ClusterState, RepliesNoteResidencyAndLaterEventsOverrideIt) {
  ClusterState cluster;
  const int a = cluster.AddNode("a:1");
  const int b = cluster.AddNode("b:1");
  std::vector<int32_t> tokens;
  cluster.NoteResidency(b, 9, 640, /*history_start=*/0);
  tokens = cluster.CachedTokens(9);
  EXPECT_EQ(tokens[a], 0);
  EXPECT_EQ(tokens[b], 640);
  Apply(cluster, b, Events({{9, 320}}));  // the node trimmed the user's tail since
  tokens = cluster.CachedTokens(9);
  EXPECT_EQ(tokens[b], 320);
  cluster.NoteResidency(b, 9, 0, 0);  // a reply from a node that holds nothing of the user
  tokens = cluster.CachedTokens(9);
  EXPECT_EQ(tokens[b], 0);
}

TEST(ClusterState, KvCachedForAnotherHistoryStartOrALongerHistoryCountsNothing) {
  ClusterState cluster;
  const int a = cluster.AddNode("a:1");
  const int b = cluster.AddNode("b:1");
  constexpr uint64_t kOldStart = 0x1111, kNewStart = 0x2223;
  cluster.NoteResidency(a, 5, 800, kOldStart);
  cluster.NoteResidency(b, 5, 400, kNewStart);
  Apply(cluster, a, Events({{5, 900}}));  // stream updates keep the fingerprint
  std::vector<int32_t> tokens;
  tokens = cluster.ReusableTokens(5, 1000, kNewStart);
  EXPECT_EQ(tokens[a], 0);
  EXPECT_EQ(tokens[b], 400);
  tokens = cluster.ReusableTokens(5, 1000, kOldStart);
  EXPECT_EQ(tokens[a], 900);
  EXPECT_EQ(tokens[b], 0);
  tokens = cluster.ReusableTokens(5, 1000, /*history_start=*/0);  // unknown: no check
  EXPECT_EQ(tokens[a], 900);
  EXPECT_EQ(tokens[b], 400);
  // A node known only from a stream that carries no fingerprint is not ruled out.
  Apply(cluster, b, Events({{6, 300}}));
  tokens = cluster.ReusableTokens(6, 1000, kNewStart);
  EXPECT_EQ(tokens[b], 300);
  // A history shorter than what a node holds cannot extend it.
  tokens = cluster.ReusableTokens(6, 299, kNewStart);
  EXPECT_EQ(tokens[b], 0);
  tokens = cluster.CachedTokens(6);  // as reported
  EXPECT_EQ(tokens[b], 300);
}

TEST(ClusterState, StreamEventsTeachTheCachedHistoryStart) {
  ClusterState cluster;
  const int a = cluster.AddNode("a:1");
  constexpr uint64_t kOldStart = 0x1111, kNewStart = 0x2223;
  // A snapshot (as after a router restart) already says where each cached history starts.
  Apply(cluster, a, Events({{5, 800, kOldStart}}, /*snapshot=*/true));
  std::vector<int32_t> tokens;
  tokens = cluster.ReusableTokens(5, 1000, kNewStart);
  EXPECT_EQ(tokens[a], 0);
  tokens = cluster.ReusableTokens(5, 1000, kOldStart);
  EXPECT_EQ(tokens[a], 800);
  // The node rewrote the user's cache for a history starting elsewhere.
  Apply(cluster, a, Events({{5, 600, kNewStart}}));
  tokens = cluster.ReusableTokens(5, 1000, kNewStart);
  EXPECT_EQ(tokens[a], 600);
  tokens = cluster.ReusableTokens(5, 1000, kOldStart);
  EXPECT_EQ(tokens[a], 0);
  // An event without a fingerprint updates the length and keeps the one known.
  Apply(cluster, a, Events({{5, 640}}));
  tokens = cluster.ReusableTokens(5, 1000, kOldStart);
  EXPECT_EQ(tokens[a], 0);
  tokens = cluster.ReusableTokens(5, 1000, kNewStart);
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
    Apply(cluster, n, Summary(filters[n]));
  }
  std::mt19937_64 rng(seed);
  std::vector<int64_t> ids(64);
  for (auto& id : ids) id = static_cast<int64_t>(rng() % 1000);
  std::vector<int32_t> counts(5);
  cluster.EmbCounts(ids.data(), static_cast<int>(ids.size()), NodeSet::FirstN(5),
                    absl::MakeSpan(counts));
  for (int n = 0; n < 5; ++n) {
    int expected = 0;
    for (int64_t id : ids) expected += filters[n].MayContain(id) ? 1 : 0;
    EXPECT_EQ(counts[n], expected) << "node " << n << " seed " << seed;
  }
  // A new summary replaces the old one: node 0 now holds nothing.
  Apply(cluster, 0, Summary(BloomFilter(1 << 14, 2, 77)));
  EXPECT_EQ(EmbCount(cluster, 0, ids), 0);
  // Only the nodes asked about are counted.
  counts.assign(5, 0);
  cluster.EmbCounts(ids.data(), static_cast<int>(ids.size()), NodeSet{3}, absl::MakeSpan(counts));
  EXPECT_EQ(counts[1], 0);
  EXPECT_EQ(counts[3], EmbCount(cluster, 3, ids));
}

TEST(ClusterState, EmbCountsStayExactBeyond1024NodesAsTheClusterGrows) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  std::mt19937_64 rng(seed);
  constexpr int kNodes = 1100;
  ClusterState cluster;
  std::vector<BloomFilter> filters;
  std::vector<int64_t> ids(32);
  for (auto& id : ids) id = static_cast<int64_t>(rng() % 5000);
  // Nodes join one by one and publish at once, so the sliced table widens several times (1, 2,
  // 4, ... words per bit) with summaries already in it.
  for (int n = 0; n < kNodes; ++n) {
    ASSERT_EQ(cluster.AddNode("n" + std::to_string(n)), n);
    filters.emplace_back(1 << 10, 3, 5);
    for (int i = 0; i < 40; ++i) filters[n].Add(static_cast<int64_t>(rng() % 5000));
    if (n % 7 == 0) filters[n].Add(ids[0]);
    Apply(cluster, n, Summary(filters[n]));
  }
  std::vector<int32_t> counts(kNodes, 0);
  cluster.EmbCounts(ids.data(), static_cast<int>(ids.size()), NodeSet::FirstN(kNodes),
                    absl::MakeSpan(counts));
  for (int n = 0; n < kNodes; ++n) {
    int expected = 0;
    for (int64_t id : ids) expected += filters[n].MayContain(id) ? 1 : 0;
    ASSERT_EQ(counts[n], expected) << "node " << n << " seed " << seed;
  }
  // Forgetting one node far out clears only its bits.
  cluster.ForgetStreamedState(1050);
  EXPECT_FALSE(cluster.has_emb_summary(1050));
  EXPECT_EQ(EmbCount(cluster, 1050, ids), 0);
  EXPECT_EQ(EmbCount(cluster, 1049, ids), counts[1049]) << "seed " << seed;
}

TEST(ClusterState, RejectsSummariesOfAnotherShapeAndKeepsThePreviousOne) {
  ClusterState cluster;
  cluster.AddNode("a");
  cluster.AddNode("b");
  BloomFilter small_a(1 << 10, 2, 1), small_b(1 << 10, 2, 1);
  small_a.Add(5);
  small_b.Add(5);
  Apply(cluster, 0, Summary(small_a));
  Apply(cluster, 1, Summary(small_b));
  const std::vector<int64_t> id = {5};
  ASSERT_EQ(EmbCount(cluster, 1, id), 1);
  // Node 1 now publishes another size, then another seed, then another hash count: each is
  // rejected and node 1 keeps the summary it had.
  for (const BloomFilter& other :
       {BloomFilter(1 << 12, 2, 1), BloomFilter(1 << 10, 2, 9), BloomFilter(1 << 10, 3, 1)}) {
    const absl::Status status = cluster.ApplyUpdate(1, Summary(other));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_EQ(EmbCount(cluster, 1, id), 1);
    EXPECT_TRUE(cluster.has_emb_summary(1));
  }
  EXPECT_EQ(EmbCount(cluster, 0, id), 1);
}

TEST(ClusterState, RejectsSummariesWithTooManyOrNoHashesAndKeepsThePreviousOne) {
  ClusterState cluster;
  const int a = cluster.AddNode("a");
  BloomFilter filter(1 << 10, 2, 1);
  filter.Add(5);
  NodeUpdate bad = Summary(BloomFilter(1 << 10, 2, 1));
  // Before any summary: a bad one neither applies nor fixes the cluster's shape.
  bad.emb_summary->num_hashes = 17;
  EXPECT_EQ(cluster.ApplyUpdate(a, bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(cluster.has_emb_summary(a));
  Apply(cluster, a, Summary(filter));
  const std::vector<int64_t> id = {5};
  ASSERT_EQ(EmbCount(cluster, a, id), 1);
  for (int hashes : {kMaxEmbHashes + 1, 64, 1 << 30, 0, -3}) {
    bad.emb_summary->num_hashes = hashes;
    const absl::Status status = cluster.ApplyUpdate(a, bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << hashes;
    EXPECT_NE(status.message().find("num_hashes"), std::string::npos) << status;
    EXPECT_EQ(EmbCount(cluster, a, id), 1) << hashes;  // and routing still reads it safely
  }
}

TEST(ClusterState, RejectsBitsetsThatAreNotAPowerOfTwoOfWords) {
  ClusterState cluster;
  const int a = cluster.AddNode("a");
  BloomFilter filter(1 << 10, 2, 1);
  filter.Add(5);
  NodeUpdate bad = Summary(filter);
  for (size_t bytes : {size_t{0}, size_t{12}, size_t{8 * 3}, size_t{8 * 48}}) {
    bad.emb_summary->bits.assign(bytes, '\xff');
    EXPECT_EQ(cluster.ApplyUpdate(a, bad).code(), absl::StatusCode::kInvalidArgument) << bytes;
    EXPECT_FALSE(cluster.has_emb_summary(a)) << bytes;
  }
  Apply(cluster, a, Summary(filter));
  const std::vector<int64_t> id = {5}, other = {6};
  ASSERT_EQ(EmbCount(cluster, a, id), 1);
  // An all-ones bitset of the wrong size would claim every id; rejected, it claims none.
  bad.emb_summary->bits.assign(filter.ToBytes().size() + 8, '\xff');
  EXPECT_EQ(cluster.ApplyUpdate(a, bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbCount(cluster, a, id), 1);
  EXPECT_EQ(EmbCount(cluster, a, other), filter.MayContain(6) ? 1 : 0);
}

TEST(ClusterState, AppliesTheRestOfAnUpdateWhoseSummaryIsRejected) {
  ClusterState cluster;
  const int a = cluster.AddNode("a");
  NodeUpdate update = Events({{3, 70}});
  update.load = NodeLoadUpdate{.in_flight = 3, .capacity = 2};
  update.committed_split = 0.4;
  update.emb_summary = EmbSummaryUpdate{.bits = std::string(64, '\0'), .num_hashes = 99};
  EXPECT_EQ(cluster.ApplyUpdate(a, update).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cluster.CachedTokens(3)[a], 70);
  EXPECT_DOUBLE_EQ(cluster.Load(a), 3.0 / 4.0);
  EXPECT_DOUBLE_EQ(cluster.committed_split(a), 0.4);
}

TEST(ClusterState, LoadCountsRouterDispatchesAndNodeReports) {
  ClusterState cluster;
  const int n = cluster.AddNode("a");
  NodeUpdate state;
  state.load = NodeLoadUpdate{.in_flight = 2, .capacity = 4};
  Apply(cluster, n, state);
  EXPECT_DOUBLE_EQ(cluster.Load(n), 2.0 / 8.0);
  for (int i = 0; i < 6; ++i) cluster.OnDispatch(n);
  EXPECT_DOUBLE_EQ(cluster.Load(n), 6.0 / 8.0);
  for (int i = 0; i < 6; ++i) cluster.OnComplete(n);
  EXPECT_DOUBLE_EQ(cluster.Load(n), 2.0 / 8.0);
  for (int i = 0; i < 100; ++i) cluster.OnDispatch(n);
  EXPECT_DOUBLE_EQ(cluster.Load(n), 1.0);
  cluster.ForgetStreamedState(n);  // the node's own report goes with its stream
  for (int i = 0; i < 100; ++i) cluster.OnComplete(n);
  EXPECT_DOUBLE_EQ(cluster.Load(n), 0.0);
}

TEST(ClusterState, StoresKvMemoryPressureFromLoadReportsUntilTheStreamIsForgotten) {
  ClusterState cluster;
  const int n = cluster.AddNode("a");
  EXPECT_DOUBLE_EQ(cluster.kv_occupancy(n), 0.0);
  NodeUpdate state;
  state.load = NodeLoadUpdate{.capacity = 4, .kv_occupancy = 0.75, .kv_eviction_rate = 0.125};
  Apply(cluster, n, state);
  EXPECT_DOUBLE_EQ(cluster.kv_occupancy(n), 0.75);
  EXPECT_DOUBLE_EQ(cluster.kv_eviction_rate(n), 0.125);
  Apply(cluster, n, NodeUpdate{});  // no load: unchanged
  EXPECT_DOUBLE_EQ(cluster.kv_occupancy(n), 0.75);
  // Out-of-range reports are kept in range: occupancy in [0, 1], eviction rate finite and >= 0.
  state.load = NodeLoadUpdate{.kv_occupancy = 1.5, .kv_eviction_rate = -1};
  Apply(cluster, n, state);
  EXPECT_DOUBLE_EQ(cluster.kv_occupancy(n), 1.0);
  EXPECT_DOUBLE_EQ(cluster.kv_eviction_rate(n), 0.0);
  state.load = NodeLoadUpdate{.kv_occupancy = std::nan(""), .kv_eviction_rate = std::nan("")};
  Apply(cluster, n, state);
  EXPECT_DOUBLE_EQ(cluster.kv_occupancy(n), 0.0);
  EXPECT_DOUBLE_EQ(cluster.kv_eviction_rate(n), 0.0);
  state.load = NodeLoadUpdate{.kv_occupancy = 0.5, .kv_eviction_rate = 0.5};
  Apply(cluster, n, state);
  cluster.ForgetStreamedState(n);
  EXPECT_DOUBLE_EQ(cluster.kv_occupancy(n), 0.0);
  EXPECT_DOUBLE_EQ(cluster.kv_eviction_rate(n), 0.0);
}

TEST(ClusterState, NewUserPlacementsHalveOnceAWindowOfThemIsMade) {
  ClusterState cluster;
  cluster.AddNode("a");
  cluster.AddNode("b");
  const int window = 2 * ClusterState::kPlacementWindowPerNode;
  for (int i = 0; i < window - 2; ++i) cluster.OnPlaced(0);
  cluster.OnPlaced(1);
  EXPECT_EQ(cluster.recent_placements(0), window - 2);
  EXPECT_EQ(cluster.recent_placements(1), 1);
  cluster.OnPlaced(1);  // the window's last placement
  EXPECT_EQ(cluster.recent_placements(0), (window - 2) / 2);
  EXPECT_EQ(cluster.recent_placements(1), 1);
  // The next window counts afresh.
  for (int i = 0; i < window - 1; ++i) cluster.OnPlaced(1);
  EXPECT_EQ(cluster.recent_placements(1), 1 + window - 1);
  cluster.OnPlaced(1);
  EXPECT_EQ(cluster.recent_placements(0), (window - 2) / 4);
  EXPECT_EQ(cluster.recent_placements(1), (1 + window) / 2);
}

TEST(ClusterState, RoutableMeansHealthyAndNotDraining) {
  ClusterState cluster;
  for (int i = 0; i < 3; ++i) cluster.AddNode("n");
  EXPECT_TRUE(cluster.Routable().Empty());
  cluster.SetHealthy(0, true);
  cluster.SetHealthy(2, true);
  EXPECT_EQ(cluster.Routable(), (NodeSet{0, 2}));
  NodeUpdate draining;
  draining.draining = true;
  Apply(cluster, 2, draining);
  EXPECT_EQ(cluster.Routable(), NodeSet{0});
  EXPECT_TRUE(cluster.draining(2));
}

TEST(ClusterState, HoldsUpToKMaxNodes) {
  ClusterState cluster;
  for (int i = 0; i < kMaxNodes; ++i) ASSERT_EQ(cluster.AddNode("n" + std::to_string(i)), i);
  EXPECT_EQ(cluster.AddNode("one too many"), -1);
  EXPECT_EQ(cluster.address(kMaxNodes - 1), "n" + std::to_string(kMaxNodes - 1));
  for (int i = 0; i < kMaxNodes; i += 3) cluster.SetHealthy(i, true);
  const NodeSet routable = cluster.Routable();
  EXPECT_EQ(routable.Count(), (kMaxNodes + 2) / 3);
  ASSERT_EQ((kMaxNodes - 1) % 3, 0);
  EXPECT_TRUE(routable.Contains(kMaxNodes - 1));
  EXPECT_FALSE(routable.Contains(kMaxNodes - 2));
}

}  // namespace
}  // namespace helm::route
