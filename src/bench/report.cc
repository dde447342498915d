#include "bench/report.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace helm::bench {
namespace {

std::string Ratio3(double v) { return v < 0 ? "n/a" : absl::StrFormat("%.3f", v); }
std::string Split2(double v) { return v < 0 ? "n/a" : absl::StrFormat("%.2f", v); }
double Ms(int64_t us) { return static_cast<double>(us) / 1000.0; }

std::string SummaryRow(const Summary& s) {
  return absl::StrFormat(
      "%-10s %7.1f %7d %7d %7d %6d %6d %8.2f %8.2f %8.2f %8.2f %6.1f%% %9.1f %8.1f %7s %7s\n",
      s.name, s.duration_s, s.scheduled, s.sent, s.ok, s.errors, s.dropped, Ms(s.latency.p50_us),
      Ms(s.latency.p90_us), Ms(s.latency.p99_us), Ms(s.latency.p999_us), 100.0 * s.slo_attainment,
      s.goodput_per_s, s.throughput_per_s, Ratio3(s.kv_token_hit_ratio), Ratio3(s.emb_hit_rate));
}

nlohmann::json OrNull(double v) { return v < 0 ? nlohmann::json(nullptr) : nlohmann::json(v); }

nlohmann::json SummaryJson(const Summary& s) {
  nlohmann::json j;
  j["name"] = s.name;
  j["duration_s"] = s.duration_s;
  j["scheduled"] = s.scheduled;
  j["sent"] = s.sent;
  j["ok"] = s.ok;
  j["errors"] = s.errors;
  j["dropped"] = s.dropped;
  j["errors_by_code"] = s.errors_by_code;
  j["latency_us"] = {{"count", s.latency.count}, {"mean", s.latency.mean_us},
                     {"p50", s.latency.p50_us},  {"p90", s.latency.p90_us},
                     {"p99", s.latency.p99_us},  {"p999", s.latency.p999_us},
                     {"max", s.latency.max_us}};
  j["ok_within_slo"] = s.ok_within_slo;
  j["slo_attainment"] = s.slo_attainment;
  j["goodput_per_s"] = s.goodput_per_s;
  j["throughput_per_s"] = s.throughput_per_s;
  j["offered_per_s"] = s.offered_per_s;
  j["send_lag_us"] = {{"max", s.max_send_lag_us}, {"p99", s.p99_send_lag_us}};
  j["kv_token_hit_ratio"] = OrNull(s.kv_token_hit_ratio);
  j["emb_hit_rate"] = OrNull(s.emb_hit_rate);
  nlohmann::json nodes = nlohmann::json::array();
  for (const NodeSummary& n : s.nodes) {
    nodes.push_back(
        {{"node_id", n.node_id},
         {"replies", n.replies},
         {"kv_token_hit_ratio", OrNull(n.kv_token_hit_ratio)},
         {"emb_hit_rate", OrNull(n.emb_hit_rate)},
         {"split_first", OrNull(n.split_first)},
         {"split_last", OrNull(n.split_last)},
         {"split_min", OrNull(n.split_min)},
         {"split_max", OrNull(n.split_max)},
         {"node_kv_token_hit_ratio", OrNull(n.node_kv_token_hit_ratio)},
         {"node_emb_hit_rate", OrNull(n.node_emb_hit_rate)},
         {"control_policy", n.control_policy},
         {"control_decisions",
          n.control_decisions < 0 ? nlohmann::json(nullptr) : nlohmann::json(n.control_decisions)},
         {"control_reversals", n.control_reversals < 0 ? nlohmann::json(nullptr)
                                                       : nlohmann::json(n.control_reversals)}});
  }
  j["nodes"] = std::move(nodes);
  return j;
}

// The split controllers' decisions and reversals summed over the polled nodes.
struct ControlTotals {
  bool polled = false;  // some node reported its controller
  int64_t decisions = 0;
  int64_t reversals = 0;
};

ControlTotals SumControl(const Summary& s) {
  ControlTotals t;
  for (const NodeSummary& node : s.nodes) {
    if (node.control_decisions < 0) continue;
    t.polled = true;
    t.decisions += node.control_decisions;
    t.reversals += node.control_reversals;
  }
  return t;
}

// The run's hit ratios: from replies, else from the nodes' own counters (-1: neither).
double OverallKvHit(const Summary& s) {
  if (s.kv_token_hit_ratio >= 0) return s.kv_token_hit_ratio;
  double sum = 0;
  int n = 0;
  for (const NodeSummary& node : s.nodes) {
    if (node.node_kv_token_hit_ratio >= 0) {
      sum += node.node_kv_token_hit_ratio;
      ++n;
    }
  }
  return n > 0 ? sum / n : -1;
}

double OverallEmbHit(const Summary& s) {
  if (s.emb_hit_rate >= 0) return s.emb_hit_rate;
  double sum = 0;
  int n = 0;
  for (const NodeSummary& node : s.nodes) {
    if (node.node_emb_hit_rate >= 0) {
      sum += node.node_emb_hit_rate;
      ++n;
    }
  }
  return n > 0 ? sum / n : -1;
}

std::string ShellQuote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

// A non-negative value with 4 decimals; empty for -1 (unknown). The format is a literal: clang
// checks absl::StrFormat's format at compile time and refuses a runtime one.
std::string Cell(double v) { return v < 0 ? std::string() : absl::StrFormat("%.4f", v); }

}  // namespace

std::string FormatTable(const Report& report, const RunInfo& info) {
  std::string out;
  absl::StrAppendFormat(&out,
                        "helm-bench: target %s, profile %s, phases %s, rate %.1f/s, seed %d, SLO "
                        "%.1f ms, deadline %d ms, max in flight %d; wall %.1f s\n\n",
                        info.target, info.profile, info.phases, info.rate_per_s, info.seed,
                        report.slo_ms, info.deadline_ms, info.max_in_flight, report.wall_s);
  absl::StrAppendFormat(&out, "%-10s %7s %7s %7s %7s %6s %6s %8s %8s %8s %8s %7s %9s %8s %7s %7s\n",
                        "phase", "dur_s", "sched", "sent", "ok", "errors", "drop", "p50_ms",
                        "p90_ms", "p99_ms", "p99.9_ms", "SLO", "goodput/s", "ok/s", "kv_hit",
                        "emb_hit");
  for (const Summary& s : report.phases) out += SummaryRow(s);
  if (report.phases.size() > 1) out += SummaryRow(report.overall);
  const Summary& o = report.overall;
  absl::StrAppendFormat(
      &out,
      "\nlatency from each request's scheduled time; SLO = OK within %.1f ms over all scheduled "
      "requests; goodput = OK within SLO per second\n",
      report.slo_ms);
  absl::StrAppendFormat(&out, "sender: max send lag %.2f ms, p99 %.2f ms\n", Ms(o.max_send_lag_us),
                        Ms(o.p99_send_lag_us));
  if (!o.errors_by_code.empty()) {
    out += "errors by code:";
    for (const auto& [code, count] : o.errors_by_code) absl::StrAppend(&out, " ", code, " ", count);
    out += "\n";
    for (const auto& [code, message] : report.first_error) {
      absl::StrAppend(&out, "  first ", CodeName(code), ": ", message, "\n");
    }
  }
  if (!o.nodes.empty()) {
    absl::StrAppendFormat(&out, "\n%-22s %8s %7s %7s %-24s %8s %8s  %s\n", "node", "replies",
                          "kv_hit", "emb_hit", "split first->last [min..max]", "node_kv",
                          "node_emb", "controller: decisions / reversals");
    for (const NodeSummary& n : o.nodes) {
      const std::string split =
          n.split_last < 0 ? "n/a"
                           : absl::StrCat(Split2(n.split_first), "->", Split2(n.split_last), " [",
                                          Split2(n.split_min), "..", Split2(n.split_max), "]");
      const std::string control = n.control_decisions < 0
                                      ? "n/a"
                                      : absl::StrCat(n.control_policy, ": ", n.control_decisions,
                                                     " / ", n.control_reversals);
      absl::StrAppendFormat(&out, "%-22s %8d %7s %7s %-24s %8s %8s  %s\n", n.node_id, n.replies,
                            Ratio3(n.kv_token_hit_ratio), Ratio3(n.emb_hit_rate), split,
                            Ratio3(n.node_kv_token_hit_ratio), Ratio3(n.node_emb_hit_rate),
                            control);
    }
    out +=
        "kv_hit / emb_hit: from this run's replies (ServingInfo); node_kv / node_emb: the nodes' "
        "own counters (GetStats) over the run\n";
  }
  for (const std::string& error : report.poll_errors) {
    absl::StrAppend(&out, "node stats unavailable: ", error, "\n");
  }
  return out;
}

std::string ResultLines(const Report& report) {
  const Summary& o = report.overall;
  std::string out;
  // Without a single OK reply there is no latency to report (0 would read as a perfect score).
  if (o.ok > 0) absl::StrAppendFormat(&out, "HELM_RESULT p99_us %d\n", o.latency.p99_us);
  absl::StrAppendFormat(&out, "HELM_RESULT slo_attainment %.4f\n", o.slo_attainment);
  absl::StrAppendFormat(&out, "HELM_RESULT goodput_per_s %.2f\n", o.goodput_per_s);
  const double kv = OverallKvHit(o);
  const double emb = OverallEmbHit(o);
  if (kv >= 0) absl::StrAppendFormat(&out, "HELM_RESULT kv_token_hit_ratio %.4f\n", kv);
  if (emb >= 0) absl::StrAppendFormat(&out, "HELM_RESULT emb_hit_rate %.4f\n", emb);
  if (const ControlTotals c = SumControl(o); c.polled) {
    absl::StrAppendFormat(&out, "HELM_RESULT control_decisions %d\n", c.decisions);
    absl::StrAppendFormat(&out, "HELM_RESULT control_reversals %d\n", c.reversals);
  }
  return out;
}

nlohmann::json ToJson(const Report& report, const RunInfo& info) {
  nlohmann::json j;
  j["run"] = {{"target", info.target},
              {"profile", info.profile},
              {"phases", info.phases},
              {"rate_per_s", info.rate_per_s},
              {"seed", info.seed},
              {"slo_ms", report.slo_ms},
              {"deadline_ms", info.deadline_ms},
              {"max_in_flight", info.max_in_flight},
              {"wall_s", report.wall_s}};
  j["overall"] = SummaryJson(report.overall);
  nlohmann::json phases = nlohmann::json::array();
  for (const Summary& s : report.phases) phases.push_back(SummaryJson(s));
  j["phases"] = std::move(phases);
  j["node_ids"] = report.node_ids;
  nlohmann::json first_error = nlohmann::json::object();
  for (const auto& [code, message] : report.first_error) first_error[CodeName(code)] = message;
  j["first_error"] = std::move(first_error);
  j["poll_errors"] = report.poll_errors;
  const double kv = OverallKvHit(report.overall);
  const double emb = OverallEmbHit(report.overall);
  j["helm_result"] = {{"p99_us", report.overall.latency.p99_us},
                      {"slo_attainment", report.overall.slo_attainment},
                      {"goodput_per_s", report.overall.goodput_per_s},
                      {"kv_token_hit_ratio", OrNull(kv)},
                      {"emb_hit_rate", OrNull(emb)}};
  if (const ControlTotals c = SumControl(report.overall); c.polled) {
    j["helm_result"]["control_decisions"] = c.decisions;
    j["helm_result"]["control_reversals"] = c.reversals;
  }
  return j;
}

absl::Status WriteJson(const Report& report, const RunInfo& info, const std::string& path) {
  std::ofstream out(path);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path, "'"));
  out << ToJson(report, info).dump(2) << "\n";
  if (!out) return absl::DataLossError(absl::StrCat("error writing '", path, "'"));
  return absl::OkStatus();
}

absl::Status WriteCsv(const Report& report, const std::string& path) {
  std::ofstream out(path);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path, "'"));
  std::vector<std::string> header = {"t_s",    "phase",   "scheduled",     "sent",   "ok",
                                     "errors", "dropped", "ok_within_slo", "p50_us", "p99_us"};
  for (const std::string& id : report.node_ids) {
    const std::string safe = absl::StrReplaceAll(id, {{",", "_"}, {" ", "_"}});
    header.push_back(absl::StrCat("split:", safe));
    header.push_back(absl::StrCat("kv_hit:", safe));
    header.push_back(absl::StrCat("emb_hit:", safe));
  }
  out << absl::StrJoin(header, ",") << "\n";
  for (const SecondRow& row : report.series) {
    const std::string phase =
        row.phase < static_cast<int32_t>(report.phases.size()) ? report.phases[row.phase].name : "";
    // Percentiles of a second without an OK reply are empty cells, not zeros.
    const std::string p50 = row.ok > 0 ? absl::StrCat(row.p50_us) : "";
    const std::string p99 = row.ok > 0 ? absl::StrCat(row.p99_us) : "";
    out << absl::StrCat(row.t_s, ",", phase, ",", row.scheduled, ",", row.sent, ",", row.ok, ",",
                        row.errors, ",", row.dropped, ",", row.ok_within_slo, ",", p50, ",", p99);
    for (size_t n = 0; n < report.node_ids.size(); ++n) {
      out << "," << Cell(row.split[n]) << "," << Cell(row.kv_token_hit_ratio[n]) << ","
          << Cell(row.emb_hit_rate[n]);
    }
    out << "\n";
  }
  if (!out) return absl::DataLossError(absl::StrCat("error writing '", path, "'"));
  return absl::OkStatus();
}

absl::Status MakePlot(const std::string& python, const std::string& script,
                      const std::string& csv_path, const std::string& png_path,
                      const std::vector<std::string>& extra_args) {
  const std::string probe =
      absl::StrCat(ShellQuote(python), " -c 'import matplotlib' >/dev/null 2>&1");
  if (std::system(probe.c_str()) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        python, " cannot import matplotlib (Debian: apt-get install python3-matplotlib)"));
  }
  std::string command = absl::StrCat(ShellQuote(python), " ", ShellQuote(script), " --csv ",
                                     ShellQuote(csv_path), " --out ", ShellQuote(png_path));
  for (const std::string& arg : extra_args) absl::StrAppend(&command, " ", ShellQuote(arg));
  if (const int rc = std::system(command.c_str()); rc != 0) {
    return absl::InternalError(absl::StrCat("plot script failed (status ", rc, "): ", command));
  }
  return absl::OkStatus();
}

absl::Status WriteRequestsCsv(const RunResult& run, const std::string& path) {
  std::ofstream out(path);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path, "'"));
  out << "seq,scheduled_ms,phase,code,node,send_lag_us,latency_us,queue_us,compute_us,batch_size,"
         "attempts,cached_tokens,computed_tokens,emb_hits,emb_misses\n";
  for (size_t seq = 0; seq < run.completions.size(); ++seq) {
    const Completion& c = run.completions[seq];
    const std::string phase =
        c.phase < static_cast<int32_t>(run.phases.size()) ? run.phases[c.phase].name : "";
    const std::string node = c.node >= 0 && c.node < static_cast<int32_t>(run.node_ids.size())
                                 ? run.node_ids[c.node]
                                 : "";
    out << absl::StrCat(seq, ",", absl::StrFormat("%.3f", c.scheduled_us / 1000.0), ",", phase, ",",
                        c.code, ",", node, ",", c.send_lag_us, ",", c.latency_us, ",",
                        c.info.queue_us, ",", c.info.compute_us, ",", c.info.batch_size, ",",
                        c.info.attempts, ",", c.info.cached_tokens, ",", c.info.computed_tokens,
                        ",", c.info.emb_hits, ",", c.info.emb_misses, "\n");
  }
  if (!out) return absl::DataLossError(absl::StrCat("error writing '", path, "'"));
  return absl::OkStatus();
}

absl::Status WriteTransportCalibration(const RunResult& run, const RunInfo& info,
                                       const std::string& path) {
  std::vector<int64_t> outside;
  for (const Completion& c : run.completions) {
    if (c.code != 0 || c.info.compute_us <= 0) continue;
    outside.push_back(std::max<int64_t>(0, c.latency_us - c.info.queue_us - c.info.compute_us));
  }
  if (outside.empty()) {
    return absl::FailedPreconditionError(
        "transport calibration: no OK reply carried its serving info (queue_us, compute_us)");
  }
  std::sort(outside.begin(), outside.end());
  // Every percentile, and finer steps in the tail.
  std::vector<double> quantiles;
  for (int i = 0; i <= 99; ++i) quantiles.push_back(i / 100.0);
  for (double q : {0.995, 0.999, 1.0}) quantiles.push_back(q);
  nlohmann::json points = nlohmann::json::array();
  for (double q : quantiles) {
    points.push_back({q, NearestRank(outside, q)});
  }
  const absl::Time now = absl::Now();
  nlohmann::json j = {
      {"method", absl::StrCat("helm-bench --transport-calibration: latency less the reply's "
                              "queue_us and compute_us, ",
                              outside.size(), " OK requests of ", info.profile, " (", info.phases,
                              ") at ", absl::StrFormat("%.1f", info.rate_per_s), "/s, seed ",
                              info.seed, ", target ", info.target)},
      {"date", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", now, absl::UTCTimeZone())},
      {"requests", outside.size()},
      {"rate_per_s", info.rate_per_s},
      {"outside_us_quantiles", points}};
  std::ofstream out(path);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path, "'"));
  out << j.dump(2) << "\n";
  if (!out) return absl::DataLossError(absl::StrCat("error writing '", path, "'"));
  return absl::OkStatus();
}

absl::StatusOr<std::string> WriteRunFiles(const RunResult& run, const Report& report,
                                          const RunInfo& info, const std::string& out_dir,
                                          const std::string& python,
                                          const std::string& plot_script) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", out_dir, ": ", ec.message()));
  const std::string json_path = out_dir + "/summary.json";
  const std::string csv_path = out_dir + "/timeseries.csv";
  const std::string png_path = out_dir + "/plot.png";
  if (absl::Status s = WriteJson(report, info, json_path); !s.ok()) return s;
  if (absl::Status s = WriteCsv(report, csv_path); !s.ok()) return s;
  const std::string requests_path = out_dir + "/requests.csv";
  if (absl::Status s = WriteRequestsCsv(run, requests_path); !s.ok()) return s;
  std::string line = absl::StrCat("files: ", json_path, ", ", csv_path, ", ", requests_path);
  if (!python.empty()) {
    const absl::Status plotted =
        MakePlot(python, plot_script, csv_path, png_path, {"--requests", requests_path});
    absl::StrAppend(&line, plotted.ok() ? absl::StrCat(", ", png_path)
                                        : absl::StrCat("\nplot skipped: ", plotted.message()));
  }
  return line;
}

}  // namespace helm::bench
