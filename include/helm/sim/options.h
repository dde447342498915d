// Options of the discrete-event simulator (the cluster's digital twin).
#pragma once

#include <cstdint>
#include <string>

#include "helm/config/describe.h"

namespace helm::sim {

struct SimulatorOptions {
  int32_t num_nodes = 32;
  // Cost-model profile of each node's GPU: "a100" or "h100".
  std::string gpu = "a100";
  double duration_s = 600.0;  // simulated time
  uint64_t seed = 1;
  // Optional calibration file of measured kernel timings ("" : the profile's defaults).
  std::string calibration_path;

  template <class V>
  void Describe(V& v) {
    v.Field("num_nodes", num_nodes, "simulated nodes", config::InRange<int32_t>(1, 4096));
    v.Field("gpu", gpu, "cost-model profile", config::OneOf({"a100", "h100"}));
    v.Field("duration_s", duration_s, "simulated time (s)", config::InRange(0.001, 1e7));
    v.Field("seed", seed, "random seed");
    v.Field("calibration_path", calibration_path, "measured kernel timings (\"\": defaults)");
  }
};

}  // namespace helm::sim
