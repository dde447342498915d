// Options of the workload generator shared by the load generator (helm-bench) and the simulator,
// plus the load generator's own client-side settings (SLO, deadline, concurrency cap).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "helm/config/describe.h"
#include "helm/workload/phases.h"

namespace helm::workload {

// A second surface served by the same nodes, whose weight swings over a period (e.g. a feed of
// long-history users against search, whose requests carry short histories and many candidates):
//   w(t) = share_min + (share_max - share_min) * (1 - cos(2 pi t / period)) / 2,
// so the run starts at share_min and reaches share_max half a period in. The first surface sends
// rate x (1 - w(t)) requests a second (rate: the regime's), the second rate x rate_ratio x w(t).
// With rate_ratio 1, w is the second surface's share of the requests; a surface whose requests
// cost less takes a rate_ratio above 1, so that both load the nodes alike at their peaks. The
// surface draws from its own users (ids after the first surface's users and flash crowd) with its
// own seed; what is not overridden here is the workload's. Off while share_max is 0.
struct SurfaceMix {
  std::string profile;      // "": the workload's
  int32_t candidates = 0;   // candidates per request (0: the workload's)
  int32_t max_history = 0;  // cap on history length (0: the workload's)
  int64_t max_users = 0;    // cap on users (0: the workload's)
  double share_min = 0.0;   // w at the start of each period
  double share_max = 0.0;   // w half a period in; 0: no second surface
  double period_s = 0.0;    // 0: the run's duration (one swing there and back)
  double rate_ratio = 1.0;  // the second surface's rate at weight 1, over the workload's

  bool enabled() const { return share_max > 0; }

  template <class V>
  void Describe(V& v) {
    v.Field("profile", profile, "second surface's dataset profile (\"\": the workload's)",
            config::OneOf(
                {"", "movielens-20m", "amazon-books", "kuairand", "taobao", "amazon-video-games"}));
    v.Field("candidates", candidates, "second surface's candidates per request (0: the workload's)",
            config::InRange<int32_t>(0, 1 << 20));
    v.Field("max_history", max_history,
            "second surface's cap on history length (0: the workload's)",
            config::InRange<int32_t>(0, 1 << 20));
    v.Field("max_users", max_users, "second surface's cap on users (0: the workload's)",
            config::AtLeast<int64_t>(0));
    v.Field("share_min", share_min, "second surface's weight at the period's start",
            config::InRange(0.0, 1.0));
    v.Field("share_max", share_max,
            "second surface's weight half a period in (0: no second surface)",
            config::InRange(0.0, 1.0));
    v.Field("period_s", period_s, "period of the weight's swing (s; 0: the run's duration)",
            config::InRange(0.0, 1e7));
    v.Field("rate_ratio", rate_ratio,
            "second surface's rate at weight 1 over the workload's (1: weight = share of requests)",
            config::InRange(0.001, 1000.0));
  }

  absl::Status Validate() const {
    if (!enabled()) return absl::OkStatus();
    if (share_min > share_max) {
      return absl::InvalidArgumentError(
          absl::StrCat("share_min: must be <= share_max, got ", share_min, " > ", share_max));
    }
    if (share_min >= 1.0) {
      return absl::InvalidArgumentError(
          "share_min: must be < 1 (the first surface needs some requests)");
    }
    return absl::OkStatus();
  }
};

struct WorkloadOptions {
  // Dataset profile: "movielens-20m", "amazon-books", "kuairand", "taobao", "amazon-video-games",
  // or "trace" (replay trace_path).
  std::string profile = "movielens-20m";
  // Regime: "steady" (stationary Poisson), "trend" (diurnal rate, rotating popularity), "burst"
  // (flash crowd of new users on a hot item set). Used when `phases` is empty.
  std::string regime = "steady";
  // Base arrival rate (1/s): steady's rate, trend's mean, burst's rate outside the flash crowd.
  double rate_per_s = 50.0;
  double duration_s = 30.0;  // run length (s) when `phases` is empty
  // A run of several phases, "regime:seconds,..." (e.g. "steady:20,trend:30,burst:20"); users and
  // their histories carry over from one phase to the next. "": one phase of `regime`.
  std::string phases;
  int32_t candidates = 128;  // candidates per request
  // Share of candidates drawn by item popularity (Zipf); the rest are uniform over the catalog.
  double candidate_popular_share = 0.5;
  // Users and items are drawn from the profile but capped to these (0: the profile's own).
  int64_t max_users = 0;
  int64_t max_items = 0;
  int32_t max_history = 0;  // cap on history length (0: the profile's own)
  // Mean events a user appends between two requests (0: the profile's own).
  double new_events_per_visit = 0.0;
  // Action ids are drawn in [0, num_actions); keep it <= model.num_actions of the nodes.
  int32_t num_actions = 8;
  uint64_t seed = 42;

  // Sessions: a user arrives, sends several requests close together, then is away for a long
  // time (see generator.h). Off: every request picks its user independently (the stream is then
  // the same as before sessions existed). The figures below override the profile's (0: the
  // profile's own; profile.h documents them).
  bool sessions = false;
  double session_requests_mean = 0.0;    // mean requests per session (geometric, >= 1)
  double session_gap_median_s = 0.0;     // median gap between a session's requests (s)
  double session_gap_min_s = 0.0;        // gaps are clamped to [min, max] (s)
  double session_gap_max_s = 0.0;        //
  double session_new_events_mean = 0.0;  // mean events appended between a session's requests
  double session_away_min_s = 0.0;       // time a user stays away between two sessions (s)

  // Trend regime: rate(t) = rate_per_s * (1 - amplitude * cos(2 pi t / period)), and item and
  // user popularity rotate: every second the popularity ranks shift by `trend_rotation_ranks_per_s`
  // so new items and users climb to the head while old ones fade.
  double trend_period_s = 0.0;  // 0: the phase's duration (one compressed "day" per phase)
  double trend_amplitude = 0.5;
  double trend_rotation_ranks_per_s = 2.0;

  // Burst regime: during [start, start + length) (fractions of the phase) the rate is multiplied,
  // a share of requests comes from new users, and a small hot item set dominates.
  double burst_start_fraction = 0.33;
  double burst_length_fraction = 0.33;
  double burst_rate_multiplier = 3.0;
  double burst_new_user_share = 0.7;  // share of burst-window requests from the flash crowd
  int64_t burst_users = 2000;         // size of the flash crowd (ids after the regular users)
  int32_t burst_hot_items = 64;       // size of the hot item set
  double burst_hot_share = 0.8;       // share of crowd events and of candidates on the hot set

  // Trace replay (profile "trace").
  std::string trace_path;  // CSV user_id,item_id,action,timestamp_ms (header line optional)
  // Arrival times: 0 re-times the trace's events as Poisson at rate_per_s (order kept); > 0
  // replays the trace's own timestamps sped up by this factor.
  double trace_speedup = 0.0;
  // A user's k-th event (k >= 1, k a multiple of this) becomes a request whose history is the
  // user's events before it; the user's first event only seeds the history.
  int32_t trace_events_per_request = 1;
  // Item ids >= the catalog cap are an error, or folded modulo the cap when true.
  bool trace_fold_items = false;

  // Load generator (helm-bench).
  double slo_ms = 80.0;         // latency objective, measured from each request's scheduled time
  int32_t deadline_ms = 1000;   // gRPC deadline, from the scheduled time
  int32_t max_in_flight = 512;  // beyond this, a due request is dropped and counted as an error
  int32_t top_k = 10;           // top_k of each Rank request (0: every candidate's score)

  SurfaceMix mix;  // a second surface whose weight swings (off by default)

  template <class V>
  void Describe(V& v) {
    v.Field("profile", profile, "dataset profile",
            config::OneOf({"movielens-20m", "amazon-books", "kuairand", "taobao",
                           "amazon-video-games", "trace"}));
    v.Field("regime", regime, "arrival regime when phases is empty",
            config::OneOf({"steady", "trend", "burst"}));
    v.Field("rate_per_s", rate_per_s, "mean request rate (1/s)", config::InRange(0.001, 1e7));
    v.Field("duration_s", duration_s, "duration when phases is empty (s)",
            config::InRange(0.001, 1e7));
    v.Field(
        "phases", phases,
        "phases \"regime:seconds,...\", e.g. \"steady:20,trend:30,burst:20\" (\"\": one phase)");
    v.Field("candidates", candidates, "candidates per request",
            config::InRange<int32_t>(1, 1 << 20));
    v.Field("candidate_popular_share", candidate_popular_share,
            "share of candidates drawn by popularity (rest uniform)", config::InRange(0.0, 1.0));
    v.Field("max_users", max_users, "cap on users (0: profile's)", config::AtLeast<int64_t>(0));
    v.Field("max_items", max_items, "cap on items (0: profile's)", config::AtLeast<int64_t>(0));
    v.Field("max_history", max_history, "cap on history length (0: profile's)",
            config::InRange<int32_t>(0, 1 << 20));
    v.Field("new_events_per_visit", new_events_per_visit,
            "mean events appended per revisit (0: profile's)", config::InRange(0.0, 1000.0));
    v.Field("num_actions", num_actions, "action ids drawn in [0, num_actions)",
            config::InRange<int32_t>(1, 1 << 16));
    v.Field("seed", seed, "random seed");
    v.Field("sessions", sessions,
            "users come in sessions: several requests close together, then away for long");
    v.Field("session_requests_mean", session_requests_mean,
            "sessions: mean requests per session (0: profile's)", config::InRange(0.0, 1e4));
    v.Field("session_gap_median_s", session_gap_median_s,
            "sessions: median gap between a session's requests (s; 0: profile's)",
            config::InRange(0.0, 86400.0));
    v.Field("session_gap_min_s", session_gap_min_s,
            "sessions: smallest gap between a session's requests (s; 0: profile's)",
            config::InRange(0.0, 86400.0));
    v.Field("session_gap_max_s", session_gap_max_s,
            "sessions: largest gap between a session's requests (s; 0: profile's)",
            config::InRange(0.0, 86400.0));
    v.Field("session_new_events_mean", session_new_events_mean,
            "sessions: mean events appended between a session's requests (0: profile's)",
            config::InRange(0.0, 1000.0));
    v.Field("session_away_min_s", session_away_min_s,
            "sessions: time a user stays away between two sessions (s; 0: profile's)",
            config::InRange(0.0, 1e7));
    v.Field("trend_period_s", trend_period_s, "trend: diurnal period (s; 0: the phase's duration)",
            config::InRange(0.0, 1e7));
    v.Field("trend_amplitude", trend_amplitude, "trend: relative amplitude of the rate curve",
            config::InRange(0.0, 1.0));
    v.Field("trend_rotation_ranks_per_s", trend_rotation_ranks_per_s,
            "trend: popularity ranks rotated per second", config::InRange(0.0, 1e6));
    v.Field("burst_start_fraction", burst_start_fraction,
            "burst: start of the flash crowd (fraction of the phase)", config::InRange(0.0, 1.0));
    v.Field("burst_length_fraction", burst_length_fraction,
            "burst: length of the flash crowd (fraction of the phase)", config::InRange(0.0, 1.0));
    v.Field("burst_rate_multiplier", burst_rate_multiplier, "burst: rate multiplier in the crowd",
            config::InRange(1.0, 1000.0));
    v.Field("burst_new_user_share", burst_new_user_share,
            "burst: share of crowd-window requests from new users", config::InRange(0.0, 1.0));
    v.Field("burst_users", burst_users, "burst: users in the flash crowd",
            config::InRange<int64_t>(1, int64_t{1} << 40));
    v.Field("burst_hot_items", burst_hot_items, "burst: items in the hot set",
            config::InRange<int32_t>(1, 1 << 24));
    v.Field("burst_hot_share", burst_hot_share,
            "burst: share of crowd events and candidates on the hot set",
            config::InRange(0.0, 1.0));
    v.Field("trace_path", trace_path, "CSV trace for profile trace");
    v.Field("trace_speedup", trace_speedup,
            "trace: replay speed-up of trace timestamps (0: Poisson at rate_per_s)",
            config::InRange(0.0, 1e12));
    v.Field("trace_events_per_request", trace_events_per_request,
            "trace: a request at every k-th event of a user", config::InRange<int32_t>(1, 1 << 20));
    v.Field("trace_fold_items", trace_fold_items,
            "trace: fold item ids >= the catalog cap modulo the cap instead of failing");
    v.Field("slo_ms", slo_ms, "helm-bench: latency SLO from the scheduled time (ms)",
            config::InRange(0.001, 1e7));
    v.Field("deadline_ms", deadline_ms, "helm-bench: gRPC deadline from the scheduled time (ms)",
            config::InRange<int32_t>(1, 3600000));
    v.Field("max_in_flight", max_in_flight,
            "helm-bench: requests in flight at most (beyond: dropped, counted as errors)",
            config::InRange<int32_t>(1, 1 << 20));
    v.Field("top_k", top_k, "helm-bench: top_k of each request (0: all candidates)",
            config::InRange<int32_t>(0, 1 << 20));
    v.Section("mix", mix, "a second surface whose weight swings over a period");
  }

  // A regime's highest arrival rate over rate_per_s: 1 + trend_amplitude for trend,
  // burst_rate_multiplier for burst, 1 otherwise.
  double PeakRateFactor(Regime r) const {
    switch (r) {
      case Regime::kTrend:
        return 1.0 + trend_amplitude;
      case Regime::kBurst:
        return burst_rate_multiplier;
      default:
        return 1.0;
    }
  }

  absl::Status Validate() const {
    if (burst_start_fraction + burst_length_fraction > 1.0) {
      return absl::InvalidArgumentError(
          absl::StrCat("burst_start_fraction + burst_length_fraction: must be <= 1, got ",
                       burst_start_fraction + burst_length_fraction));
    }
    if (session_requests_mean > 0 && session_requests_mean < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("session_requests_mean: must be >= 1 (or 0: the profile's), got ",
                       session_requests_mean));
    }
    if (session_new_events_mean > 0 && session_new_events_mean < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("session_new_events_mean: must be >= 1 (or 0: the profile's), got ",
                       session_new_events_mean));
    }
    if (absl::Status status = mix.Validate(); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("mix.", status.message()));
    }
    if (mix.enabled() && sessions) {
      return absl::InvalidArgumentError(
          "mix: not with sessions (a surface's share thins its stream request by request)");
    }
    if (profile == "trace") {
      if (mix.enabled()) {
        return absl::InvalidArgumentError("mix: not for profile trace");
      }
      if (trace_path.empty()) {
        return absl::InvalidArgumentError("trace_path: must be set for profile trace");
      }
      if (!phases.empty()) {
        return absl::InvalidArgumentError("phases: must be empty for profile trace");
      }
      if (sessions) {
        return absl::InvalidArgumentError(
            "sessions: not for profile trace (a trace's own timestamps carry its sessions)");
      }
      return absl::OkStatus();
    }
    absl::StatusOr<std::vector<Phase>> parsed = ParsePhases(phases, regime, duration_s);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("phases: ", parsed.status().message()));
    }
    return absl::OkStatus();
  }
};

}  // namespace helm::workload
