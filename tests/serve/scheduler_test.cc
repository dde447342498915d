#include "helm/serve/scheduler.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace helm::serve {
namespace {

struct Recorder {
  absl::Mutex mu;
  std::vector<absl::Status> outcomes ABSL_GUARDED_BY(mu);
  std::vector<int> batch_sizes ABSL_GUARDED_BY(mu);
  int answered ABSL_GUARDED_BY(mu) = 0;

  void Done(const absl::Status& s) {
    absl::MutexLock lock(&mu);
    outcomes.push_back(s);
    ++answered;
  }
  void WaitAnswered(int n) {
    absl::MutexLock lock(&mu);
    auto enough = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return answered >= n; };
    mu.Await(absl::Condition(&enough));
  }
};

std::vector<Job> MakeJobs(int n, Recorder* recorder) {
  std::vector<Job> jobs(n);
  for (Job& job : jobs) job.done = [recorder](Job*, const absl::Status& s) { recorder->Done(s); };
  return jobs;
}

TEST(Scheduler, BatchesQueuedJobsUpToMaxBatch) {
  Recorder recorder;
  absl::Notification release;
  SchedulerOptions options;
  options.workers = 1;
  options.max_batch = 4;
  options.max_batch_wait_us = 0;
  std::atomic<bool> first{true};
  Scheduler scheduler(options, Clock::Real(), [&](int, absl::Span<Job* const> batch) {
    if (first.exchange(false)) release.WaitForNotification();  // hold the worker once
    {
      absl::MutexLock lock(&recorder.mu);
      recorder.batch_sizes.push_back(static_cast<int>(batch.size()));
    }
    for (Job* job : batch) job->done(job, absl::OkStatus());
  });
  std::vector<Job> jobs = MakeJobs(9, &recorder);
  ASSERT_TRUE(scheduler.Submit(&jobs[0]).ok());
  while (scheduler.queue_depth() != 0) std::this_thread::yield();  // the worker holds job 0
  for (int i = 1; i < 9; ++i) ASSERT_TRUE(scheduler.Submit(&jobs[i]).ok());
  EXPECT_EQ(scheduler.in_flight(), 9);
  release.Notify();
  recorder.WaitAnswered(9);
  absl::MutexLock lock(&recorder.mu);
  EXPECT_EQ(recorder.batch_sizes, (std::vector<int>{1, 4, 4}));
  for (const auto& s : recorder.outcomes) EXPECT_TRUE(s.ok());
}

TEST(Scheduler, FullQueueIsResourceExhaustedAndComputesNothing) {
  Recorder recorder;
  absl::Notification release;
  SchedulerOptions options;
  options.workers = 1;
  options.queue_capacity = 2;
  options.max_batch = 1;
  std::atomic<int> computed{0};
  Scheduler scheduler(options, Clock::Real(), [&](int, absl::Span<Job* const> batch) {
    release.WaitForNotification();
    for (Job* job : batch) {
      ++computed;
      job->done(job, absl::OkStatus());
    }
  });
  std::vector<Job> jobs = MakeJobs(4, &recorder);
  ASSERT_TRUE(scheduler.Submit(&jobs[0]).ok());
  while (scheduler.queue_depth() != 0) std::this_thread::yield();
  ASSERT_TRUE(scheduler.Submit(&jobs[1]).ok());
  ASSERT_TRUE(scheduler.Submit(&jobs[2]).ok());
  const absl::Status full = scheduler.Submit(&jobs[3]);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  release.Notify();
  recorder.WaitAnswered(3);
  EXPECT_EQ(computed.load(), 3);
}

TEST(Scheduler, ExpiredJobsAreAnsweredWithoutComputing) {
  Recorder recorder;
  SchedulerOptions options;
  options.workers = 1;
  std::atomic<int> computed{0};
  Scheduler scheduler(options, Clock::Real(), [&](int, absl::Span<Job* const> batch) {
    for (Job* job : batch) {
      ++computed;
      job->done(job, absl::OkStatus());
    }
  });
  std::vector<Job> jobs = MakeJobs(1, &recorder);
  jobs[0].deadline = std::chrono::system_clock::now() - std::chrono::milliseconds(1);
  ASSERT_TRUE(scheduler.Submit(&jobs[0]).ok());
  recorder.WaitAnswered(1);
  absl::MutexLock lock(&recorder.mu);
  EXPECT_EQ(recorder.outcomes[0].code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(computed.load(), 0);
}

TEST(Scheduler, StopAnswersQueuedJobsUnavailableAndRefusesNewOnes) {
  Recorder recorder;
  absl::Notification started, release;
  SchedulerOptions options;
  options.workers = 1;
  options.max_batch = 1;
  Scheduler scheduler(options, Clock::Real(), [&](int, absl::Span<Job* const> batch) {
    started.Notify();
    release.WaitForNotification();
    for (Job* job : batch) job->done(job, absl::OkStatus());
  });
  std::vector<Job> jobs = MakeJobs(4, &recorder);
  ASSERT_TRUE(scheduler.Submit(&jobs[0]).ok());
  started.WaitForNotification();
  ASSERT_TRUE(scheduler.Submit(&jobs[1]).ok());
  ASSERT_TRUE(scheduler.Submit(&jobs[2]).ok());
  std::thread stopper([&] { scheduler.Stop(); });
  recorder.WaitAnswered(2);  // the two queued ones, answered by Stop
  release.Notify();          // the running batch finishes normally
  stopper.join();
  EXPECT_EQ(scheduler.Submit(&jobs[3]).code(), absl::StatusCode::kUnavailable);
  absl::MutexLock lock(&recorder.mu);
  ASSERT_EQ(recorder.outcomes.size(), 3u);
  EXPECT_EQ(recorder.outcomes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(recorder.outcomes[1].code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(recorder.outcomes[2].ok());
}

}  // namespace
}  // namespace helm::serve
