// Options of the discrete-event simulator (the cluster's digital twin).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "helm/config/describe.h"

namespace helm::sim {

struct SimulatorOptions {
  int32_t num_nodes = 32;
  // Cost-model profile of each node's GPU: "a100" or "h100".
  std::string gpu = "a100";
  double duration_s = 600.0;  // simulated time (measured; after the warm-up)
  // Simulated seconds of steady load before duration_s, run but not measured: the caches fill and
  // the users' histories reach their stationary lengths (sweep.h) first. The oracle keeps the
  // initial split through it; the time series and windows files show it.
  double warmup_s = 0;
  uint64_t seed = 1;
  // Optional calibration file of measured kernel timings ("" : the profile's defaults).
  std::string calibration_path;
  // Offered load as a fraction of the cluster's estimated capacity (sweep.h:
  // EstimateCapacityPerNode); 0: workload.rate_per_s as given.
  double load = 0;
  // What `load` sets: "base", the workload's rate_per_s (steady's rate, trend's mean, burst's rate
  // outside the flash crowd), or "peak", the highest rate of any phase (trend's crest, the flash
  // crowd), the rate an operator provisions for.
  std::string load_basis = "base";
  // Time a request spends outside the nodes: the client -> router -> node gRPC hops and back
  // (half before admission, half after the answer). 0: not modelled.
  double rpc_overhead_us = 0;
  // A transport calibration (cost_model.h LoadTransportCalibration; helm-bench
  // --transport-calibration): each request's time outside the nodes is drawn from its measured
  // quantiles instead (half the smallest before admission, so arrivals keep their order; the rest
  // after the answer). "": rpc_overhead_us. Not with rpc_overhead_us > 0.
  std::string transport_path;
  // Share of the item ids each node's EMB cache simulates (emb/id_sampler.h: a hashed sample, in
  // a cache scaled to match; hit and miss counts are estimated for every id). 1: every id, exact.
  // The router's EMB locality then looks at the sampled candidates only (the summaries hold no
  // others).
  double emb_sample_rate = 1.0;
  // Bytes/s of the host thread's gather of EMB misses (cost_model.h "host gather"), overriding the
  // profile's or the calibration's. 0: theirs (the built-in profiles leave it out).
  double host_gather_bytes_per_s = 0;

  // The split sweep (sweep.h), run instead of one simulation when sweep_profiles is not empty:
  // every profile x regime x scale cell runs each static split from sweep_split_min to
  // sweep_split_max by sweep_split_step, then each of sweep_controllers.
  std::vector<std::string> sweep_profiles;
  std::vector<std::string> sweep_regimes;
  // Embedding footprint over pool size, one scale per entry (numbers > 0, e.g. "0.5", "2", "8").
  std::vector<std::string> sweep_scales;
  // Each cell's history cap (workload.max_history) as a multiple of its profile's mean history
  // (0: workload.max_history as configured). See sweep.h "Stationary histories".
  double sweep_history_cap = 0;
  double sweep_split_min = 0.1;
  double sweep_split_max = 0.9;
  double sweep_split_step = 0.05;
  // Simulated seconds of each capacity run (sweep.h; 0: simulator.load is a fraction of the
  // estimated capacity).
  double sweep_capacity_s = 0;
  // Cells simulated at once, one thread each (each simulation is single-threaded).
  int32_t sweep_threads = 1;
  // Rows run on every cell after the static splits (sweep.h ApplyControllerRow).
  std::vector<std::string> sweep_controllers;
  // Turn the sweep into the paper's table (paper_table.h): paper-table.md and .json, and each
  // cell's split over time under helm against the oracle.
  bool paper_table = false;

  template <class V>
  void Describe(V& v) {
    v.Field("num_nodes", num_nodes, "simulated nodes", config::InRange<int32_t>(1, 4096));
    v.Field("gpu", gpu, "cost-model profile (cpu: sim/cost_model.h's uncalibrated CPU)",
            config::OneOf({"a100", "h100", "cpu"}));
    v.Field("duration_s", duration_s, "simulated time (s)", config::InRange(0.001, 1e7));
    v.Field("warmup_s", warmup_s, "steady simulated seconds before the measured duration",
            config::InRange(0.0, 1e6));
    v.Field("seed", seed, "random seed");
    v.Field("calibration_path", calibration_path, "measured kernel timings (\"\": defaults)");
    v.Field("load", load, "offered load, fraction of estimated capacity (0: workload.rate_per_s)",
            config::InRange(0.0, 10.0));
    v.Field("load_basis", load_basis, "what load sets: the workload's base rate or its peak",
            config::OneOf({"base", "peak"}));
    v.Field("rpc_overhead_us", rpc_overhead_us,
            "per-request time outside the nodes: gRPC hops there and back (us)",
            config::InRange(0.0, 1e7));
    v.Field("transport_path", transport_path,
            "measured time outside the nodes, a helm-bench transport calibration (\"\": "
            "rpc_overhead_us)");
    v.Field("emb_sample_rate", emb_sample_rate,
            "share of item ids the EMB caches simulate (1: all, exact)",
            config::InRange(1e-4, 1.0));
    v.Field("host_gather_bytes_per_s", host_gather_bytes_per_s,
            "host thread's gather of EMB misses, bytes/s (0: the profile's)",
            config::InRange(0.0, 1e13));
    v.Field("sweep_profiles", sweep_profiles, "split sweep: workload profiles ([]: no sweep)");
    v.Field("sweep_regimes", sweep_regimes, "split sweep: regimes (steady, trend, burst)");
    v.Field("sweep_scales", sweep_scales, "split sweep: embedding footprint / pool, per scale");
    v.Field("sweep_history_cap", sweep_history_cap,
            "split sweep: history cap per cell, a multiple of the profile's mean (0: "
            "workload.max_history)",
            config::InRange(0.0, 1e4));
    v.Field("sweep_split_min", sweep_split_min, "split sweep: first static split",
            config::InRange(0.0, 1.0));
    v.Field("sweep_split_max", sweep_split_max, "split sweep: last static split",
            config::InRange(0.0, 1.0));
    v.Field("sweep_split_step", sweep_split_step, "split sweep: static split spacing",
            config::InRange(0.01, 1.0));
    v.Field("sweep_controllers", sweep_controllers,
            "split sweep: rows run on every cell (heuristic, marginal, predictive, oracle, "
            "helm-base, helm-adapter, helm, helm-rr)");
    v.Field("sweep_capacity_s", sweep_capacity_s,
            "split sweep: seconds of each capacity run (0: load is of the estimated capacity)",
            config::InRange(0.0, 1e6));
    v.Field("sweep_threads", sweep_threads, "split sweep: cells simulated at once, a thread each",
            config::InRange<int32_t>(1, 256));
    v.Field("paper_table", paper_table, "split sweep: report it as the paper's table");
  }
};

}  // namespace helm::sim
