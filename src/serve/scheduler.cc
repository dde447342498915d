#include "helm/serve/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace helm::serve {

Scheduler::Scheduler(const SchedulerOptions& options, Clock* clock, BatchFn batch_fn)
    : options_(options), clock_(clock), batch_fn_(std::move(batch_fn)) {
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

Scheduler::~Scheduler() { Stop(); }

absl::Status Scheduler::Submit(Job* job) {
  absl::MutexLock lock(&mu_);
  if (stopped_) return absl::UnavailableError("node is shutting down");
  if (static_cast<int>(queue_.size()) >= options_.queue_capacity) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "node queue is full (", options_.queue_capacity, " requests waiting); retry elsewhere"));
  }
  job->admitted_us = clock_->NowMicros();
  queue_.push_back(job);
  return absl::OkStatus();
}

void Scheduler::Stop() {
  std::deque<Job*> cancelled;
  {
    absl::MutexLock lock(&mu_);
    if (!stopped_) {
      stopped_ = true;
      cancelled.swap(queue_);
    }
  }
  for (Job* job : cancelled) job->done(job, absl::UnavailableError("node is shutting down"));
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
}

int Scheduler::queue_depth() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

int Scheduler::in_flight() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size()) + running_;
}

void Scheduler::WorkerLoop(int worker) {
  std::vector<Job*> batch;
  std::vector<Job*> expired;
  while (true) {
    batch.clear();
    expired.clear();
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopped_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&has_work));
      if (stopped_) return;
      // Batch: the oldest job, then whatever arrives within max_batch_wait_us, up to max_batch.
      const absl::Time gather_until = absl::Now() + absl::Microseconds(options_.max_batch_wait_us);
      auto batch_ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopped_ || static_cast<int>(queue_.size()) >= options_.max_batch;
      };
      if (options_.max_batch > 1 && static_cast<int>(queue_.size()) < options_.max_batch) {
        mu_.AwaitWithDeadline(absl::Condition(&batch_ready), gather_until);
      }
      if (stopped_) return;
      const auto now = std::chrono::system_clock::now();
      while (!queue_.empty() && static_cast<int>(batch.size()) < options_.max_batch) {
        Job* job = queue_.front();
        queue_.pop_front();
        (job->deadline <= now ? expired : batch).push_back(job);
      }
      running_ += static_cast<int>(batch.size() + expired.size());
    }
    for (Job* job : expired) {
      job->done(job, absl::DeadlineExceededError(
                         "deadline passed while queued; the request was not computed"));
    }
    if (!batch.empty()) {
      const int64_t start_us = clock_->NowMicros();
      for (Job* job : batch) {
        job->started_us = start_us;
        job->batch_size = static_cast<int32_t>(batch.size());
      }
      batch_fn_(worker, batch);
    }
    absl::MutexLock lock(&mu_);
    running_ -= static_cast<int>(batch.size() + expired.size());
  }
}

}  // namespace helm::serve
