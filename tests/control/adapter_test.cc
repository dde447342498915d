#include "helm/control/adapter.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace helm::control {
namespace {

uint64_t Seed() { return ::testing::UnitTest::GetInstance()->random_seed() + 1301u; }

// A node in one dimension: a restoring base policy that steers the split toward `preferred` (it
// proposes half the distance, capped at 0.1), plus the adapter's correction; the reward is best
// at `best` and falls quadratically, with noise. Returns the mean reward of the last `judge`
// windows.
struct Plant {
  double preferred = 0.3;
  double best = 0.6;
  double noise = 0.05;
  double split = 0.3;

  double Reward(std::mt19937_64& rng) const {
    std::normal_distribution<double> n(0, noise);
    return -8 * (split - best) * (split - best) + n(rng);
  }
  void Step(double u) {
    const double base = std::clamp(0.5 * (preferred - split), -0.1, 0.1);
    split = std::clamp(split + base + u, 0.1, 0.9);
  }
};

double RunPlant(ResidualAdapter* adapter, Plant& plant, int windows, int judge, uint64_t seed) {
  std::mt19937_64 rng(seed);
  double reward = plant.Reward(rng), sum = 0;
  for (int i = 0; i < windows; ++i) {
    const double u = adapter ? adapter->Update(reward, true) : 0.0;
    plant.Step(u);
    reward = plant.Reward(rng);
    if (i >= windows - judge) sum += reward;
  }
  return sum / judge;
}

TEST(ResidualAdapter, AFreshAdapterAddsNothingUntilItsFirstProbe) {
  AdapterOptions o;
  ResidualAdapter a(o);
  for (int i = 0; i < o.block_windows; ++i) {
    EXPECT_EQ(a.Update(-1.0 * i, true), 0.0) << "window " << i;
    EXPECT_FALSE(a.probing());
  }
  // The probe block: +probe first.
  EXPECT_NEAR(a.Update(-1.0, true), o.probe, 1e-12);
  EXPECT_TRUE(a.probing());
}

TEST(ResidualAdapter, LearnsTheCorrectionThatMovesTheSplitTowardTheBestReward) {
  AdapterOptions o;
  o.bound = 0.1;
  o.step = 0.03;
  o.probe = 0.03;
  const uint64_t seed = Seed();
  Plant fixed, adapted;
  const double frozen = RunPlant(nullptr, fixed, 600, 100, seed);
  ResidualAdapter a(o);
  const double learned = RunPlant(&a, adapted, 600, 100, seed);
  // The base settles at 0.3; the best split is 0.6: the correction must have turned positive and
  // the reward of the last windows must be better than the base's alone.
  EXPECT_GT(a.correction(), 0.05) << "seed " << seed;
  EXPECT_GT(learned, frozen + 0.2) << "seed " << seed;
  EXPECT_GT(adapted.split, 0.45) << "seed " << seed;
  EXPECT_GT(a.updates(), 10);
}

TEST(ResidualAdapter, StaysNearZeroWhenTheBaseIsAlreadyRight) {
  AdapterOptions o;
  Plant plant;
  plant.best = plant.preferred;
  ResidualAdapter a(o);
  RunPlant(&a, plant, 800, 100, Seed());
  EXPECT_LT(std::abs(a.correction()), 0.03) << "seed " << Seed();
}

TEST(ResidualAdapter, NeverLeavesItsTrustBound) {
  AdapterOptions o;
  o.step = 0.5;  // large steps, to push against the bound
  ResidualAdapter a(o);
  std::mt19937_64 rng(Seed());
  std::uniform_real_distribution<double> reward(-7, 0);
  for (int i = 0; i < 2000; ++i) {
    const double u = a.Update(reward(rng), true);
    ASSERT_LE(std::abs(u), o.bound + 1e-12);
    ASSERT_LE(std::abs(a.correction()), o.bound + 1e-12);
  }
}

TEST(ResidualAdapter, FreezeStopsProbingAndLearningAndResetForgets) {
  AdapterOptions o;
  o.step = 0.05;
  ResidualAdapter a(o);
  // Probes up always pay: c grows.
  for (int i = 0; i < 20 * o.block_windows; ++i) a.Update(a.output() * 10, true);
  const double c = a.correction();
  ASSERT_GT(c, 0.01);
  a.Freeze(true);
  for (int i = 0; i < 10 * o.block_windows; ++i) {
    EXPECT_DOUBLE_EQ(a.Update(a.output() * 10, true), c);
    EXPECT_FALSE(a.probing());
  }
  EXPECT_DOUBLE_EQ(a.correction(), c);
  a.Reset();
  EXPECT_DOUBLE_EQ(a.correction(), 0.0);
  EXPECT_TRUE(a.frozen()) << "Reset keeps the freeze";
  EXPECT_DOUBLE_EQ(a.Update(-1, true), 0.0);
}

TEST(ResidualAdapter, LearnsNothingFromUnusableWindows) {
  AdapterOptions o;
  o.step = 0.05;
  ResidualAdapter a(o);
  for (int i = 0; i < 20 * o.block_windows; ++i) a.Update(a.output() * 10, /*usable=*/false);
  EXPECT_DOUBLE_EQ(a.correction(), 0.0);
  EXPECT_EQ(a.updates(), 0);
}

}  // namespace
}  // namespace helm::control
