#include "helm/control/reward.h"

#include "gtest/gtest.h"

namespace helm::control {
namespace {

TEST(Reward, WeighsLatencyViolationsRefillAndChurnAsTheHeaderSays) {
  FeatureScales scales;
  scales.slo_us = 10'000;
  scales.pool_bytes = 1000;
  serve::StatsWindow w;
  w.end_us = 1'000'000;
  w.target_split = 0.55;
  w.requests.completions = 90;
  w.requests.failures = 10;
  w.latency_us.RecordN(5'000, 80);
  w.latency_us.RecordN(20'000, 10);  // over the SLO, and the window's P99
  w.pool.prefetch_bytes = 150;
  w.pool.migration_bytes_done = 50;
  const RewardTerms t = Reward(w, /*previous_target=*/0.5, scales);
  EXPECT_NEAR(t.latency, w.latency_us.Quantile(0.99) / 10'000.0, 1e-9);
  EXPECT_GT(t.latency, 1.5);
  EXPECT_NEAR(t.violations, 0.2, 1e-9);  // 10 slow + 10 failed of 100 answers
  EXPECT_NEAR(t.refill, 0.2, 1e-9);
  EXPECT_NEAR(t.churn, 0.5, 1e-9);
  EXPECT_NEAR(t.reward, -(t.latency + 2 * 0.2 + 0.5 * 0.2 + 0.05 * 0.5), 1e-9);

  // Latency is capped at 4 SLOs; an idle window scores only its refill and churn.
  serve::StatsWindow slow = w;
  slow.latency_us.RecordN(1'000'000, 50);
  EXPECT_EQ(Reward(slow, 0.5, scales).latency, 4.0);
  serve::StatsWindow idle;
  idle.end_us = 1'000'000;
  idle.target_split = 0.5;
  const RewardTerms quiet = Reward(idle, 0.5, scales);
  EXPECT_EQ(quiet.reward, 0.0);
  EXPECT_EQ(Reward(idle, 0.3, scales, {.refill = 0.5, .churn = 1.0}).reward, -2.0);
}

}  // namespace
}  // namespace helm::control
