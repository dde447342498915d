// The open-loop core of the load generator: the schedule, admission, deadlines and accounting,
// with no gRPC, no thread of its own and time only from an injected Clock.
//
// Requests from a workload::Generator are sent through a Transport at their scheduled times
// (start + Request::arrival_us), whatever the server does: the core never waits for a reply, so a
// slow server cannot slow the offered load down. A request that falls due while `max_in_flight`
// requests are outstanding is dropped and recorded with code kDroppedCode, never delayed. Each
// request's deadline and latency count from its scheduled time, and its send lag is the time it
// left minus that time, so queueing anywhere (in the sender, the network, the server) shows in the
// figures (no coordinated omission).
//
// Time passes only through the Sleeper: the real edge (load_generator.h) waits in real time and
// sends over gRPC; tests advance a FakeClock and answer from a fake server on virtual time.
//
// Thread-safety: Run() is called once, from one thread. The transport's `done` callbacks may run
// on any thread. progress() and NowUs() may be called from any thread at any time.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "bench/recorder.h"
#include "bench/sleeper.h"
#include "bench/stats.h"
#include "bench/transport.h"
#include "helm/common/clock.h"
#include "helm/workload/generator.h"

namespace helm::bench {

struct OpenLoopOptions {
  int32_t deadline_ms = 1000;   // per request, from its scheduled time; >= 1
  int32_t max_in_flight = 512;  // outstanding requests at most; >= 1
  // Requests still outstanding this long after the last request's deadline are cancelled (ms, >=
  // 0).
  int64_t straggler_grace_ms = 5000;
  double slo_ms = 80.0;  // for Progress::ok_within_slo
};

// Counters so far, for a progress line.
struct Progress {
  int64_t sent = 0;
  int64_t ok = 0;
  int64_t errors = 0;  // drops excluded
  int64_t dropped = 0;
  int64_t in_flight = 0;
  int64_t ok_within_slo = 0;
};

class OpenLoop {
 public:
  // InvalidArgument (naming the option) when an option is out of range.
  static absl::Status Validate(const OpenLoopOptions& options);

  // InvalidArgument on bad options or a null pointer. The pointers are not owned and must outlive
  // the core; the core must outlive every `done` callback of `transport` (let the transport go
  // quiet, e.g. destroy it, before destroying the core).
  static absl::StatusOr<std::unique_ptr<OpenLoop>> Create(const OpenLoopOptions& options,
                                                          workload::Generator* generator,
                                                          Clock* clock, Sleeper* sleeper,
                                                          Transport* transport);

  // Runs the whole schedule from `start_us` (on the clock; request r is due at start_us +
  // r.arrival_us), then waits until every sent request has reported. Requests still outstanding
  // `straggler_grace_ms` after the last request's deadline are cancelled through the transport.
  // Fills phases, duration_us, wall_s (from start_us to the end of the drain), completions (in
  // the generator's order, so ties in scheduled time keep it), node_ids and first_error; leaves
  // poll_targets and samples empty. Call once. When the sleeper gives up (a fake with nothing left
  // to deliver), Run returns with the requests that never reported missing from the completions.
  RunResult Run(int64_t start_us);

  Progress progress() const;
  const LatencyHistogram& ok_latency() const { return recorder_.ok_latency(); }
  // Time since the start of the run (us); negative before it.
  int64_t NowUs() const { return clock_->NowMicros() - start_us_.load(std::memory_order_relaxed); }

 private:
  OpenLoop(const OpenLoopOptions& options, workload::Generator* generator, Clock* clock,
           Sleeper* sleeper, Transport* transport);

  // Records how a sent request ended and releases its in-flight slot.
  void Finish(int64_t seq, Completion completion, const Reply& reply);
  bool Idle() const;

  const OpenLoopOptions options_;
  workload::Generator* const generator_;
  Clock* const clock_;
  Sleeper* const sleeper_;
  Transport* const transport_;
  Recorder recorder_;
  std::atomic<int64_t> start_us_{0};
  std::atomic<int64_t> sent_{0};
  mutable absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace helm::bench
