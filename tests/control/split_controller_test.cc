#include "helm/control/split_controller.h"

#include <cmath>
#include <functional>
#include <tuple>

#include "control/window_support.h"
#include "gtest/gtest.h"

namespace helm::control {
namespace {

// A settled window (no move in flight) at `split` whose answers all took `p99_us`.
serve::StatsWindow Window(double split, double p99_us, int64_t answers = 200) {
  return SteadyWindow(split, answers, static_cast<int64_t>(p99_us));
}

pool::PoolOptions Pool(double initial = 0.5) {
  pool::PoolOptions p;
  p.initial_split = initial;
  p.r_min = 0.1;
  p.r_max = 0.9;
  return p;
}

// Runs `windows` decisions against a P99 landscape, applying each decision at once.
double Climb(SplitController& c, double split, int windows,
             const std::function<double(double)>& p99_at) {
  for (int i = 0; i < windows; ++i) split = c.Decide(Window(split, p99_at(split)));
  return split;
}

TEST(StaticController, HoldsItsSplitWhateverTheWindowSays) {
  ControlOptions o;
  auto c = CreateSplitController(o, Pool(0.35));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->name(), "static");
  for (double p99 : {1000.0, 50000.0, 10.0}) {
    EXPECT_DOUBLE_EQ((*c)->Decide(Window(0.6, p99)), 0.35);
  }
}

TEST(HillClimbController, FindsTheBestSplitOfAConvexLandscape) {
  ControlOptions o;
  o.policy = "heuristic";
  auto c = CreateSplitController(o, Pool());
  ASSERT_TRUE(c.ok()) << c.status();
  // P99 is lowest at 0.72 and grows 60 ms per unit of distance (plus a 5 ms floor): a step of 0.05
  // changes it by more than the 10% band. (Smaller changes are below what the heuristic sees.)
  auto landscape = [](double r) { return 5000 + 60000 * std::abs(r - 0.72); };
  const double end = Climb(**c, 0.5, 60, landscape);
  EXPECT_NEAR(end, 0.72, 0.05);
}

TEST(HillClimbController, FindsAnOptimumBelowTheStart) {
  ControlOptions o;
  o.policy = "heuristic";
  auto c = CreateSplitController(o, Pool());
  ASSERT_TRUE(c.ok());
  auto landscape = [](double r) { return 5000 + 60000 * std::abs(r - 0.2); };
  EXPECT_NEAR(Climb(**c, 0.5, 80, landscape), 0.2, 0.05);
}

TEST(HillClimbController, SettlesAndRarelyTurnsOnAFlatLandscape) {
  ControlOptions o;
  o.policy = "heuristic";
  HillClimbController c(o, 0.1, 0.9);
  // Steady load with noise below the hysteresis: P99 within +-4% of 10 ms.
  double split = 0.5;
  int moves = 0;
  for (int i = 0; i < 200; ++i) {
    const double noise = ((i * 7919) % 9 - 4) / 100.0;
    const double next = c.Decide(Window(split, 10000 * (1 + noise)));
    moves += std::abs(next - split) > 1e-9;
    split = next;
  }
  // Each failed probe doubles the hold (5, 10, 20, 40, 80, 80 windows): a handful of probes, each
  // undone.
  EXPECT_LE(moves, 12);
  EXPECT_LE(c.reversals(), 6);
  EXPECT_NEAR(split, 0.5, 1e-9);
}

TEST(HillClimbController, DoesNotMoveWhileAMoveIsInFlightOrOnTooFewAnswers) {
  ControlOptions o;
  o.policy = "heuristic";
  HillClimbController c(o, 0.1, 0.9);
  serve::StatsWindow moving = Window(0.5, 10000);
  moving.committed_split = 0.45;
  EXPECT_DOUBLE_EQ(c.Decide(moving), 0.5);
  serve::StatsWindow pending = Window(0.5, 10000);
  pending.pending_migration_bytes = 1 << 20;
  EXPECT_DOUBLE_EQ(c.Decide(pending), 0.5);
  EXPECT_DOUBLE_EQ(c.Decide(Window(0.5, 10000, /*answers=*/10)), 0.5);
  // A settled window with enough answers: the first probe moves by one step.
  EXPECT_NEAR(c.Decide(Window(0.5, 10000)), 0.55, 1e-9);
}

TEST(HillClimbController, ASplitSettledOnAChunkBoundaryNearTheTargetIsNotAMoveInFlight) {
  ControlOptions o;
  o.policy = "heuristic";
  HillClimbController c(o, 0.1, 0.9);
  // 64 chunks: a target of 0.55 settles at 35/64 = 0.546875, with nothing pending.
  serve::StatsWindow settled = Window(0.55, 10000);
  settled.committed_split = 35.0 / 64;
  settled.chunk_share = 1.0 / 64;
  EXPECT_NEAR(c.Decide(settled), 0.60, 1e-9);  // the first probe
  // More than a chunk away is still a move in flight.
  serve::StatsWindow moving = Window(0.60, 10000);
  moving.committed_split = 0.55;
  moving.chunk_share = 1.0 / 64;
  EXPECT_DOUBLE_EQ(c.Decide(moving), 0.60);
}

TEST(HillClimbController, StaysWithinBoundsAndMovesAtMostOneStep) {
  ControlOptions o;
  o.policy = "heuristic";
  HillClimbController c(o, 0.1, 0.9);
  // P99 always improves going up (14% per 0.05): it climbs to r_max and stays there.
  double split = 0.5;
  for (int i = 0; i < 100; ++i) {
    const double next = c.Decide(Window(split, 20000 * std::exp(-3 * split)));
    EXPECT_LE(std::abs(next - split), o.step + 1e-9);
    split = next;
    EXPECT_GE(split, 0.1 - 1e-9);
    EXPECT_LE(split, 0.9 + 1e-9);
  }
  EXPECT_NEAR(split, 0.9, 1e-9);
}

TEST(HillClimbController, GoesBackAndHalvesItsStepWhenItPassesTheOptimum) {
  ControlOptions o;
  o.policy = "heuristic";
  HillClimbController c(o, 0.1, 0.9);
  EXPECT_NEAR(c.Decide(Window(0.5, 12000)), 0.55, 1e-9);  // probe up
  EXPECT_NEAR(c.Decide(Window(0.55, 10000)), 0.6, 1e-9);  // better: on
  EXPECT_NEAR(c.Decide(Window(0.6, 15000)), 0.55, 1e-9);  // worse: back
  EXPECT_EQ(c.reversals(), 1);
  EXPECT_NEAR(c.step(), 0.025, 1e-9);
  // Held at 0.55 for hold_windows windows, then the next probe goes down by the finer step.
  for (int i = 0; i < o.hold_windows; ++i) EXPECT_NEAR(c.Decide(Window(0.55, 10000)), 0.55, 1e-9);
  EXPECT_NEAR(c.Decide(Window(0.55, 10000)), 0.525, 1e-9);
}

TEST(HillClimbController, ALoadChangeEndsTheHold) {
  ControlOptions o;
  o.policy = "heuristic";
  HillClimbController c(o, 0.1, 0.9);
  EXPECT_NEAR(c.Decide(Window(0.5, 10000)), 0.55, 1e-9);
  EXPECT_NEAR(c.Decide(Window(0.55, 10000)), 0.5, 1e-9);  // no gain: undone, held
  EXPECT_NEAR(c.Decide(Window(0.5, 10000)), 0.5, 1e-9);   // holding
  EXPECT_NEAR(c.Decide(Window(0.5, 30000)), 0.45, 1e-9);  // P99 tripled: probe now
}

// A settled window at `split` whose ghosts say growing EMB would save `g_emb` of it and growing KV
// `g_kv`.
serve::StatsWindow GainWindow(double split, double g_emb, double g_kv) {
  serve::StatsWindow w = Window(split, 5000);
  SetGrowthGains(w, g_emb, g_kv);
  return w;
}

TEST(MarginalController, MovesTowardTheCacheWhoseGhostSavesMoreAndHoldsWhenEven) {
  ControlOptions o;
  o.policy = "marginal";
  auto c = CreateSplitController(o, Pool());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->name(), "marginal");
  // KV's ghost saves 4% of each window, EMB's 1%: the split falls a step a window to r_min.
  double split = 0.5;
  for (int i = 0; i < 20; ++i) split = (*c)->Decide(GainWindow(split, 0.01, 0.04));
  EXPECT_NEAR(split, 0.1, 1e-9);
  // EMB's pays more now: after the hold against turning round, back up.
  for (int i = 0; i < 10; ++i) split = (*c)->Decide(GainWindow(split, 0.05, 0.01));
  EXPECT_GT(split, 0.15);
  EXPECT_EQ((*c)->reversals(), 1);
  // Even gains (within the hysteresis), or both below marginal_min_gain: it holds.
  auto even = CreateSplitController(o, Pool());
  ASSERT_TRUE(even.ok());
  EXPECT_DOUBLE_EQ((*even)->Decide(GainWindow(0.5, 0.020, 0.021)), 0.5);
  EXPECT_DOUBLE_EQ((*even)->Decide(GainWindow(0.5, 0.0005, 0.0)), 0.5);
  // No decision while a move is in flight.
  serve::StatsWindow moving = GainWindow(0.5, 0.0, 0.1);
  moving.target_split = 0.6;
  EXPECT_DOUBLE_EQ((*even)->Decide(moving), 0.6);
}

// A move is 2 x step x |g_emb - g_kv| / (g_emb + g_kv), capped at max_move: step (0.05) where one
// gain is 3x the other, twice it where only one cache would gain, less near the hysteresis.
TEST(MarginalController, MovesInProportionToHowLopsidedTheGainsAre) {
  ControlOptions o;
  o.policy = "marginal";
  for (const auto& [emb, kv, move] :
       {std::tuple{0.01, 0.03, -0.05}, std::tuple{0.0, 0.04, -0.10}, std::tuple{0.03, 0.0, 0.10},
        std::tuple{0.02, 0.03, -0.02}, std::tuple{0.03, 0.02, 0.02}}) {
    auto c = CreateSplitController(o, Pool());
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_NEAR((*c)->Decide(GainWindow(0.5, emb, kv)), 0.5 + move, 1e-9) << emb << " vs " << kv;
  }
  // Capped at max_move however large `step` is.
  o.step = 0.2;
  auto capped = CreateSplitController(o, Pool());
  ASSERT_TRUE(capped.ok());
  EXPECT_NEAR((*capped)->Decide(GainWindow(0.5, 0.0, 0.04)), 0.5 - o.max_move, 1e-9);
}

TEST(CreateSplitController, RefusesTheOracleAndBadKnobsNamingTheKey) {
  ControlOptions o;
  o.policy = "oracle";
  auto oracle = CreateSplitController(o, Pool());
  ASSERT_FALSE(oracle.ok());
  EXPECT_NE(oracle.status().message().find("control.policy"), std::string::npos);
  o.policy = "heuristic";
  o.min_step = 0.2;
  o.step = 0.1;
  auto bad = CreateSplitController(o, Pool());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("control.min_step"), std::string::npos);
}

}  // namespace
}  // namespace helm::control
