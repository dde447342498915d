// Options of the workload generator shared by the load generator and the simulator.
#pragma once

#include <cstdint>
#include <string>

#include "helm/config/describe.h"

namespace helm::workload {

struct WorkloadOptions {
  // Dataset profile: "movielens-20m", "amazon-books", "kuairand", or "trace" (replay trace_path).
  std::string profile = "movielens-20m";
  // Regime: "steady" (stationary Poisson), "trend" (diurnal rate, rotating popularity), "burst"
  // (flash crowd of new users on a hot item set).
  std::string regime = "steady";
  double rate_per_s = 50.0;  // mean arrival rate
  double duration_s = 30.0;
  int32_t candidates = 128;  // candidates per request
  // Users and items are drawn from the profile but capped to these (0: the profile's own).
  int64_t max_users = 0;
  int64_t max_items = 0;
  int32_t max_history = 0;  // cap on history length (0: the profile's own)
  std::string trace_path;   // CSV user_id,item_id,action,timestamp_ms for profile "trace"
  uint64_t seed = 42;

  template <class V>
  void Describe(V& v) {
    v.Field("profile", profile, "dataset profile",
            config::OneOf({"movielens-20m", "amazon-books", "kuairand", "trace"}));
    v.Field("regime", regime, "arrival regime", config::OneOf({"steady", "trend", "burst"}));
    v.Field("rate_per_s", rate_per_s, "mean request rate (1/s)", config::InRange(0.001, 1e7));
    v.Field("duration_s", duration_s, "duration (s)", config::InRange(0.001, 1e7));
    v.Field("candidates", candidates, "candidates per request", config::InRange<int32_t>(1, 1 << 20));
    v.Field("max_users", max_users, "cap on users (0: profile's)", config::AtLeast<int64_t>(0));
    v.Field("max_items", max_items, "cap on items (0: profile's)", config::AtLeast<int64_t>(0));
    v.Field("max_history", max_history, "cap on history length (0: profile's)",
            config::InRange<int32_t>(0, 1 << 20));
    v.Field("trace_path", trace_path, "CSV trace for profile trace");
    v.Field("seed", seed, "random seed");
  }
};

}  // namespace helm::workload
