#include "helm/sim/paper_table.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "sweep_json.h"

namespace helm::sim {
namespace {

std::vector<const SweepRun*> Statics(const SweepCell& cell) {
  std::vector<const SweepRun*> out;
  for (const SweepRun& r : cell.runs) {
    if (r.controller == "static") out.push_back(&r);
  }
  return out;
}

double Ratio(double a, double b) { return b > 0 ? a / b : std::numeric_limits<double>::infinity(); }

// Max over cells of P99(row) / P99(base).
double WorstP99Ratio(const std::vector<SweepRun>& row, const std::vector<SweepRun>& base) {
  double worst = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    worst = std::max(worst, Ratio(row[i].p99_ms, base[i].p99_ms));
  }
  return worst;
}

// The headline figures of the `helm` row (paper_table.h), when it ran.
void AddHeadlines(const std::vector<SweepCell>& cells, PaperTable& t) {
  const auto it = std::find(t.rows.begin(), t.rows.end(), "helm");
  if (it == t.rows.end()) return;
  const std::vector<SweepRun>& helm = t.runs[it - t.rows.begin()];
  double goodput = std::numeric_limits<double>::infinity();
  double slo_steady = 1, slo_burst = 1, tracking = 0;
  int tracked = 0;
  bool steady_seen = false, burst_seen = false;
  for (size_t i = 0; i < cells.size(); ++i) {
    goodput = std::min(goodput, Ratio(helm[i].goodput_per_s, t.runs[1][i].goodput_per_s));
    if (cells[i].regime == "burst") {
      slo_burst = std::min(slo_burst, helm[i].slo_attainment);
      burst_seen = true;
    } else {
      slo_steady = std::min(slo_steady, helm[i].slo_attainment);
      steady_seen = true;
    }
    if (helm[i].tracking_error >= 0) {
      tracking += helm[i].tracking_error;
      ++tracked;
    }
  }
  t.headlines.emplace_back("p99_vs_global_static_worst", WorstP99Ratio(helm, t.runs[0]));
  t.headlines.emplace_back("p99_vs_cell_static_worst", WorstP99Ratio(helm, t.runs[1]));
  if (steady_seen) t.headlines.emplace_back("slo_min_steady_trend", slo_steady);
  if (burst_seen) t.headlines.emplace_back("slo_min_burst", slo_burst);
  if (tracked > 0) t.headlines.emplace_back("tracking_error_mean", tracking / tracked);
  t.headlines.emplace_back("goodput_vs_cell_static_min", goodput);
}

}  // namespace

absl::StatusOr<PaperTable> MakePaperTable(const std::vector<SweepCell>& cells) {
  if (cells.empty()) return absl::InvalidArgumentError("paper table: no cells");
  const std::vector<const SweepRun*> first = Statics(cells.front());
  if (first.empty())
    return absl::InvalidArgumentError("paper table: the cells ran no static split");
  bool scales_differ = false;
  for (const SweepCell& c : cells) {
    scales_differ |= c.scale != cells.front().scale;
    const std::vector<const SweepRun*> statics = Statics(c);
    if (statics.size() != first.size()) {
      return absl::InvalidArgumentError("paper table: the cells ran different static splits");
    }
    for (size_t i = 0; i < statics.size(); ++i) {
      if (std::abs(statics[i]->split - first[i]->split) > 1e-9) {
        return absl::InvalidArgumentError("paper table: the cells ran different static splits");
      }
    }
  }
  PaperTable t;
  for (const SweepCell& c : cells) {
    t.rate_per_s.push_back(c.rate_per_s);
    t.capacity_per_s.push_back(c.capacity_per_s);
    t.cells.push_back(scales_differ ? absl::StrFormat("%s/%s@%g", c.profile, c.regime, c.scale)
                                    : absl::StrCat(c.profile, "/", c.regime));
  }
  // static-global: the split whose worst ratio to each cell's best static P99 is lowest.
  size_t global = 0;
  t.global_worst_ratio = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < first.size(); ++i) {
    double worst = 0;
    for (const SweepCell& c : cells) {
      worst = std::max(worst, Ratio(Statics(c)[i]->p99_ms, c.BestStatic()->p99_ms));
    }
    if (worst < t.global_worst_ratio) {
      t.global_worst_ratio = worst;
      global = i;
    }
  }
  t.global_split = first[global]->split;
  t.rows = {"static-global", "static-cell"};
  t.runs.resize(2);
  for (const SweepCell& c : cells) {
    t.runs[0].push_back(*Statics(c)[global]);
    t.runs[1].push_back(*c.BestStatic());
  }
  for (const SweepRun& r : cells.front().runs) {
    if (r.controller == "static") continue;
    std::vector<SweepRun> row;
    for (const SweepCell& c : cells) {
      const SweepRun* run = c.Controller(r.controller);
      if (run == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("paper table: cell ", t.cells[row.size()], " lacks row ", r.controller));
      }
      row.push_back(*run);
    }
    t.rows.push_back(r.controller);
    t.runs.push_back(std::move(row));
  }
  AddHeadlines(cells, t);
  // The room the landscapes leave: how far below the global static split hindsight gets, per
  // cell (the hindsight-tuned split) and per window (the oracle), in the cell where it gets least.
  t.headlines.emplace_back("cell_static_p99_vs_global_static_worst",
                           WorstP99Ratio(t.runs[1], t.runs[0]));
  const auto oracle = std::find(t.rows.begin(), t.rows.end(), "oracle");
  if (oracle != t.rows.end()) {
    const std::vector<SweepRun>& o = t.runs[oracle - t.rows.begin()];
    t.headlines.emplace_back("oracle_p99_vs_global_static_worst", WorstP99Ratio(o, t.runs[0]));
    t.headlines.emplace_back("oracle_p99_vs_cell_static_worst", WorstP99Ratio(o, t.runs[1]));
  }
  return t;
}

std::string PaperTableMarkdown(const PaperTable& t) {
  std::string out = absl::StrFormat(
      "static-global = split %.2f (worst P99 %.3fx a cell's best static)\n\n"
      "| cell | row | split | P99 ms | SLO | goodput/s | tracking error | reversals |\n"
      "| --- | --- | --- | --- | --- | --- | --- | --- |\n",
      t.global_split, t.global_worst_ratio);
  std::string rates =
      "Offered rate per cell (of its capacity under its best static split, where measured):";
  for (size_t c = 0; c < t.cells.size(); ++c) {
    absl::StrAppendFormat(&rates, " %s %.0f/s", t.cells[c], t.rate_per_s[c]);
    if (t.capacity_per_s[c] > 0) absl::StrAppendFormat(&rates, " (of %.0f/s)", t.capacity_per_s[c]);
    rates += c + 1 < t.cells.size() ? ";" : ".\n\n";
  }
  out = rates + out;
  for (size_t c = 0; c < t.cells.size(); ++c) {
    for (size_t r = 0; r < t.rows.size(); ++r) {
      const SweepRun& run = t.runs[r][c];
      const std::string split =
          run.controller == "static" ? absl::StrFormat("%.2f", run.split) : std::string("adaptive");
      const std::string tracking =
          run.tracking_error >= 0 ? absl::StrFormat("%.3f", run.tracking_error) : "-";
      absl::StrAppendFormat(&out, "| %s | %s | %s | %.2f | %.4f | %.1f | %s | %d |\n", t.cells[c],
                            t.rows[r], split, run.p99_ms, run.slo_attainment, run.goodput_per_s,
                            tracking, run.reversals);
    }
  }
  if (!t.headlines.empty()) {
    out += "\n| headline | value |\n| --- | --- |\n";
    for (const auto& [name, value] : t.headlines) {
      absl::StrAppendFormat(&out, "| %s | %.4f |\n", name, value);
    }
  }
  return out;
}

std::string PaperTableJson(const PaperTable& t) {
  nlohmann::ordered_json j;
  j["cells"] = t.cells;
  j["rows"] = t.rows;
  j["rate_per_s"] = t.rate_per_s;
  j["capacity_per_s"] = t.capacity_per_s;
  j["global_split"] = t.global_split;
  j["global_worst_ratio"] = t.global_worst_ratio;
  nlohmann::ordered_json runs = nlohmann::ordered_json::array();
  for (size_t r = 0; r < t.rows.size(); ++r) {
    for (size_t c = 0; c < t.cells.size(); ++c) {
      nlohmann::ordered_json run = {{"row", t.rows[r]}, {"cell", t.cells[c]}};
      run.update(internal::SweepRunJson(t.runs[r][c]));
      runs.push_back(std::move(run));
    }
  }
  j["runs"] = std::move(runs);
  nlohmann::ordered_json headlines = nlohmann::ordered_json::object();
  for (const auto& [name, value] : t.headlines) headlines[name] = value;
  j["headlines"] = std::move(headlines);
  return j.dump(2);
}

}  // namespace helm::sim
