#include "helm/common/bloom.h"

#include <random>

#include "gtest/gtest.h"

namespace helm {
namespace {

TEST(BloomFilter, HasNoFalseNegativesAndFewFalsePositives) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  std::mt19937_64 rng(seed);
  BloomFilter filter(1 << 20, 2, seed);
  std::vector<int64_t> added(50000);
  for (auto& id : added) {
    id = static_cast<int64_t>(rng() >> 1);
    filter.Add(id);
  }
  for (int64_t id : added) ASSERT_TRUE(filter.MayContain(id)) << id << " seed " << seed;
  int false_positives = 0;
  for (int i = 0; i < 100000; ++i) false_positives += filter.MayContain(-1 - i) ? 1 : 0;
  // k = 2, n/m = 0.048: expected rate (1 - e^{-2 * 0.048})^2 = 0.8%.
  EXPECT_LT(false_positives, 2000) << "seed " << seed;
}

TEST(BloomFilter, SurvivesTheWireFormat) {
  BloomFilter filter(4096, 3, 99);
  for (int64_t id = 0; id < 300; ++id) filter.Add(id * 7);
  const BloomFilter copy = BloomFilter::FromBytes(filter.ToBytes(), 3, 99);
  EXPECT_EQ(copy.bits(), 4096);
  for (int64_t id = 0; id < 300; ++id) EXPECT_TRUE(copy.MayContain(id * 7));
  EXPECT_EQ(copy.ToBytes(), filter.ToBytes());
}

TEST(BloomFilter, SizeRoundsUpToAPowerOfTwo) {
  EXPECT_EQ(BloomFilter(1000, 2, 1).bits(), 1024);
  EXPECT_EQ(BloomFilter(1, 2, 1).bits(), 64);
}

}  // namespace
}  // namespace helm
