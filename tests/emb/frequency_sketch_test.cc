// The admission filter's sketch: a count-min estimate never falls below an id's true count (until
// the counters saturate), stays close to it when the sketch is several times the distinct ids,
// halves exactly when aged, and ages a slice at a time.
#include "helm/emb/frequency_sketch.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace helm::emb {
namespace {

uint64_t Seed() { return ::testing::UnitTest::GetInstance()->random_seed(); }

TEST(FrequencySketch, EstimatesNeverUnderCountAndStayClose) {
  constexpr int kIds = 4000;
  FrequencySketch sketch(4 * kIds);
  EXPECT_GE(sketch.size(), 4u * kIds);
  std::mt19937_64 rng(Seed());
  // Skewed counts: id i is seen about 200 / (i + 1) times (at least once).
  std::vector<int> truth(kIds);
  for (int i = 0; i < kIds; ++i) truth[i] = std::max(1, 200 / (i + 1));
  std::vector<int64_t> stream;
  for (int i = 0; i < kIds; ++i) stream.insert(stream.end(), truth[i], 1'000'003LL * i + 7);
  std::shuffle(stream.begin(), stream.end(), rng);
  for (int64_t id : stream) sketch.Increment(id, 1);
  double over = 0;
  for (int i = 0; i < kIds; ++i) {
    const int est = sketch.Estimate(1'000'003LL * i + 7);
    ASSERT_GE(est, std::min(truth[i], 255)) << "id " << i << " seed " << Seed();
    over += est - std::min(truth[i], 255);
  }
  // With 16 counters per distinct id, collisions add little.
  EXPECT_LT(over / kIds, 0.25) << "seed " << Seed();
  EXPECT_EQ(sketch.Estimate(-5), 0) << "an id never seen (most likely)";
}

TEST(FrequencySketch, ConservativeUpdateSaturatesAt255) {
  FrequencySketch sketch(1024);
  sketch.Increment(42, 200);
  EXPECT_EQ(sketch.Estimate(42), 200);
  sketch.Increment(42, 100);
  EXPECT_EQ(sketch.Estimate(42), 255);
}

TEST(FrequencySketch, HalvingHalvesEveryEstimateASliceAtATime) {
  FrequencySketch sketch(1 << 12);
  EXPECT_FALSE(sketch.halving());
  std::vector<uint8_t> before;
  for (int64_t id = 0; id < 300; ++id) sketch.Increment(id, 1 + id % 50);
  for (int64_t id = 0; id < 300; ++id) before.push_back(sketch.Estimate(id));
  sketch.StartHalving();
  EXPECT_TRUE(sketch.halving());
  size_t slices = 0;
  while (sketch.halving()) {
    sketch.HalveSlice(1000);
    ++slices;
  }
  EXPECT_EQ(slices, (sketch.size() + 999) / 1000);
  for (int64_t id = 0; id < 300; ++id) {
    EXPECT_EQ(sketch.Estimate(id), before[id] >> 1) << "id " << id;
  }
  // A new period first finishes the last one's halving.
  sketch.StartHalving();
  sketch.HalveSlice(10);
  sketch.StartHalving();
  sketch.HalveSlice(sketch.size());
  for (int64_t id = 0; id < 300; ++id) EXPECT_EQ(sketch.Estimate(id), before[id] >> 3);
}

}  // namespace
}  // namespace helm::emb
