// The paper's table (issue 13, configs/sim/paper-table.yaml): a split sweep (sweep.h) over the
// paper's profiles x regimes, turned into one row per way of setting the split and one column
// group per cell.
//
// Rows, in order:
//   static-global  the one static split an operator would deploy everywhere: among the swept static
//                  splits, the one with the lowest worst-case ratio of its P99 to each cell's best
//                  static P99 (ties: the lower split);
//   static-cell    each cell's best static split (hindsight-tuned, a different split per cell);
//   then each row of simulator.sweep_controllers as it ran (heuristic, helm-base, helm-adapter,
//   helm, helm-rr, oracle: ApplyControllerRow).
// Columns per cell: P99, SLO attainment, goodput, tracking error (mean |split - oracle split| over
// windows and nodes, when the cell ran the oracle) and reversals (summed over nodes).
//
// Headline figures, from the `helm` row (absent when it did not run):
//   p99_vs_global_static_worst  max over cells of P99(helm) / P99(static-global)
//   p99_vs_cell_static_worst    max over cells of P99(helm) / P99(static-cell)
//   slo_min_steady_trend        min SLO attainment of helm over the steady and trend cells
//   slo_min_burst               min SLO attainment of helm over the burst cells
//   tracking_error_mean         mean over cells of helm's tracking error (cells with an oracle)
//   goodput_vs_cell_static_min  min over cells of goodput(helm) / goodput(static-cell)
// and, whatever rows ran, the room the cells leave any controller on the first figure:
//   cell_static_p99_vs_global_static_worst  max over cells of P99(static-cell) / P99(static-global)
//   oracle_p99_vs_global_static_worst       the same for the oracle, when it ran (the best split
//                                           chosen every window)
//   oracle_p99_vs_cell_static_worst         the oracle against each cell's hindsight-tuned split
//                                           (above 1: a cell where even the per-window best lost
//                                           to a fixed split)
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "helm/sim/sweep.h"

namespace helm::sim {

struct PaperTable {
  std::vector<std::string> cells;  // "profile/regime" (with "@scale" when cells differ in scale)
  std::vector<double> rate_per_s, capacity_per_s;  // per cell (capacity 0: not measured)
  std::vector<std::string> rows;
  std::vector<std::vector<SweepRun>> runs;  // [row][cell]
  double global_split = 0;                  // static-global's split
  double global_worst_ratio = 0;            // its worst P99 ratio to a cell's best static
  std::vector<std::pair<std::string, double>> headlines;  // name, value (in the order above)
};

// InvalidArgument when the cells have no static runs, or not the same static splits.
absl::StatusOr<PaperTable> MakePaperTable(const std::vector<SweepCell>& cells);

// A Markdown table: one line per row and cell (P99 ms, SLO, goodput/s, tracking error, reversals),
// then the headline figures.
std::string PaperTableMarkdown(const PaperTable& table);
// One JSON object: cells, rows, runs, global split and headlines.
std::string PaperTableJson(const PaperTable& table);

}  // namespace helm::sim
