// Writing and fitting cost-model calibrations (issue 12): the least-squares fit that both
// calibration methods share, and the calibration JSON that LoadCalibration (cost_model.h) reads.
//   helm_bench_model --calibrate FILE   the forward's kernels, batch shape by batch shape
//   helm_bench_node --calibrate FILE    the node core's service time, request by request
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "helm/sim/cost_model.h"

namespace helm::sim {

// Least squares of y ~ X.a with rows weighted by 1/y (relative errors: small samples count as
// much as large ones), and a >= 0: a negative coefficient is dropped (set to 0) and the rest
// refit. Columns are scaled first, so features may differ by many orders of magnitude.
// REQUIRES: every y > 0 and every row of x as long as the first.
std::vector<double> RelativeNnls(const std::vector<std::vector<double>>& x,
                                 const std::vector<double>& y);

// What a calibration file says about itself besides its coefficients.
struct CalibrationNotes {
  std::string base = "cpu";  // the profile it is layered over
  std::string machine;       // where it was measured
  std::string method;        // how
  std::string date;          // UTC, ISO 8601; empty: now
};

// Writes `profile`'s coefficients as effective rates (efficiencies 1) with `notes`, then reads
// the file back with LoadCalibration. InvalidArgument for a profile ValidateProfile refuses;
// PermissionDenied / DataLoss when the file cannot be written.
absl::Status WriteCalibration(const std::string& path, const CostProfile& profile,
                              const CalibrationNotes& notes);

}  // namespace helm::sim
