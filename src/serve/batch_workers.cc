#include "helm/serve/batch_workers.h"

#include "absl/time/time.h"
#include "helm/common/status.h"

namespace helm::serve {

absl::StatusOr<std::unique_ptr<BatchWorkers>> BatchWorkers::Start(NodeCore* core, int count) {
  std::unique_ptr<BatchWorkers> pool(new BatchWorkers(core));
  for (int i = 0; i < count; ++i) {
    HELM_ASSIGN_OR_RETURN(std::unique_ptr<Worker> worker, core->NewWorker());
    pool->workers_.push_back(std::move(worker));
  }
  BatchWorkers* p = pool.get();
  for (int i = 0; i < count; ++i) p->threads_.emplace_back([p, i] { p->Loop(i); });
  return pool;
}

BatchWorkers::~BatchWorkers() { Stop(); }

absl::Status BatchWorkers::Submit(RankJob* job) {
  HELM_RETURN_IF_ERROR(core_->Submit(job));
  absl::MutexLock lock(&mu_);
  cv_.Signal();
  return absl::OkStatus();
}

void BatchWorkers::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    cv_.SignalAll();
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void BatchWorkers::Loop(int worker) {
  std::vector<QueuedJob*> batch;
  Clock* const clock = core_->clock();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      while (true) {
        if (stopping_) return;
        const int64_t next_us = core_->queue().TakeReady(&batch);
        if (!batch.empty()) {
          if (next_us != kNever) cv_.Signal();  // more is waiting: wake another worker
          break;
        }
        if (next_us == kNever) {
          cv_.Wait(&mu_);
        } else {
          cv_.WaitWithTimeout(&mu_, absl::Microseconds(next_us - clock->NowMicros()));
        }
      }
    }
    core_->RunBatch(*workers_[worker], batch);
  }
}

}  // namespace helm::serve
