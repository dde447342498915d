// Presentation of a load-generator Report: the end-of-run table, the JSON summary, the per-second
// CSV time series, the HELM_RESULT lines harnesses pick up, and the PNG plot (made by
// scripts/plot_bench.py). Free functions over caller-owned values; thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/stats.h"
#include "nlohmann/json.hpp"

namespace helm::bench {

// Extra facts printed with the report and stored in the JSON (target, workload, ...).
struct RunInfo {
  std::string target;
  std::string profile;
  std::string phases;  // e.g. "steady:20,trend:30,burst:20"
  double rate_per_s = 0;
  uint64_t seed = 0;
  int32_t deadline_ms = 0;
  int32_t max_in_flight = 0;
};

// The human-readable table: overall and per phase (rows), errors by code, per node.
std::string FormatTable(const Report& report, const RunInfo& info);

// `HELM_RESULT <name> <value>` lines for the headline figures of the run: p99_us (when any
// request succeeded), slo_attainment, goodput_per_s, and, when replies or node stats carried
// them, kv_token_hit_ratio and emb_hit_rate.
std::string ResultLines(const Report& report);

nlohmann::json ToJson(const Report& report, const RunInfo& info);

// Writes the JSON summary / the CSV time series (one row per second: sent, ok, errors, p50, p99,
// then per node split, KV token hit ratio and EMB hit rate; empty cells where there is no data).
absl::Status WriteJson(const Report& report, const RunInfo& info, const std::string& path);
absl::Status WriteCsv(const Report& report, const std::string& path);

// Runs `python script --csv csv_path --out png_path [extra_args...]`. FailedPrecondition when
// `python` cannot import matplotlib (the plot is then skipped); Internal when the script fails.
absl::Status MakePlot(const std::string& python, const std::string& script,
                      const std::string& csv_path, const std::string& png_path,
                      const std::vector<std::string>& extra_args = {});

// Writes one row per scheduled request, in schedule order: seq, scheduled_ms, phase, code
// (grpc::StatusCode, or -1 when dropped), node, send_lag_us, latency_us and the reply's serving
// info (queue_us, compute_us, batch_size, attempts, cached/computed tokens, EMB hits/misses), so
// that a slow request can be traced to the node's queue, its compute or the path around them.
absl::Status WriteRequestsCsv(const RunResult& run, const std::string& path);

// Writes the transport calibration helm-sim reads (simulator.transport_path; sim/cost_model.h
// LoadTransportCalibration): the quantiles of the time each OK request spent outside the nodes (its
// latency less its queue_us and compute_us: the client's send lag, the gRPC hops, the router, their
// threads), with where and how they were measured. FailedPrecondition when no OK reply carried its
// serving info.
absl::Status WriteTransportCalibration(const RunResult& run, const RunInfo& info,
                                       const std::string& path);

// Writes summary.json, timeseries.csv and requests.csv (WriteRequestsCsv) into `out_dir` (created
// when missing) and, unless `python` is empty, plot.png with `plot_script`. Returns one line
// naming the files written, and why the plot was skipped when it was (not an error); an error
// when a file cannot be written.
absl::StatusOr<std::string> WriteRunFiles(const RunResult& run, const Report& report,
                                          const RunInfo& info, const std::string& out_dir,
                                          const std::string& python,
                                          const std::string& plot_script);

}  // namespace helm::bench
