// Admission and batch formation of a node, on an injected clock (DESIGN.md §1, step 3).
//
// Submit admits a job into a bounded FIFO queue (full: ResourceExhausted; nothing is computed).
// TakeReady hands out a batch once one is ready: max_batch jobs are waiting, or the oldest has
// waited max_batch_wait_us. The queue has no thread and never waits: helm-node's workers pull from
// it and sleep until NextReadyUs when nothing is ready; the simulator pulls on virtual time. All
// times are microseconds of the one Clock given at construction.
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "helm/common/clock.h"

namespace helm::serve {

inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// What the queue reads and stamps of a job; a node's job type derives from it.
struct QueuedJob {
  int64_t deadline_us = kNever;  // answer by this time (Clock micros); kNever: no deadline
  int64_t admitted_us = 0;       // set by Submit
};

struct BatchQueueOptions {
  int32_t capacity = 256;           // jobs waiting at most
  int32_t max_batch = 8;            // jobs per batch at most
  int32_t max_batch_wait_us = 200;  // the oldest job waits this long at most for a fuller batch
};

class BatchQueue {
 public:
  // `clock` must outlive the queue.
  BatchQueue(const BatchQueueOptions& options, Clock* clock);

  // Admits `job` (not owned) and stamps admitted_us. ResourceExhausted when `capacity` jobs wait,
  // Unavailable after Close.
  absl::Status Submit(QueuedJob* job);
  // Moves the oldest jobs (up to max_batch) into `batch` (cleared first) when a batch is ready now;
  // leaves it empty otherwise. Returns the time the next batch will be ready if nothing else
  // arrives: now or later, kNever when nothing waits.
  int64_t TakeReady(std::vector<QueuedJob*>* batch);
  // When a batch is (or will be) ready without further arrivals; kNever when nothing waits.
  int64_t NextReadyUs() const;
  // Refuses further jobs and returns the waiting ones (the caller answers them).
  std::vector<QueuedJob*> Close();

  int depth() const;
  const BatchQueueOptions& options() const { return options_; }

 private:
  int64_t NextReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const BatchQueueOptions options_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  std::deque<QueuedJob*> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace helm::serve
