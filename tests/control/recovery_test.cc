#include "helm/control/recovery.h"

#include <cmath>
#include <random>

#include "control/window_support.h"
#include "gtest/gtest.h"

namespace helm::control {
namespace {

uint64_t Seed() { return ::testing::UnitTest::GetInstance()->random_seed() + 7717u; }

// A settled one-second window at `split`: `arrivals` requests, all answered, at `p99_us`.
serve::StatsWindow Window(double split, double arrivals, double p99_us) {
  return SteadyWindow(split, static_cast<int64_t>(arrivals), static_cast<int64_t>(p99_us));
}

// Steady load with noise: arrivals Poisson-like around `rate` plus +-5%, P99 +-15%.
class Load {
 public:
  explicit Load(uint64_t seed) : rng_(seed) {}
  serve::StatsWindow Next(double split, double rate, double p99_us) {
    std::normal_distribution<double> poisson(0, std::sqrt(rate));
    std::uniform_real_distribution<double> wobble(-0.05, 0.05), p99(-0.15, 0.15);
    return Window(split, std::max(0.0, rate * (1 + wobble(rng_)) + poisson(rng_)),
                  p99_us * (1 + p99(rng_)));
  }

 private:
  std::mt19937_64 rng_;
};

// Feeds `n` windows; returns the first window index (from 1) at which a burst is on, or 0.
int Feed(Recovery& r, Load& load, int n, double rate, double p99_us, double split = 0.5) {
  for (int i = 1; i <= n; ++i) {
    r.Observe(load.Next(split, rate, p99_us));
    if (r.in_burst()) return i;
  }
  return 0;
}

TEST(Recovery, NoFalseAlarmOnSteadyNoisyLoad) {
  RecoveryOptions o;
  Recovery r(o);
  Load load(Seed());
  for (int i = 0; i < 1000; ++i) {
    r.Observe(load.Next(0.5, 1000, 20'000));
    const RecoveryVerdict v = r.Filter(0.5, 0.05);
    ASSERT_EQ(v.mode, RecoveryMode::kNormal) << "window " << i << " seed " << Seed();
    ASSERT_DOUBLE_EQ(v.delta, 0.05);
  }
  EXPECT_EQ(r.bursts(), 0);
  EXPECT_EQ(r.rollbacks(), 0);
}

TEST(Recovery, DetectsABurstWithinTwoWindowsByCusum) {
  RecoveryOptions o;
  Recovery r(o);
  Load load(Seed());
  ASSERT_EQ(Feed(r, load, 60, 1000, 20'000), 0);
  // A flash crowd at 2.5x: the CUSUM sees it at once, the ratio confirms half of it.
  const int at = Feed(r, load, 10, 2500, 60'000);
  EXPECT_GE(at, 1);
  EXPECT_LE(at, 2) << "seed " << Seed();
  EXPECT_EQ(r.bursts(), 1);
}

TEST(Recovery, TheRateRatioAloneDetectsABurstWithinTheShortWindow) {
  RecoveryOptions o;
  o.cusum_h = 100;  // no CUSUM alarm: Knative's panic rule alone
  Recovery r(o);
  Load load(Seed());
  ASSERT_EQ(Feed(r, load, 60, 1000, 20'000), 0);
  const int at = Feed(r, load, 10, 3000, 20'000);
  EXPECT_GE(at, 1);
  EXPECT_LE(at, o.short_windows) << "seed " << Seed();
}

// The same rise of the rate is a burst when the requests keep their shape, and a change of mix
// (no freeze) when they do not: here a second surface of short histories and many candidates.
TEST(Recovery, ARiseOfAnotherKindOfRequestIsAChangeOfMixNotABurst) {
  for (const bool same_shape : {true, false}) {
    RecoveryOptions o;
    Recovery r(o);
    Load load(Seed());
    const auto shaped = [&](double rate, double lookups, double tokens) {
      serve::StatsWindow w = load.Next(0.5, rate, 20'000);
      w.kv.requests = w.requests.arrivals;
      w.emb.lookups = static_cast<int64_t>(lookups * w.kv.requests);
      w.kv.requested_tokens = static_cast<int64_t>(tokens * w.kv.requests);
      return w;
    };
    for (int i = 0; i < 40; ++i) r.Observe(shaped(1000, 300, 2000));
    ASSERT_FALSE(r.in_burst());
    bool burst = false, shift = false;
    int began = 0;  // windows that begin a change of mix
    for (int i = 0; i < 8; ++i) {
      r.Observe(same_shape ? shaped(3000, 300, 2000) : shaped(3000, 1500, 400));
      burst = burst || r.in_burst();
      shift = shift || r.shape_shift();
      began += r.shape_shift_began();
      EXPECT_TRUE(!r.shape_shift_began() || r.shape_shift());
      EXPECT_EQ(r.Filter(0.5, 0.05).delta, r.in_burst() ? 0.0 : 0.05);
    }
    EXPECT_EQ(burst, same_shape) << "seed " << Seed();
    EXPECT_EQ(shift, !same_shape);
    EXPECT_EQ(began, same_shape ? 0 : 1) << "one change of mix, begun once";
  }
}

TEST(Recovery, ASlowTrendIsNotABurst) {
  RecoveryOptions o;
  Recovery r(o);
  Load load(Seed());
  ASSERT_EQ(Feed(r, load, 40, 1000, 20'000), 0);
  // +1% a window for 100 windows: the rate grows 2.7x, but never 1.5x over its long mean.
  double rate = 1000;
  for (int i = 0; i < 100; ++i) {
    rate *= 1.01;
    r.Observe(load.Next(0.5, rate, 20'000));
    ASSERT_FALSE(r.in_burst()) << "window " << i << " seed " << Seed();
  }
}

TEST(Recovery, FreezesOrCapsMovesDuringABurstAndReturnsToNormalAfter) {
  for (double cap : {0.0, 0.02}) {
    RecoveryOptions o;
    o.burst_max_move = cap;
    Recovery r(o);
    Load load(Seed());
    ASSERT_EQ(Feed(r, load, 60, 1000, 20'000), 0);
    ASSERT_GT(Feed(r, load, 5, 2500, 60'000), 0);
    for (int i = 0; i < 20; ++i) {
      r.Observe(load.Next(0.5, 2500, 60'000));
      ASSERT_TRUE(r.in_burst()) << "the burst lasts: window " << i;
      const RecoveryVerdict up = r.Filter(0.5, 0.1);
      EXPECT_EQ(up.mode, RecoveryMode::kBurst);
      EXPECT_DOUBLE_EQ(up.delta, cap);
      EXPECT_DOUBLE_EQ(r.Filter(0.5, -0.05).delta, -cap);
      EXPECT_FALSE(up.undo);
    }
    // The load falls back: normal within the cooldown and a few windows.
    int calm_at = 0;
    for (int i = 1; i <= 3 * o.cooldown_windows && calm_at == 0; ++i) {
      r.Observe(load.Next(0.5, 1000, 20'000));
      if (!r.in_burst()) calm_at = i;
    }
    EXPECT_GE(calm_at, o.cooldown_windows);
    EXPECT_LE(calm_at, 2 * o.cooldown_windows) << "seed " << Seed();
    const RecoveryVerdict v = r.Filter(0.5, 0.05);
    EXPECT_EQ(v.mode, RecoveryMode::kNormal);
    EXPECT_DOUBLE_EQ(v.delta, 0.05);
    EXPECT_EQ(r.bursts(), 1);
  }
}

TEST(Recovery, RollsBackAMoveAfterWhichP99KeepsRising) {
  RecoveryOptions o;
  Recovery r(o);
  for (int i = 0; i < 20; ++i) r.Observe(Window(0.5, 1000, 10'000));
  EXPECT_DOUBLE_EQ(r.stable_split(), 0.5);
  // The move to 0.6 lands at once; P99 climbs window after window.
  double p99 = 10'000;
  int rolled_at = 0;
  for (int i = 1; i <= 6 && rolled_at == 0; ++i) {
    p99 *= 1.2;
    r.Observe(Window(0.6, 1000, p99));
    if (r.Filter(0.6, 0.05).mode == RecoveryMode::kRollback) rolled_at = i;
    EXPECT_EQ(r.rollback_began(), rolled_at == i) << "the rollback's first window only";
  }
  EXPECT_EQ(rolled_at, o.rollback_windows);
  RecoveryVerdict v = r.Filter(0.6, 0.05);
  EXPECT_TRUE(v.undo);
  EXPECT_NEAR(v.delta, -0.1, 1e-12) << "back to the stable split";
  EXPECT_EQ(r.rollbacks(), 1);
  // Back at 0.5: rolling back is over; a move up again (the undone direction) is refused for a
  // while, a move down is not.
  r.Observe(Window(0.5, 1000, 10'000));
  EXPECT_FALSE(r.rolling_back());
  EXPECT_FALSE(r.rollback_began());
  v = r.Filter(0.5, 0.05);
  EXPECT_EQ(v.mode, RecoveryMode::kRollback);
  EXPECT_DOUBLE_EQ(v.delta, 0.0);
  EXPECT_FALSE(v.undo);
  v = r.Filter(0.5, -0.05);
  EXPECT_EQ(v.mode, RecoveryMode::kNormal);
  EXPECT_DOUBLE_EQ(v.delta, -0.05);
  for (int i = 0; i < o.long_windows; ++i) r.Observe(Window(0.5, 1000, 10'000));
  EXPECT_DOUBLE_EQ(r.Filter(0.5, 0.05).delta, 0.05) << "the block ends";
}

// KeepMove (the predictive model's veto, helm_controller.h): the rollback under way is dropped,
// the move is the new stable split, and nothing is blocked.
TEST(Recovery, AKeptMoveEndsTheRollbackAndBecomesTheStableSplit) {
  RecoveryOptions o;
  Recovery r(o);
  r.KeepMove();  // no rollback under way: nothing happens
  EXPECT_EQ(r.kept_moves(), 0);
  for (int i = 0; i < 20; ++i) r.Observe(Window(0.5, 1000, 10'000));
  double p99 = 10'000;
  for (int i = 1; i <= o.rollback_windows; ++i) r.Observe(Window(0.6, 1000, p99 *= 1.2));
  ASSERT_TRUE(r.rolling_back());
  EXPECT_DOUBLE_EQ(r.rollback_to(), 0.5);
  r.KeepMove();
  EXPECT_FALSE(r.rolling_back());
  EXPECT_EQ(r.kept_moves(), 1);
  EXPECT_DOUBLE_EQ(r.stable_split(), 0.6);
  const RecoveryVerdict v = r.Filter(0.6, 0.05);
  EXPECT_EQ(v.mode, RecoveryMode::kNormal) << "no direction blocked";
  EXPECT_DOUBLE_EQ(v.delta, 0.05);
  // The same P99 at 0.6 is the stable one now: no rollback for it.
  for (int i = 0; i < 10; ++i) r.Observe(Window(0.6, 1000, p99));
  EXPECT_FALSE(r.rolling_back());
  EXPECT_EQ(r.rollbacks(), 1);
}

TEST(Recovery, KeepsAGoodMoveAndMakesItTheStableSplit) {
  RecoveryOptions o;
  Recovery r(o);
  for (int i = 0; i < 20; ++i) r.Observe(Window(0.5, 1000, 10'000));
  for (int i = 0; i < 10; ++i) {
    r.Observe(Window(0.6, 1000, 8'000));
    EXPECT_EQ(r.Filter(0.6, 0).mode, RecoveryMode::kNormal);
  }
  EXPECT_EQ(r.rollbacks(), 0);
  EXPECT_DOUBLE_EQ(r.stable_split(), 0.6);
}

TEST(Recovery, P99RisingWithTheLoadIsNotBlamedOnTheMove) {
  RecoveryOptions o;
  Recovery r(o);
  for (int i = 0; i < 20; ++i) r.Observe(Window(0.5, 1000, 10'000));
  // A move, then 30% more load (no burst: the rate ratio stays under 1.5) and P99 climbing.
  double p99 = 10'000;
  for (int i = 0; i < 10; ++i) {
    p99 *= 1.2;
    r.Observe(Window(0.6, 1300, p99));
    EXPECT_EQ(r.Filter(0.6, 0).mode, RecoveryMode::kNormal) << "window " << i;
  }
  EXPECT_EQ(r.rollbacks(), 0);
  EXPECT_EQ(r.bursts(), 0);
}

// P99 climbing after a move at the same rate is blamed on the move when the requests keep their
// shape, and on the mix when their shape moves (longer histories here).
TEST(Recovery, P99RisingWithAChangeOfMixIsNotBlamedOnTheMove) {
  for (const bool same_shape : {true, false}) {
    RecoveryOptions o;
    Recovery r(o);
    const auto shaped = [](double split, double p99, double tokens) {
      serve::StatsWindow w = Window(split, 1000, p99);
      w.kv.requests = 1000;
      w.emb.lookups = 300 * 1000;
      w.kv.requested_tokens = static_cast<int64_t>(tokens * 1000);
      return w;
    };
    for (int i = 0; i < 40; ++i) r.Observe(shaped(0.5, 10'000, 500));
    double p99 = 10'000;
    for (int i = 0; i < 8; ++i) {
      p99 *= 1.2;
      r.Observe(shaped(0.6, p99, same_shape ? 500 : 2000));
    }
    EXPECT_EQ(r.rollbacks(), same_shape ? 1 : 0);
  }
}

TEST(Recovery, P99RisingUnderABurstIsNotBlamedOnTheMove) {
  RecoveryOptions o;
  Recovery r(o);
  Load load(Seed());
  for (int i = 0; i < 60; ++i) r.Observe(load.Next(0.5, 1000, 10'000));
  double p99 = 10'000;
  for (int i = 0; i < 10; ++i) {
    p99 *= 1.2;
    r.Observe(load.Next(0.6, 2500, p99));
    EXPECT_NE(r.Filter(0.6, 0).mode, RecoveryMode::kRollback) << "window " << i;
  }
  EXPECT_EQ(r.rollbacks(), 0);
  EXPECT_GE(r.bursts(), 1);
}

}  // namespace
}  // namespace helm::control
