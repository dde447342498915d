#include "helm/sim/paper_table.h"

#include <map>

#include "gtest/gtest.h"

namespace helm::sim {
namespace {

SweepRun Run(const std::string& controller, double split, double p99, double slo = 1.0,
             double goodput = 100, double tracking = -1) {
  SweepRun r;
  r.controller = controller;
  r.split = split;
  r.p99_ms = p99;
  r.slo_attainment = slo;
  r.goodput_per_s = goodput;
  r.tracking_error = tracking;
  return r;
}

// Two cells whose best static splits differ: 0.2 in the first, 0.8 in the second.
std::vector<SweepCell> Cells() {
  SweepCell a;
  a.profile = "taobao";
  a.regime = "steady";
  a.runs = {Run("static", 0.2, 10), Run("static", 0.5, 12), Run("static", 0.8, 30),
            Run("helm", 0.5, 9, 0.995, 110, 0.02), Run("oracle", 0.5, 8, 1.0, 120, 0)};
  SweepCell b;
  b.profile = "amazon-books";
  b.regime = "burst";
  b.runs = {Run("static", 0.2, 40), Run("static", 0.5, 24), Run("static", 0.8, 20),
            Run("helm", 0.5, 18, 0.97, 95, 0.04), Run("oracle", 0.5, 17, 0.99, 100, 0)};
  return {a, b};
}

TEST(PaperTable, PicksTheGlobalStaticByItsWorstRatioAndComputesTheHeadlines) {
  absl::StatusOr<PaperTable> t = MakePaperTable(Cells());
  ASSERT_TRUE(t.ok()) << t.status();
  // Worst ratios: 0.2 -> max(1, 2) = 2; 0.5 -> max(1.2, 1.2) = 1.2; 0.8 -> max(3, 1) = 3.
  EXPECT_DOUBLE_EQ(t->global_split, 0.5);
  EXPECT_DOUBLE_EQ(t->global_worst_ratio, 1.2);
  ASSERT_EQ(t->rows, (std::vector<std::string>{"static-global", "static-cell", "helm", "oracle"}));
  EXPECT_EQ(t->cells, (std::vector<std::string>{"taobao/steady", "amazon-books/burst"}));
  EXPECT_DOUBLE_EQ(t->runs[1][0].split, 0.2);  // each cell's own best
  EXPECT_DOUBLE_EQ(t->runs[1][1].split, 0.8);
  std::map<std::string, double> h(t->headlines.begin(), t->headlines.end());
  EXPECT_DOUBLE_EQ(h.at("p99_vs_global_static_worst"), std::max(9.0 / 12, 18.0 / 24));
  EXPECT_DOUBLE_EQ(h.at("p99_vs_cell_static_worst"), std::max(9.0 / 10, 18.0 / 20));
  EXPECT_DOUBLE_EQ(h.at("slo_min_steady_trend"), 0.995);
  EXPECT_DOUBLE_EQ(h.at("slo_min_burst"), 0.97);
  EXPECT_DOUBLE_EQ(h.at("tracking_error_mean"), 0.03);
  EXPECT_DOUBLE_EQ(h.at("goodput_vs_cell_static_min"), 0.95);
  // The room: hindsight per cell gets 10/12 and 20/24 of the global split's P99, the oracle 8/12
  // and 17/24; each figure is the cell where it gets least.
  EXPECT_DOUBLE_EQ(h.at("cell_static_p99_vs_global_static_worst"), std::max(10.0 / 12, 20.0 / 24));
  EXPECT_DOUBLE_EQ(h.at("oracle_p99_vs_global_static_worst"), 17.0 / 24);
  EXPECT_DOUBLE_EQ(h.at("oracle_p99_vs_cell_static_worst"), std::max(8.0 / 10, 17.0 / 20));
  const std::string md = PaperTableMarkdown(*t);
  EXPECT_NE(md.find("| amazon-books/burst | helm | adaptive | 18.00 | 0.9700 |"), std::string::npos)
      << md;
  EXPECT_NE(PaperTableJson(*t).find("\"p99_vs_global_static_worst\""), std::string::npos);
}

TEST(PaperTable, RefusesCellsWithDifferentStaticSplitsOrMissingRows) {
  std::vector<SweepCell> cells = Cells();
  cells[1].runs[0].split = 0.25;
  EXPECT_FALSE(MakePaperTable(cells).ok());
  cells = Cells();
  cells[1].runs.pop_back();  // no oracle in the second cell
  EXPECT_FALSE(MakePaperTable(cells).ok());
  EXPECT_FALSE(MakePaperTable({}).ok());
  // Without a helm row there is a table and only the room figures; without an oracle, only the
  // per-cell one.
  cells = Cells();
  for (SweepCell& c : cells) c.runs.erase(c.runs.begin() + 3);
  absl::StatusOr<PaperTable> t = MakePaperTable(cells);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->headlines.size(), 3u);
  EXPECT_EQ(t->headlines[0].first, "cell_static_p99_vs_global_static_worst");
  EXPECT_EQ(t->headlines[1].first, "oracle_p99_vs_global_static_worst");
  EXPECT_EQ(t->headlines[2].first, "oracle_p99_vs_cell_static_worst");
  for (SweepCell& c : cells) c.runs.pop_back();
  t = MakePaperTable(cells);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->headlines.size(), 1u);
  EXPECT_EQ(t->headlines[0].first, "cell_static_p99_vs_global_static_worst");
}

}  // namespace
}  // namespace helm::sim
