// The workload generator: a deterministic stream of Rank requests (arrival time, user, the user's
// whole history as columns, candidates) for the load generator (helm-bench) and the simulator.
//
// Synthetic workloads follow a dataset profile (profile.h): users and items are Zipf-distributed,
// a user's first request carries a log-normal number of past events, and each later request of
// the same user carries the same history plus the events the user appended since (so a cached KV
// prefix stays valid). Arrivals follow the phases' regimes (phases.h): `steady` is stationary
// Poisson; `trend` has a diurnal rate curve and slowly rotating item and user popularity; `burst`
// has a flash crowd of new users on a small hot item set, then goes back to steady.
//
// The max_history cap: a user whose drawn history is longer arrives with its most recent 3/4 of
// the cap, and a history that outgrows the cap drops its oldest events down to 3/4 of the cap in
// one step (Request::truncated), so its prefix changes once every cap/4 new events rather than on
// every request (as a sliding window would).
//
// Sessions (WorkloadOptions::sessions, off by default): a user arrives, sends a few requests close
// together, then stays away for long. New sessions start as a Poisson process at rate(t) divided
// by the mean session length, so the request rate is still the regime's, smoothed over a session's
// span (a burst's extra requests trail its sessions by up to a few minutes). A session's length is
// geometric and its gaps log-normal, clamped to the profile's range (profile.h); between two
// requests of a session the user appends session_new_events_mean events, between sessions
// new_events_per_visit. A new session's user is drawn by activity (Zipf) among users neither in a
// session nor within their away time (32 draws); failing that, one merely away; then any user
// not in a session (32 uniform draws); and when every draw is in a session (users far too few for
// the rate: fewer than about the sessions in progress, rate x mean gap) the rate comes first and
// the last user drawn gets a second session in parallel, whose requests interleave with the first.
// A burst's flash-crowd sessions go to crowd users not in a session, or, when the crowd is too
// small for its share of the sessions, to regular users. The run starts in the steady state: the
// sessions begun before time 0 (a simulated warm-up) that are still running at 0 go on.
// Request::session_request gives each request's position in its session.
//
// Two surfaces (WorkloadOptions::mix): a second surface, with its own users and request shape,
// takes a weight that swings over a period. Each surface is a synthetic generator of its own, run
// at the most its weight can ask of it (the first at rate x (1 - share_min), the second at rate x
// rate_ratio x share_max), and thinned request by request to its rate at that instant; the two
// streams are merged by arrival time. A thinned request's user
// was busy on the other surface: its history goes on growing, and its next request carries the
// events appended meanwhile (first_visit may then be false on the first request the run sends).
// On the same profile the second surface's popular items are the first's (one catalog).
//
// Trace replay (profile "trace") reads a CSV of events (trace.h) and turns a user's events into
// requests whose history is the user's earlier events (see WorkloadOptions::trace_*).
//
// Cost: the history is not copied (Request holds views into the generator's per-user storage), so
// a returning user's request costs a few draws per new event and per candidate whatever its
// history length (~2-7 us on a 2-core dev machine, 10K-event histories included). A user's first
// request synthesises its whole past history once, ~40-60 ns per event. Memory: ~20 bytes per
// history event held, for every user seen (histories never exceed max_history). Sessions add a
// heap operation per request (O(log sessions in progress)); their warm-up (the sessions begun
// before time 0) runs once in Create, a few draws per session begun within a long session's span.
//
// Thread-safety: a Generator is thread-compatible (one thread calls Next; no internal locking).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "helm/workload/options.h"
#include "helm/workload/phases.h"
#include "helm/workload/profile.h"

namespace helm::workload {

// One generated request. The spans point into the generator's storage and stay valid until the
// next call to Next() (copy what must outlive it).
struct Request {
  int64_t arrival_us = 0;  // scheduled time, from the start of the run; non-decreasing
  int64_t user_id = 0;
  int32_t phase = 0;  // index into Generator::phases()
  // The user's history, oldest first, as parallel columns of equal length. Timestamps are in ms
  // since the Unix epoch and non-decreasing.
  absl::Span<const int64_t> history_item_ids;
  absl::Span<const int32_t> history_actions;
  absl::Span<const int64_t> history_timestamps_ms;
  absl::Span<const int64_t> candidate_item_ids;
  // Events appended to the user's history since its previous request (all of them on a first
  // request).
  int32_t new_events = 0;
  bool first_visit = false;  // the user's first request of the run
  // The oldest events were dropped to keep the history within max_history, so this history is
  // not an extension of the user's previous one (a KV prefix cached for the user is stale).
  bool truncated = false;
  bool in_burst = false;    // scheduled inside a burst phase's flash-crowd window
  bool crowd_user = false;  // one of the flash crowd's new users
  // Sessions on: the request's position in its user's session (0: the session's first request;
  // sessions already running at time 0 continue with their later positions). 0 when off.
  int32_t session_request = 0;
  // 0: the workload's own surface; 1: the mix's second surface (WorkloadOptions::mix).
  int32_t surface = 0;
};

class Generator {
 public:
  // A synthetic generator for profiles "movielens-20m", "amazon-books", "kuairand", "taobao",
  // "amazon-video-games", or a trace replay for "trace" (reads options.trace_path). InvalidArgument
  // for inconsistent options, a malformed trace (naming the line and the reason) or a trace that
  // yields no request; NotFound when the trace cannot be read.
  static absl::StatusOr<std::unique_ptr<Generator>> Create(const WorkloadOptions& options);
  virtual ~Generator() = default;

  // Fills `request` with the next request in arrival order; false once the run is over (every
  // phase elapsed, or the trace exhausted). The previous request's spans become invalid.
  virtual bool Next(Request* request) = 0;

  // The phases of the run (one "trace" phase for a replay), in order, back to back from 0.
  virtual const std::vector<Phase>& phases() const = 0;
  // End of the last phase (us).
  int64_t duration_us() const { return phases().empty() ? 0 : phases().back().end_us(); }
  // Expected arrival rate at `t_us` (1/s) by the regime's rate curve (for reports and tests).
  virtual double RatePerS(int64_t t_us) const = 0;
  // Item ids are in [0, num_items()); regular user ids in [0, num_users()) (the flash crowd's ids
  // follow them).
  virtual int64_t num_items() const = 0;
  virtual int64_t num_users() const = 0;
  // Cap on history length in effect.
  virtual int32_t max_history() const = 0;
  // The profile, with caps applied (for a trace: its measured figures).
  virtual const DatasetProfile& profile() const = 0;
};

}  // namespace helm::workload
