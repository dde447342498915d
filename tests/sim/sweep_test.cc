// The split sweep: cells sized by scale state their footprints next to the pool, a small sweep
// finds each cell's best static split among the runs it made, and bad sweep keys are named.
#include "helm/sim/sweep.h"

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "helm/model/model.h"
#include "helm/sim/simulator.h"
#include "helm/workload/profile.h"

namespace helm::sim {
namespace {

config::Config Base() {
  config::Config c;
  c.simulator.num_nodes = 2;
  c.simulator.duration_s = 3;
  c.simulator.gpu = "a100";
  c.emb.num_items = 60000;
  c.node.max_history = 1024;
  c.node.workers = 2;
  c.workload.max_history = 512;
  c.workload.candidates = 64;
  c.workload.rate_per_s = 150;
  c.workload.duration_s = 3;
  return c;
}

TEST(ConfigForCell, SizesThePoolAndTheUsersFromTheScale) {
  const config::Config base = Base();
  for (double scale : {0.5, 2.0, 8.0}) {
    auto cell = ConfigForCell(base, "amazon-video-games", "steady", scale);
    ASSERT_TRUE(cell.ok()) << cell.status();
    const config::Config& c = cell->config;
    auto profile = workload::FindProfile("amazon-video-games");
    ASSERT_TRUE(profile.ok());
    auto dims = model::DimsFromOptions(c.model, c.emb, c.kv);
    ASSERT_TRUE(dims.ok());
    const double rows = std::min<double>(profile->num_items, base.emb.num_items);
    EXPECT_DOUBLE_EQ(cell->emb_footprint_bytes, rows * c.emb.dim * 4);
    // The pool is the footprint over the scale, in whole chunks (at least 64 of them).
    EXPECT_LE(c.pool.bytes, cell->emb_footprint_bytes / scale);
    EXPECT_GT(c.pool.bytes, cell->emb_footprint_bytes / scale - c.pool.chunk_bytes);
    EXPECT_EQ(c.pool.bytes % c.pool.chunk_bytes, 0);
    EXPECT_GE(c.pool.chunk_bytes, dims->block_bytes());
    // The KV working set matches the scale too (within one user's history).
    EXPECT_NEAR(cell->kv_working_set_bytes / c.pool.bytes, scale, 0.05 * scale);
    EXPECT_EQ(c.workload.profile, "amazon-video-games");
  }
}

// The router keeps each user on one node: a cluster of N nodes gets N times the users, so that
// every node's share of the K/V working set fills `scale` pools whatever N.
TEST(ConfigForCell, SizesTheUsersPerNode) {
  config::Config one = Base();
  one.simulator.num_nodes = 1;
  config::Config four = Base();
  four.simulator.num_nodes = 4;
  auto a = ConfigForCell(one, "taobao", "steady", 4);
  auto b = ConfigForCell(four, "taobao", "steady", 4);
  ASSERT_TRUE(a.ok() && b.ok());
  // Within the rounding of each count to whole users.
  EXPECT_NEAR(double(b->config.workload.max_users), 4.0 * a->config.workload.max_users, 2.5);
  EXPECT_NEAR(b->kv_working_set_bytes / a->kv_working_set_bytes, 1.0,
              1.0 / a->config.workload.max_users);
}

// sweep_history_cap caps each cell's histories at a multiple of its profile's mean, and sizes the
// users by the 7/8 of the cap a user at the cap holds on average.
TEST(ConfigForCell, CapsHistoriesAtAMultipleOfTheMean) {
  config::Config base = Base();
  base.simulator.sweep_history_cap = 2;
  auto profile = workload::FindProfile("taobao");
  ASSERT_TRUE(profile.ok());
  auto cell = ConfigForCell(base, "taobao", "steady", 8);
  ASSERT_TRUE(cell.ok()) << cell.status();
  const int64_t cap = std::llround(2 * profile->mean_history);
  EXPECT_EQ(cell->config.workload.max_history, cap);
  auto dims = model::DimsFromOptions(cell->config.model, cell->config.emb, cell->config.kv);
  ASSERT_TRUE(dims.ok());
  const double token_bytes = double(dims->block_bytes()) / dims->tokens_per_block;
  EXPECT_NEAR(cell->kv_working_set_bytes,
              double(cell->config.workload.max_users) * 0.875 * cap * token_bytes /
                  base.simulator.num_nodes,
              1.0);
  EXPECT_NEAR(cell->kv_working_set_bytes / cell->config.pool.bytes, 8, 0.4);
  // Never above the configured cap.
  base.workload.max_history = 64;
  auto capped = ConfigForCell(base, "taobao", "steady", 8);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->config.workload.max_history, 64);
}

TEST(ConfigForCell, RefusesAScaleThatLeavesNoRoomNamingTheKey) {
  auto cell = ConfigForCell(Base(), "amazon-video-games", "steady", 1e6);
  ASSERT_FALSE(cell.ok());
  EXPECT_NE(cell.status().message().find("simulator.sweep_scales"), std::string::npos);
}

TEST(EstimateCapacityPerNode, GrowsWithWorkersAndShrinksWithCandidates) {
  config::Config c = Base();
  c.workload.profile = "taobao";
  auto cost = CostModelForConfig(c);
  ASSERT_TRUE(cost.ok());
  auto one = EstimateCapacityPerNode(c, *cost);
  ASSERT_TRUE(one.ok());
  c.node.workers = 4;
  EXPECT_NEAR(*EstimateCapacityPerNode(c, *cost) / *one, 2.0, 1e-9);
  c.workload.candidates = 512;
  EXPECT_LT(*EstimateCapacityPerNode(c, *cost), 2 * *one);
  c.simulator.load = 0.5;
  c.simulator.num_nodes = 3;
  EXPECT_NEAR(*OfferedRate(c), 0.5 * 3 * *EstimateCapacityPerNode(c, *cost), 1e-6);
}

TEST(OfferedRate, PeakBasisPutsTheLoadOnTheRegimesHighestRate) {
  config::Config c = Base();
  c.workload.profile = "taobao";
  c.simulator.load = 0.6;
  c.simulator.num_nodes = 2;
  auto base = OfferedRate(c);
  ASSERT_TRUE(base.ok());
  c.simulator.load_basis = "peak";
  EXPECT_NEAR(*OfferedRate(c), *base, 1e-9);  // steady: its peak is its rate
  c.workload.regime = "trend";
  c.workload.trend_amplitude = 0.5;
  EXPECT_NEAR(*OfferedRate(c), *base / 1.5, 1e-9);
  c.workload.regime = "burst";
  c.workload.burst_rate_multiplier = 3;
  EXPECT_NEAR(*OfferedRate(c), *base / 3, 1e-9);
  // Phases: the highest of them.
  c.workload.phases = "steady:5,trend:5";
  EXPECT_NEAR(*OfferedRate(c), *base / 1.5, 1e-9);
  c.workload.phases = "steady:5,nope:5";
  EXPECT_FALSE(OfferedRate(c).ok());
}

// Two cells (amazon-video-games at scale 2, steady and burst), static splits from 0.2 to 0.8
// `step` apart, the oracle's candidates 0.05, 0.45, 0.85, and `controllers`.
config::Config TwoCells(double step, std::vector<std::string> controllers) {
  config::Config c = Base();
  c.simulator.sweep_profiles = {"amazon-video-games"};
  c.simulator.sweep_regimes = {"steady", "burst"};
  c.simulator.sweep_scales = {"2"};
  c.simulator.sweep_split_min = 0.2;
  c.simulator.sweep_split_max = 0.8;
  c.simulator.sweep_split_step = step;
  c.simulator.sweep_controllers = std::move(controllers);
  c.control.oracle_step = 0.4;
  c.control.interval_ms = 1000;
  return c;
}

TEST(RunSweep, RunsEveryStaticSplitAndTheControllersOfEveryCell) {
  config::Config c = TwoCells(0.3, {"heuristic", "oracle"});
  auto cells = RunSweep(c);
  ASSERT_TRUE(cells.ok()) << cells.status();
  ASSERT_EQ(cells->size(), 2u);
  for (const SweepCell& cell : *cells) {
    ASSERT_EQ(cell.runs.size(), 5u);  // 0.2, 0.5, 0.8, heuristic, oracle
    const SweepRun* best = cell.BestStatic();
    ASSERT_NE(best, nullptr);
    for (const SweepRun& r : cell.runs) {
      if (r.controller == "static") {
        EXPECT_LE(best->p99_ms, r.p99_ms);
      }
      EXPECT_GT(r.throughput_per_s, 0) << r.controller;
    }
    EXPECT_EQ(cell.Controller("oracle")->tracking_error, 0);
    EXPECT_GE(cell.Controller("heuristic")->tracking_error, 0);
    EXPECT_GT(cell.pool_bytes, 0);
  }
  const std::string csv = SweepCsv(*cells);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 2 * 5);
  // A cell per thread gives the very same sweep (oracle included).
  c.simulator.sweep_threads = 2;
  auto threaded = RunSweep(c);
  ASSERT_TRUE(threaded.ok()) << threaded.status();
  EXPECT_EQ(SweepCsv(*threaded), csv);
  EXPECT_GE(BestStaticSplitSpread(*cells), 0);
  EXPECT_LE(BestStaticSplitSpread(*cells), 0.6);
}

// amazon-video-games at scale 2 in `regimes`, static splits 0.2 and 0.8, each cell's capacity
// measured by runs of `seconds` and 70% of it offered for as long.
config::Config CapacityCells(std::vector<std::string> regimes, double seconds) {
  config::Config c = Base();
  c.simulator.sweep_profiles = {"amazon-video-games"};
  c.simulator.sweep_regimes = std::move(regimes);
  c.simulator.sweep_scales = {"2"};
  c.simulator.sweep_split_min = 0.2;
  c.simulator.sweep_split_max = 0.8;
  c.simulator.sweep_split_step = 0.6;
  c.simulator.load = 0.7;
  c.simulator.sweep_capacity_s = seconds;
  c.simulator.duration_s = c.workload.duration_s = seconds;
  return c;
}

TEST(RunSweep, MeasuresACellsCapacityAndOffersItsLoadOfIt) {
  config::Config c = CapacityCells({"steady"}, 0.5);
  auto cells = RunSweep(c);
  ASSERT_TRUE(cells.ok()) << cells.status();
  ASSERT_EQ(cells->size(), 1u);
  const SweepCell& cell = cells->front();
  EXPECT_GT(cell.capacity_per_s, 0);
  EXPECT_NEAR(cell.rate_per_s, 0.7 * cell.capacity_per_s, 1e-6);
  // The capacity runs were offered 3x the estimate: none can have served more than that.
  auto cost = CostModelForConfig(c);
  ASSERT_TRUE(cost.ok());
  config::Config cell_config = c;
  cell_config.workload.profile = "amazon-video-games";
  EXPECT_LE(cell.capacity_per_s,
            3.15 * c.simulator.num_nodes * *EstimateCapacityPerNode(cell_config, *cost));
  // The runs themselves were offered 70% of it.
  for (const SweepRun& r : cell.runs) EXPECT_LE(r.throughput_per_s, 1.1 * cell.rate_per_s);

  // With the load on the peak, a burst cell's flash crowd (3x its base rate) is what sits at 70%
  // of its capacity.
  c.simulator.sweep_regimes = {"burst"};
  c.simulator.load_basis = "peak";
  auto burst = RunSweep(c);
  ASSERT_TRUE(burst.ok()) << burst.status();
  EXPECT_GT(burst->front().capacity_per_s, 0);
  EXPECT_NEAR(burst->front().rate_per_s, 0.7 * burst->front().capacity_per_s / 3, 1e-6);
  // The capacity runs themselves do not depend on where the load sits.
  c.simulator.load_basis = "base";
  auto burst_base = RunSweep(c);
  ASSERT_TRUE(burst_base.ok()) << burst_base.status();
  EXPECT_EQ(burst_base->front().capacity_per_s, burst->front().capacity_per_s);
}

// A capacity run is steady whatever its cell's regime, so the regimes of one profile share them:
// each is simulated once per sweep, and each cell gets the capacity it would get alone.
TEST(RunSweep, RegimesOfAProfileShareTheirCapacityRuns) {
  config::Config c = CapacityCells({"steady", "burst"}, 0.25);
  int capacity_runs = 0;
  SweepHooks count;
  count.progress = [&](int, int, const std::string& what) {
    capacity_runs += what.rfind("capacity", 0) == 0;
  };
  auto both = RunSweep(c, count);
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(capacity_runs, 2) << "one run per static split (0.2, 0.8), not one per cell";
  ASSERT_EQ(both->size(), 2u);
  c.simulator.sweep_regimes = {"burst"};
  auto alone = RunSweep(c);
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_EQ((*both)[1].capacity_per_s, alone->front().capacity_per_s);
  EXPECT_EQ((*both)[0].capacity_per_s, (*both)[1].capacity_per_s);
  EXPECT_EQ(SweepCsv({(*both)[1]}), SweepCsv(*alone));
}

TEST(ApplyControllerRow, EachRowIsTheConfigEditItNames) {
  config::Config c = Base();
  c.control.policy_path = "base.json";
  ASSERT_TRUE(ApplyControllerRow("heuristic", c).ok());
  EXPECT_EQ(c.control.policy, "heuristic");
  config::Config marginal = c;
  ASSERT_TRUE(ApplyControllerRow("marginal", marginal).ok());
  EXPECT_EQ(marginal.control.policy, "marginal");
  config::Config predictive = c;
  ASSERT_TRUE(ApplyControllerRow("predictive", predictive).ok());
  EXPECT_EQ(predictive.control.policy, "predictive");
  struct Row {
    std::string name;
    bool adapter, recovery;
    std::string router;
  };
  for (const Row& row :
       {Row{"helm-base", false, false, c.router.policy},
        Row{"helm-adapter", true, false, c.router.policy}, Row{"helm", true, true, c.router.policy},
        Row{"helm-rr", true, true, "round_robin"}}) {
    config::Config run = c;
    ASSERT_TRUE(ApplyControllerRow(row.name, run).ok()) << row.name;
    EXPECT_EQ(run.control.policy, "helm") << row.name;
    EXPECT_EQ(run.control.adapter, row.adapter) << row.name;
    EXPECT_EQ(run.control.recovery, row.recovery) << row.name;
    EXPECT_EQ(run.router.policy, row.router) << row.name;
  }
  const absl::Status unknown = ApplyControllerRow("ppo", c);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.message().find("heuristic, marginal, predictive, oracle"), std::string::npos)
      << unknown;
}

TEST(RunSweep, ResumesFromSavedCellsWithoutRunningThemAgain) {
  config::Config c = TwoCells(0.6, {"oracle"});
  c.simulator.duration_s = c.workload.duration_s = 1;
  // The first sweep saves its cells as JSON.
  std::vector<std::string> saved;
  std::vector<std::string> fingerprints;
  SweepHooks save;
  save.cell_done = [&](const SweepCell& cell, const std::string& fingerprint) {
    saved.push_back(SweepCellJson(cell, fingerprint, "rev-a"));
    fingerprints.push_back(fingerprint);
  };
  auto first = RunSweep(c, save);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_NE(fingerprints[0], fingerprints[1]) << "the two regimes are different cells";
  // Every figure survives the round trip to the last bit.
  for (size_t i = 0; i < saved.size(); ++i) {
    auto parsed = ParseSweepCell(saved[i]);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->fingerprint, fingerprints[i]);
    EXPECT_EQ(parsed->revision, "rev-a");
    EXPECT_EQ(SweepCsv({parsed->cell}), SweepCsv({(*first)[i]}));
  }
  // The second sweep restores the steady cell from its save and runs only the burst cell.
  std::vector<std::string> ran;
  SweepHooks resume;
  resume.progress = [&](int cell, int, const std::string&) {
    ran.push_back((*first)[cell].regime);
  };
  resume.restore = [&](const SweepCell& planned,
                       const std::string& fingerprint) -> std::optional<SweepCell> {
    if (planned.regime != "steady") return std::nullopt;
    auto parsed = ParseSweepCell(saved[0]);
    EXPECT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->fingerprint, fingerprint) << "the same config, the same fingerprint";
    return parsed->cell;
  };
  auto second = RunSweep(c, resume);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(SweepCsv(*second), SweepCsv(*first));
  ASSERT_FALSE(ran.empty());
  for (const std::string& regime : ran) EXPECT_EQ(regime, "burst");
  // What chooses the cells or runs them in parallel is not part of a cell's fingerprint; what it
  // measures is.
  config::Config cell = c;
  cell.workload.regime = "steady";
  const std::string fingerprint = CellFingerprint(cell);
  config::Config other = cell;
  other.simulator.sweep_regimes = {"steady"};
  other.simulator.sweep_threads = 2;
  EXPECT_EQ(CellFingerprint(other), fingerprint);
  other.simulator.duration_s = 2;
  EXPECT_NE(CellFingerprint(other), fingerprint);
}

TEST(ParseSweepCell, NamesWhatIsWrong) {
  EXPECT_NE(ParseSweepCell("not json").status().message().find("not a JSON object"),
            std::string::npos);
  EXPECT_NE(ParseSweepCell(R"({"format": "other"})").status().message().find("format"),
            std::string::npos);
  EXPECT_NE(ParseSweepCell(R"({"format": 1})").status().message().find("format"),
            std::string::npos);
  SweepCell cell;
  cell.profile = "taobao";
  cell.regime = "steady";
  cell.runs.push_back(SweepRun{.controller = "static", .split = 0.5, .p99_ms = 3.25});
  std::string json = SweepCellJson(cell, "0123456789abcdef", "rev");
  ASSERT_TRUE(ParseSweepCell(json).ok());
  const size_t at = json.find("\"p99_ms\"");
  ASSERT_NE(at, std::string::npos);
  json.replace(at, 8, "\"p99_xx\"");
  auto bad = ParseSweepCell(json);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'p99_ms' is missing"), std::string::npos) << bad.status();
}

TEST(RunSweep, BadSweepKeysAreNamed) {
  config::Config c = Base();
  c.simulator.sweep_profiles = {"amazon-video-games"};
  c.simulator.sweep_scales = {"two"};
  auto bad = RunSweep(c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("simulator.sweep_scales"), std::string::npos);
  c.simulator.sweep_scales = {};
  c.simulator.sweep_regimes = {"weekly"};
  bad = RunSweep(c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("simulator.sweep_regimes"), std::string::npos);
  c.simulator.sweep_regimes = {};
  c.simulator.sweep_controllers = {"bogus"};
  bad = RunSweep(c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("simulator.sweep_controllers"), std::string::npos);
  c.simulator.sweep_controllers = {"helm"};  // a helm row needs the base policy's file
  bad = RunSweep(c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("control.policy_path"), std::string::npos);
  c.simulator.sweep_controllers = {};
  c.simulator.sweep_profiles = {"netflix"};
  c.simulator.sweep_scales = {"2"};
  bad = RunSweep(c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("simulator.sweep_profiles"), std::string::npos);
}

}  // namespace
}  // namespace helm::sim
