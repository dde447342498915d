// The admission queue on a fake clock: batches form at max_batch or after max_batch_wait_us,
// the queue is bounded, and Close hands back what waits.
#include "helm/serve/batch_queue.h"

#include <vector>

#include "gtest/gtest.h"

namespace helm::serve {
namespace {

BatchQueueOptions Options(int capacity, int max_batch, int wait_us) {
  BatchQueueOptions o;
  o.capacity = capacity;
  o.max_batch = max_batch;
  o.max_batch_wait_us = wait_us;
  return o;
}

TEST(BatchQueue, HandsOutAFullBatchAtOnce) {
  FakeClock clock(0);
  BatchQueue queue(Options(16, 4, 1000), &clock);
  std::vector<QueuedJob> jobs(6);
  for (QueuedJob& job : jobs) ASSERT_TRUE(queue.Submit(&job).ok());
  std::vector<QueuedJob*> batch;
  queue.TakeReady(&batch);
  ASSERT_EQ(batch.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(batch[i], &jobs[i]) << "FIFO order";
  // Two remain: not a full batch, and their wait has not run out.
  EXPECT_EQ(queue.TakeReady(&batch), 1000);
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(queue.depth(), 2);
}

TEST(BatchQueue, APartialBatchWaitsForMaxBatchWaitFromTheOldestAdmission) {
  FakeClock clock(0);  // a virtual clock may start at 0
  BatchQueue queue(Options(16, 8, 500), &clock);
  std::vector<QueuedJob> jobs(3);
  ASSERT_TRUE(queue.Submit(&jobs[0]).ok());
  EXPECT_EQ(jobs[0].admitted_us, 0);
  clock.AdvanceMicros(300);
  ASSERT_TRUE(queue.Submit(&jobs[1]).ok());
  EXPECT_EQ(jobs[1].admitted_us, 300);
  std::vector<QueuedJob*> batch;
  EXPECT_EQ(queue.TakeReady(&batch), 500);
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(queue.NextReadyUs(), 500);
  clock.AdvanceMicros(199);
  queue.TakeReady(&batch);
  EXPECT_TRUE(batch.empty());
  clock.AdvanceMicros(1);
  ASSERT_TRUE(queue.Submit(&jobs[2]).ok());
  EXPECT_EQ(queue.TakeReady(&batch), kNever);
  EXPECT_EQ(batch.size(), 3u);
  EXPECT_EQ(queue.depth(), 0);
}

TEST(BatchQueue, MaxBatchOneNeverWaits) {
  FakeClock clock(1000);
  BatchQueue queue(Options(16, 1, 500), &clock);
  QueuedJob a, b;
  ASSERT_TRUE(queue.Submit(&a).ok());
  ASSERT_TRUE(queue.Submit(&b).ok());
  std::vector<QueuedJob*> batch;
  EXPECT_EQ(queue.TakeReady(&batch), 1000) << "the second job is ready at once too";
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0], &a);
  queue.TakeReady(&batch);
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0], &b);
}

TEST(BatchQueue, RefusesBeyondCapacityAndAfterClose) {
  FakeClock clock(0);
  BatchQueue queue(Options(2, 8, 100), &clock);
  QueuedJob a, b, c;
  ASSERT_TRUE(queue.Submit(&a).ok());
  ASSERT_TRUE(queue.Submit(&b).ok());
  const absl::Status full = queue.Submit(&c);
  EXPECT_TRUE(absl::IsResourceExhausted(full)) << full;
  EXPECT_EQ(queue.depth(), 2);
  const std::vector<QueuedJob*> waiting = queue.Close();
  ASSERT_EQ(waiting.size(), 2u);
  EXPECT_EQ(waiting[0], &a);
  EXPECT_EQ(waiting[1], &b);
  EXPECT_TRUE(absl::IsUnavailable(queue.Submit(&c)));
  std::vector<QueuedJob*> batch;
  EXPECT_EQ(queue.TakeReady(&batch), kNever);
  EXPECT_TRUE(batch.empty());
}

}  // namespace
}  // namespace helm::serve
