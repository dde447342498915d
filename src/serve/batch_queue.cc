#include "helm/serve/batch_queue.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace helm::serve {

BatchQueue::BatchQueue(const BatchQueueOptions& options, Clock* clock)
    : options_(options), clock_(clock) {}

absl::Status BatchQueue::Submit(QueuedJob* job) {
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("node is shutting down");
  if (static_cast<int>(queue_.size()) >= options_.capacity) {
    return absl::ResourceExhaustedError(absl::StrCat("node queue is full (", options_.capacity,
                                                     " requests waiting); retry elsewhere"));
  }
  job->admitted_us = clock_->NowMicros();
  queue_.push_back(job);
  return absl::OkStatus();
}

int64_t BatchQueue::NextReadyLocked() const {
  if (queue_.empty()) return kNever;
  if (static_cast<int>(queue_.size()) >= options_.max_batch) return queue_.front()->admitted_us;
  return queue_.front()->admitted_us + options_.max_batch_wait_us;
}

int64_t BatchQueue::TakeReady(std::vector<QueuedJob*>* batch) {
  batch->clear();
  const int64_t now = clock_->NowMicros();
  absl::MutexLock lock(&mu_);
  if (NextReadyLocked() > now) return NextReadyLocked();
  const size_t n = std::min<size_t>(queue_.size(), options_.max_batch);
  batch->assign(queue_.begin(), queue_.begin() + n);
  queue_.erase(queue_.begin(), queue_.begin() + n);
  return NextReadyLocked();
}

int64_t BatchQueue::NextReadyUs() const {
  absl::MutexLock lock(&mu_);
  return NextReadyLocked();
}

std::vector<QueuedJob*> BatchQueue::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  std::vector<QueuedJob*> waiting(queue_.begin(), queue_.end());
  queue_.clear();
  return waiting;
}

int BatchQueue::depth() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

}  // namespace helm::serve
