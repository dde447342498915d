#include "helm/route/node_set.h"

#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace helm::route {
namespace {

std::vector<int> Members(const NodeSet& set) {
  std::vector<int> members;
  set.ForEach([&](int node) { members.push_back(node); });
  return members;
}

TEST(NodeSet, HoldsNodesAcrossWords) {
  NodeSet set{0, 63, 64, 1023, 4095};
  EXPECT_EQ(set.Count(), 5);
  EXPECT_TRUE(set.Contains(1023));
  EXPECT_FALSE(set.Contains(1022));
  EXPECT_FALSE(set.Contains(100000));  // past its size: absent, not an error
  EXPECT_EQ(Members(set), (std::vector<int>{0, 63, 64, 1023, 4095}));
  set.Erase(64);
  set.Erase(5000);
  EXPECT_EQ(Members(set), (std::vector<int>{0, 63, 1023, 4095}));
  EXPECT_EQ(set.capacity(), 4096);
  set.Clear();
  EXPECT_EQ(set.Count(), 0);
  EXPECT_EQ(set, NodeSet());
  set.Insert(7);
  EXPECT_EQ(Members(set), (std::vector<int>{7}));
}

TEST(NodeSet, FirstNHoldsExactlyTheFirstNodes) {
  for (int n : {0, 1, 63, 64, 65, 1024}) {
    const NodeSet set = NodeSet::FirstN(n);
    EXPECT_EQ(set.Count(), n) << n;
    EXPECT_EQ(set.Contains(n - 1), n > 0) << n;
    EXPECT_FALSE(set.Contains(n)) << n;
  }
}

TEST(NodeSet, CombinesSetsOfDifferentSizesLikeStdSet) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 50; ++round) {
    std::set<int> a, b;
    NodeSet sa, sb;
    const int range_a = 1 + static_cast<int>(rng() % 1500);
    const int range_b = 1 + static_cast<int>(rng() % 1500);
    for (int i = 0; i < 40; ++i) {
      const int x = static_cast<int>(rng() % range_a), y = static_cast<int>(rng() % range_b);
      a.insert(x);
      sa.Insert(x);
      b.insert(y);
      sb.Insert(y);
    }
    std::vector<int> both, either, only_a;
    for (int x : a) (b.count(x) ? both : only_a).push_back(x);
    std::set<int> all = a;
    all.insert(b.begin(), b.end());
    either.assign(all.begin(), all.end());
    NodeSet and_set = sa, or_set = sa, minus_set = sa;
    and_set &= sb;
    or_set |= sb;
    minus_set.Subtract(sb);
    EXPECT_EQ(Members(and_set), both) << "seed " << seed;
    EXPECT_EQ(Members(or_set), either) << "seed " << seed;
    EXPECT_EQ(Members(minus_set), only_a) << "seed " << seed;
    EXPECT_EQ(sa.Count(), static_cast<int>(a.size()));
    // Nth walks the members in order.
    int k = 0;
    for (int x : a) EXPECT_EQ(sa.Nth(k++), x) << "seed " << seed;
    EXPECT_EQ(sa.Nth(k), -1);
  }
}

TEST(NodeSet, EqualityIgnoresTrailingEmptyWords) {
  NodeSet a{3}, b{3, 2000};
  EXPECT_NE(a, b);
  b.Erase(2000);
  EXPECT_EQ(a, b);
  EXPECT_EQ(NodeSet(), NodeSet::FirstN(0));
  EXPECT_TRUE(b.Subtract(NodeSet{3}).Empty());
}

}  // namespace
}  // namespace helm::route
