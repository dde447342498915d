// One sweep run as JSON, for the sweep's checkpoints and the paper table's JSON (private to
// src/sim, which alone links nlohmann_json).
#pragma once

#include "helm/sim/sweep.h"
#include "nlohmann/json.hpp"

namespace helm::sim::internal {

// Every figure of the run, under the field's name.
nlohmann::ordered_json SweepRunJson(const SweepRun& run);

}  // namespace helm::sim::internal
