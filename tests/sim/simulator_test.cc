// helm-sim's core on small clusters: every request is answered, the caches and the router do real
// work, a seed gives the same output every time, a static split holds, and bad configs are refused
// naming the key.
#include "helm/sim/simulator.h"

#include "gtest/gtest.h"

namespace helm::sim {
namespace {

config::Config SmallCluster(int nodes, uint64_t seed) {
  config::Config c;
  c.simulator.num_nodes = nodes;
  c.simulator.duration_s = 6;
  c.simulator.gpu = "a100";
  c.simulator.seed = seed;
  c.pool.bytes = int64_t{16} << 20;
  c.pool.chunk_bytes = int64_t{1} << 20;
  c.emb.num_items = 50000;
  c.node.max_history = 1024;
  c.node.workers = 2;
  c.workload.profile = "kuairand";
  c.workload.max_users = 400;
  c.workload.max_history = 512;
  c.workload.candidates = 64;
  c.workload.rate_per_s = 150;
  c.workload.duration_s = 6;
  return c;
}

uint64_t Seed() { return ::testing::UnitTest::GetInstance()->random_seed(); }

SimResult RunOrDie(const config::Config& config) {
  auto sim = Simulator::Create(config);
  EXPECT_TRUE(sim.ok()) << sim.status();
  if (!sim.ok()) return SimResult();
  auto result = (*sim)->Run();
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *std::move(result) : SimResult();
}

TEST(Simulator, AnswersEveryRequestWithTheCachesAtWork) {
  const config::Config config = SmallCluster(4, Seed());
  const SimResult r = RunOrDie(config);
  EXPECT_GT(r.arrivals, 600) << "150/s for 6 s";
  EXPECT_EQ(r.completions + r.failures, r.arrivals);
  EXPECT_EQ(r.failures, 0);
  EXPECT_GT(r.kv_token_hit, 0.05) << "returning users reuse their K/V";
  EXPECT_GT(r.emb_hit, 0.05);
  EXPECT_GT(r.latency_us.Quantile(0.5), 0);
  ASSERT_EQ(r.nodes.size(), 4u);
  int64_t replies = 0;
  for (const NodeResult& n : r.nodes) replies += n.replies;
  EXPECT_EQ(replies, r.completions);
  EXPECT_GE(r.seconds.size(), 6u);
}

TEST(Simulator, ASeedGivesTheSameOutputEveryTime) {
  const config::Config config = SmallCluster(3, Seed());
  const SimResult a = RunOrDie(config);
  const SimResult b = RunOrDie(config);
  EXPECT_EQ(ToJson(a, config), ToJson(b, config)) << "seed " << Seed();
  EXPECT_EQ(ToCsv(a), ToCsv(b));
  config::Config other = config;
  other.simulator.seed = config.simulator.seed + 1;
  EXPECT_NE(ToJson(RunOrDie(other), other), ToJson(a, config)) << "the seed matters";
}

TEST(Simulator, AStaticSplitHolds) {
  config::Config config = SmallCluster(2, Seed());
  config.pool.initial_split = 0.3;
  const SimResult r = RunOrDie(config);
  for (const NodeResult& n : r.nodes) {
    EXPECT_NEAR(n.split_first, 0.3, 0.07);
    EXPECT_EQ(n.split_last, n.split_first) << n.id;
  }
  for (const SimSecond& s : r.seconds) {
    for (double split : s.split) EXPECT_EQ(split, r.nodes[0].split_first);
  }
}

TEST(Simulator, BadConfigsAreRefusedNamingTheKey) {
  config::Config config = SmallCluster(2, 1);
  config.simulator.calibration_path = "/nonexistent/calibration.json";
  auto sim = Simulator::Create(config);
  ASSERT_FALSE(sim.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(sim.status()));
  EXPECT_NE(sim.status().message().find("simulator.calibration_path"), std::string::npos)
      << sim.status();
  config = SmallCluster(2, 1);
  config.workload.max_history = 4096;  // above node.max_history
  sim = Simulator::Create(config);
  ASSERT_FALSE(sim.ok());
  EXPECT_NE(sim.status().message().find("workload.max_history"), std::string::npos) << sim.status();
}

}  // namespace
}  // namespace helm::sim
