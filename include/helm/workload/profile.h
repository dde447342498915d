// Dataset profiles: the statistics a synthetic workload is matched to (users, items, events per
// user, popularity skew), after public recommendation datasets, and the shape of a user's sessions
// (used when WorkloadOptions::sessions is on). Immutable values; thread-safe.
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

  // Sessions (WorkloadOptions::sessions): a user arrives, sends a few requests close together,
  // then is away for a long time.
  // Requests per session: geometric on {1, 2, ...} with this mean (>= 1).
  double session_requests_mean = 3.0;
  // Gap between two consecutive requests of a session (s): log-normal with this median and
  // log-space sigma, clamped to [session_gap_min_s, session_gap_max_s].
  double session_gap_median_s = 15.0;
  double session_gap_sigma = 0.8;
  double session_gap_min_s = 2.0;
  double session_gap_max_s = 120.0;
  // Mean events the user appends between two requests of a session (>= 1; 1 + Poisson).
  // Between sessions the user appends new_events_per_visit on average.
  double session_new_events_mean = 2.0;
  // Time a user stays away between the end of a session and its next one (s): a user still
  // inside this window is not picked for a new session while other users are free.
  double session_away_min_s = 1800.0;
};

// The built-in profiles: "movielens-20m", "amazon-books", "kuairand", "taobao",
// "amazon-video-games".
const std::vector<DatasetProfile>& BuiltinProfiles();

// The profile named `name`; InvalidArgument naming the known profiles otherwise.
absl::StatusOr<DatasetProfile> FindProfile(absl::string_view name);

}  // namespace helm::workload
