// Admission, dynamic batching and the worker pool of a node.
//
// Submit admits a job into a bounded FIFO queue (full: ResourceExhausted, nothing is computed).
// Each worker takes the oldest job, then waits at most max_batch_wait_us for more, up to max_batch
// jobs, and runs the batch function on them. Jobs whose deadline passed while queued are answered
// DeadlineExceeded without computing. Stop() answers every queued job Unavailable.
//
// Thread-safety: all methods are thread-safe. The batch function runs on worker threads, one batch
// per worker at a time, and must call Job::done exactly once for each job it gets.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "helm/common/clock.h"

namespace helm::serve {

struct Job {
  // When the job must be answered by (the gRPC deadline).
  std::chrono::system_clock::time_point deadline = std::chrono::system_clock::time_point::max();
  int64_t admitted_us = 0;  // set by Submit (Clock::NowMicros)
  int64_t started_us = 0;   // set when its batch starts
  int32_t batch_size = 0;   // set when its batch starts
  // Called once with the outcome: OK after the batch function filled the reply, or the error.
  std::function<void(Job*, const absl::Status&)> done;
};

struct SchedulerOptions {
  int32_t workers = 1;
  int32_t queue_capacity = 256;
  int32_t max_batch = 8;
  int32_t max_batch_wait_us = 200;
};

class Scheduler {
 public:
  // Runs a batch on worker `worker` (in [0, workers)): per-worker state can be indexed by it.
  using BatchFn = std::function<void(int worker, absl::Span<Job* const> batch)>;

  // Starts the workers. `clock` must outlive the scheduler.
  Scheduler(const SchedulerOptions& options, Clock* clock, BatchFn batch_fn);
  // Stops (see Stop) and joins the workers.
  ~Scheduler();

  // Admits `job` (not owned; must live until its done callback). ResourceExhausted when the queue
  // is full, Unavailable after Stop; in both cases done is not called.
  absl::Status Submit(Job* job);
  // Refuses new jobs, answers queued ones Unavailable, lets running batches finish, joins.
  void Stop();

  int queue_depth() const;
  // Jobs admitted and not yet answered (queued + running).
  int in_flight() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  void WorkerLoop(int worker);

  const SchedulerOptions options_;
  Clock* const clock_;
  const BatchFn batch_fn_;

  mutable absl::Mutex mu_;
  std::deque<Job*> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace helm::serve
