#include "helm/control/helm_controller.h"

#include <cmath>
#include <fstream>
#include <random>

#include "control/window_support.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace helm::control {
namespace {

uint64_t Seed() { return ::testing::UnitTest::GetInstance()->random_seed() + 4242u; }

const std::vector<double> kActions = {-0.1, -0.05, -0.02, 0, 0.02, 0.05, 0.1};

FeatureScales Scales() {
  FeatureScales s;
  s.slo_us = 50'000;
  s.pool_bytes = 1 << 30;
  s.emb_row_bytes = 512;
  s.kv_token_bytes = 6144;
  s.queue_capacity = 100;
  return s;
}

serve::StatsWindow Window(double split, int64_t arrivals, int64_t p99_us, int32_t queue = 0) {
  serve::StatsWindow w = SteadyWindow(split, arrivals, p99_us);
  w.queue_depth = queue;
  SetCacheCounters(w, 700, 4000, 2000);
  return w;
}

// A one-layer policy: +0.1 when the queue is more than half full (feature 12), else 0.
Policy UpOnAFullQueue() {
  Mlp::Layer l;
  l.in = kNumFeatures;
  l.out = 2;
  l.weight.assign(size_t(l.in) * l.out, 0.0f);
  l.weight[size_t(l.in) + 12] = 10.0f;
  l.bias = {0.0f, -5.0f};
  return Policy{Mlp({l}), {0.0, 0.1}};
}

// A random two-layer policy beside a fixed rule that makes its argmax change with the window: a
// full queue (feature 12) favours +0.05, a P99 over the SLO (feature 14) favours -0.05.
Policy RandomPolicy(uint64_t seed) {
  std::vector<Mlp::Layer> layers = Mlp::Random({kNumFeatures, 32, 7}, seed).layers();
  Mlp::Layer rule;
  rule.in = kNumFeatures;
  rule.out = 32;
  rule.weight.assign(size_t(rule.in) * rule.out, 0.0f);
  rule.weight[size_t(0) * rule.in + 12] = 3.0f;  // hidden 0: the queue
  rule.weight[size_t(1) * rule.in + 14] = 3.0f;  // hidden 1: P99 / SLO
  rule.bias.assign(rule.out, 0.0f);
  for (size_t i = 0; i < layers[0].weight.size(); ++i) layers[0].weight[i] += rule.weight[i];
  layers[1].weight[size_t(5) * 32 + 0] += 8.0f;  // +0.05 <- the queue
  layers[1].weight[size_t(1) * 32 + 1] += 8.0f;  // -0.05 <- P99
  return Policy{Mlp(std::move(layers)), kActions};
}

ControlOptions Options(bool adapter, bool recovery) {
  ControlOptions o;
  o.policy = "helm";
  o.adapter = adapter;
  o.recovery = recovery;
  return o;
}

TEST(HelmController, WithItsLayersOffItDecidesExactlyAsTheBasePolicy) {
  const Policy p = RandomPolicy(Seed());
  HelmController helm(p, Scales(), Options(false, false), 0.1, 0.9);
  PolicyController base(p, Scales(), Options(false, false), 0.1, 0.9);
  std::mt19937_64 rng(Seed());
  std::uniform_int_distribution<int64_t> arrivals(100, 5000), p99(1000, 150'000);
  std::uniform_int_distribution<int32_t> queue(0, 100);
  double split = 0.5;
  int moves = 0;
  for (int i = 0; i < 300; ++i) {
    const serve::StatsWindow w = Window(split, arrivals(rng), p99(rng), queue(rng));
    const double a = helm.Decide(w), b = base.Decide(w);
    ASSERT_DOUBLE_EQ(a, b) << "window " << i << " seed " << Seed();
    EXPECT_EQ(helm.mode(), "base");
    moves += std::abs(a - split) > 1e-9;
    split = a;
  }
  EXPECT_GT(moves, 0) << "the random policy moved the split at least once";
  EXPECT_EQ(helm.reversals(), base.reversals());
}

TEST(HelmController, AFreshAdapterDecidesAsTheBaseUntilItsFirstProbe) {
  const Policy p = RandomPolicy(Seed() + 1);
  ControlOptions o = Options(true, false);
  HelmController helm(p, Scales(), o, 0.1, 0.9);
  PolicyController base(p, Scales(), o, 0.1, 0.9);
  double split = 0.5;
  for (int i = 0; i < o.adapter_block_windows; ++i) {
    const serve::StatsWindow w = Window(split, 1000 + 37 * i, 20'000 + 1000 * i);
    const double a = helm.Decide(w);
    ASSERT_DOUBLE_EQ(a, base.Decide(w)) << "window " << i;
    EXPECT_EQ(helm.mode(), "base");
    split = a;
  }
  // The first probe block: the adapter adds +probe.
  const serve::StatsWindow w = Window(split, 1000, 20'000);
  helm.Decide(w);
  EXPECT_EQ(helm.mode(), "adapter");
  EXPECT_NEAR(helm.last_decision().adapter_u, o.adapter_probe, 1e-12);
  EXPECT_NEAR(helm.last_decision().proposed, helm.last_decision().base_delta + o.adapter_probe,
              1e-12);
}

TEST(HelmController, ABurstFreezesTheSplitAndModeSaysSo) {
  HelmController helm(UpOnAFullQueue(), Scales(), Options(false, true), 0.1, 0.9);
  for (int i = 0; i < 40; ++i) {
    ASSERT_DOUBLE_EQ(helm.Decide(Window(0.5, 1000, 10'000)), 0.5);
    EXPECT_EQ(helm.mode(), "base");
  }
  // A flash crowd fills the queue: the base asks for +0.1, recovery holds the split.
  int burst_windows = 0;
  for (int i = 0; i < 10; ++i) {
    const double next = helm.Decide(Window(0.5, 3000, 40'000, 100));
    if (helm.mode() == "burst") {
      ++burst_windows;
      EXPECT_DOUBLE_EQ(next, 0.5);
      EXPECT_DOUBLE_EQ(helm.last_decision().base_delta, 0.1);
      EXPECT_DOUBLE_EQ(helm.last_decision().recovery_delta, 0.0);
    }
  }
  EXPECT_GE(burst_windows, 8) << "detected within two windows, then held";
}

TEST(HelmController, TheAdapterLearnsOnlyFromCalmWindows) {
  ControlOptions o = Options(true, true);
  HelmController helm(UpOnAFullQueue(), Scales(), o, 0.1, 0.9);
  double split = 0.5;
  for (int i = 0; i < 60; ++i) split = helm.Decide(Window(split, 1000, 10'000));
  const int64_t calm_updates = helm.adapter()->updates();
  EXPECT_GE(calm_updates, 2) << "60 calm windows: at least two probe cycles judged";
  // A flash crowd lasting a long window: after the blocks that began before it, nothing is judged.
  int64_t updates_in_burst = -1;
  for (int i = 0; i < o.burst_long_windows - 1; ++i) {
    split = helm.Decide(Window(split, 3000, 40'000));
    ASSERT_EQ(helm.mode(), "burst") << "window " << i;
    if (i == 3 * o.adapter_block_windows) updates_in_burst = helm.adapter()->updates();
  }
  EXPECT_EQ(helm.adapter()->updates(), updates_in_burst);
}

// The adapter's correction is learned on one mix of requests: when recovery sees the requests'
// shape change (EMB lookups per request up 5x: a second surface), it starts again from 0, unless
// control.adapter_reset_on_shift is off.
TEST(HelmController, AChangeOfMixStartsTheAdapterAfresh) {
  for (const bool reset : {true, false}) {
    ControlOptions o = Options(true, true);
    o.adapter_reset_on_shift = reset;
    Policy hold = UpOnAFullQueue();  // holds: the queue stays empty
    HelmController helm(hold, Scales(), o, 0.1, 0.9);
    // P99 rises with the split above 0.3: the adapter learns to push the split down.
    const auto window = [](double split, int64_t lookups_per_request) {
      serve::StatsWindow w =
          Window(split, 1000, 10'000 + static_cast<int64_t>(200'000 * std::max(0.0, split - 0.3)));
      w.kv.requests = 1000;
      w.emb.lookups = 1000 * lookups_per_request;
      return w;
    };
    double split = 0.5;
    for (int i = 0; i < 80; ++i) split = helm.Decide(window(split, 100));
    const double learned = helm.adapter()->correction();
    ASSERT_LT(learned, 0) << "reset " << reset;
    bool shifted = false;
    for (int i = 0; i < 4; ++i) {
      split = helm.Decide(window(split, 500));
      shifted = shifted || helm.recovery()->shape_shift();
    }
    EXPECT_TRUE(shifted);
    if (reset) {
      EXPECT_EQ(helm.adapter()->correction(), 0.0);
    } else {
      EXPECT_EQ(helm.adapter()->correction(), learned);
    }
  }
}

TEST(HelmController, RollsBackABadMoveEvenWithinTheHysteresisHold) {
  ControlOptions o = Options(false, true);
  o.hold_windows = 10;
  HelmController helm(UpOnAFullQueue(), Scales(), o, 0.1, 0.9);
  for (int i = 0; i < 20; ++i) helm.Decide(Window(0.5, 1000, 10'000));
  // One full queue: the base moves up by 0.1.
  ASSERT_NEAR(helm.Decide(Window(0.5, 1000, 10'000, 100)), 0.6, 1e-9);
  // After it, P99 climbs window after window: rolled back within rollback_windows windows, though
  // the gate's hold (10 windows) would refuse any other turn.
  double split = 0.6, p99 = 10'000;
  int rolled_at = 0;
  for (int i = 1; i <= 6 && rolled_at == 0; ++i) {
    p99 *= 1.25;
    split = helm.Decide(Window(split, 1000, static_cast<int64_t>(p99)));
    if (helm.mode() == "rollback") rolled_at = i;
  }
  EXPECT_EQ(rolled_at, o.rollback_windows);
  EXPECT_NEAR(split, 0.5, 1e-9);
  EXPECT_EQ(helm.reversals(), 1);
  // The base asks to go up again: refused while the rolled-back direction is blocked.
  EXPECT_NEAR(helm.Decide(Window(0.5, 1000, 10'000, 100)), 0.5, 1e-9);
  EXPECT_EQ(helm.mode(), "rollback");
}

TEST(HelmController, LastDecisionJsonCarriesEveryLayer) {
  HelmController helm(UpOnAFullQueue(), Scales(), Options(true, true), 0.1, 0.9);
  EXPECT_EQ(helm.LastDecisionJson(), "");
  EXPECT_EQ(helm.mode(), "base");
  helm.Decide(Window(0.5, 1000, 10'000));
  helm.Decide(Window(0.5, 1000, 100'000, 100));
  const nlohmann::json j = nlohmann::json::parse(helm.LastDecisionJson());
  EXPECT_EQ(j["features"].size(), size_t{kNumFeatures});
  EXPECT_EQ(j["mode"], helm.mode());
  EXPECT_EQ(j["base"]["action"], 1);
  EXPECT_DOUBLE_EQ(j["base"]["delta"].get<double>(), 0.1);
  EXPECT_TRUE(j["adapter"].contains("u"));
  EXPECT_TRUE(j["adapter"].contains("c"));
  EXPECT_EQ(j["recovery"]["mode"], "normal");
  EXPECT_DOUBLE_EQ(j["target_before"].get<double>(), 0.5);
  EXPECT_NEAR(j["target"].get<double>(), 0.6, 1e-9);
  // The window just closed had P99 at twice the SLO and every answer over it.
  EXPECT_NEAR(j["reward"]["latency"].get<double>(), 2.0, 0.05);
  EXPECT_NEAR(j["reward"]["violations"].get<double>(), 1.0, 1e-9);
  EXPECT_LT(j["reward"]["reward"].get<double>(), -3.9);

  HelmController bare(UpOnAFullQueue(), Scales(), Options(false, false), 0.1, 0.9);
  bare.Decide(Window(0.5, 1000, 10'000));
  const nlohmann::json b = nlohmann::json::parse(bare.LastDecisionJson());
  EXPECT_TRUE(b["adapter"].is_null());
  EXPECT_TRUE(b["recovery"].is_null());
}

TEST(CreateSplitController, BuildsHelmFromAPolicyFileAndNamesBadKeys) {
  const std::string path = ::testing::TempDir() + "/helm_controller_test_policy.json";
  {
    std::ofstream f(path);
    f << PolicyToJson(Policy{Mlp::Random({kNumFeatures, 8, 7}, 5), kActions});
  }
  pool::PoolOptions pool;
  ControlOptions o = Options(true, true);
  o.policy_path = path;
  auto c = CreateSplitController(o, pool);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->name(), "helm");

  ControlOptions bad = o;
  bad.burst_short_windows = 30;
  auto r = CreateSplitController(bad, pool);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("control.burst_short_windows"), std::string::npos)
      << r.status();
  bad = o;
  bad.policy_path.clear();
  r = CreateSplitController(bad, pool);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("control.policy_path"), std::string::npos);
  bad = o;
  bad.policy = "ppo";
  EXPECT_FALSE(CreateSplitController(bad, pool).ok()) << "ppo is now helm";
}

}  // namespace
}  // namespace helm::control
