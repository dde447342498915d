// Dataset profiles: the statistics a synthetic workload is matched to (users, items, events per
// user, popularity skew), after public recommendation datasets. Immutable values; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace helm::workload {

struct DatasetProfile {
  std::string name;
  std::string source;  // where the figures come from
  int64_t num_users = 0;
  int64_t num_items = 0;
  // Events per user: log-normal with this mean and log-space sigma, clamped to [min, max].
  double mean_history = 0;
  double history_sigma = 0;
  int32_t min_history = 1;
  int32_t max_history = 0;
  // Zipf exponents: item popularity (events and popular candidates) and user activity (which user
  // sends the next request).
  double item_zipf = 1.0;
  double user_zipf = 1.0;
  // Mean events a returning user appended since its previous request.
  double new_events_per_visit = 1.0;
  // Mean time between two events of a user (s): spaces the timestamps of initial histories.
  double mean_event_gap_s = 60.0;
  // Relative frequency of each action id (0, 1, ...); folded modulo num_actions when longer.
  std::vector<double> action_weights;
};

// The built-in profiles: "movielens-20m", "amazon-books", "kuairand".
const std::vector<DatasetProfile>& BuiltinProfiles();

// The profile named `name`; InvalidArgument naming the known profiles otherwise.
absl::StatusOr<DatasetProfile> FindProfile(absl::string_view name);

}  // namespace helm::workload
