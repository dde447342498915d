#include "helm/pool/pool.h"

#include <algorithm>
#include <vector>

#include "gtest/gtest.h"
#include "helm/common/clock.h"

namespace helm::pool {
namespace {

PoolOptions SmallOptions() {
  PoolOptions o;
  o.bytes = 1 << 20;
  o.chunk_bytes = 64 << 10;  // 16 chunks
  o.initial_split = 0.5;
  o.r_min = 0.125;
  o.r_max = 0.875;
  o.backend = "none";
  return o;
}

// A client that holds chunks as plain capacity and drains a chunk over `steps_to_drain` calls.
// Records cancelled releases and prefetch budgets.
class FakeClient : public ChunkClient {
 public:
  explicit FakeClient(int steps_to_drain = 1) : steps_to_drain_(steps_to_drain) {}
  void AddChunk(int32_t chunk) override { held_.push_back(chunk); }
  int32_t BeginRelease() override {
    if (held_.empty() || blocked_) return -1;
    draining_ = *std::max_element(held_.begin(), held_.end());
    calls_ = 0;
    return draining_;
  }
  void CancelRelease(int32_t chunk) override {
    EXPECT_EQ(chunk, draining_);
    cancelled_.push_back(chunk);
    draining_ = -1;
  }
  DrainResult Drain(int32_t chunk, int64_t max_copy_bytes) override {
    EXPECT_EQ(chunk, draining_);
    ++drain_calls_;
    DrainResult r;
    if (pinned_) {
      r.blocked = true;
      r.remaining_bytes = 1000;
      return r;
    }
    r.copied_bytes = std::min<int64_t>(max_copy_bytes, 1000);
    if (++calls_ >= steps_to_drain_) {
      held_.erase(std::find(held_.begin(), held_.end(), chunk));
      r.empty = true;
    } else {
      r.remaining_bytes = 1000;
    }
    return r;
  }
  std::vector<int32_t> HeldChunks() const override { return held_; }
  int64_t Prefetch(int64_t max_bytes) override {
    prefetch_budgets_.push_back(max_bytes);
    return max_bytes;
  }

  std::vector<int32_t> held_;
  std::vector<int32_t> cancelled_;
  std::vector<int64_t> prefetch_budgets_;
  int drain_calls_ = 0;
  int steps_to_drain_;
  int calls_ = 0;
  int32_t draining_ = -1;
  bool pinned_ = false;
  bool blocked_ = false;
};

TEST(Pool, InitialSplitIsWholeChunksAndTargetIsClamped) {
  auto pool = Pool::Create(SmallOptions());
  ASSERT_TRUE(pool.ok()) << pool.status();
  PoolSnapshot s = (*pool)->Snapshot();
  EXPECT_EQ(s.num_chunks, 16);
  EXPECT_EQ(s.emb_chunks, 8);
  EXPECT_DOUBLE_EQ(s.committed_split, 0.5);
  EXPECT_DOUBLE_EQ((*pool)->SetTarget(0.99), 0.875);
  EXPECT_DOUBLE_EQ((*pool)->SetTarget(-3), 0.125);
  EXPECT_EQ((*pool)->Snapshot().target_emb_chunks, 2);
  EXPECT_TRUE((*pool)->CheckInvariants().ok());
}

TEST(Pool, RejectsInconsistentOptionsWithTheKeyName) {
  PoolOptions o = SmallOptions();
  o.r_min = 0.9;
  auto bad = Pool::Create(o);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("r_min"), absl::string_view::npos);
  o = SmallOptions();
  o.chunk_bytes = 3 << 16;
  EXPECT_EQ(Pool::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Pool, ResizeWithoutCachesMovesChunksInOneStep) {
  auto pool = Pool::Create(SmallOptions());
  ASSERT_TRUE(pool.ok());
  (*pool)->SetTarget(0.25);
  const StepResult r = (*pool)->Step();
  EXPECT_EQ(r.chunks_committed, 4);
  EXPECT_EQ((*pool)->Snapshot().emb_chunks, 4);
  EXPECT_TRUE((*pool)->Step().idle);
  EXPECT_EQ((*pool)->stats().chunks_to_kv, 4);
  EXPECT_TRUE((*pool)->CheckInvariants().ok());
}

TEST(Pool, StepsAreBoundedAndProgressIsObservable) {
  PoolOptions o = SmallOptions();
  o.max_step_bytes = 1000;
  auto pool = Pool::Create(o);
  ASSERT_TRUE(pool.ok());
  FakeClient emb(/*steps_to_drain=*/3);
  ASSERT_TRUE((*pool)->Attach(ChunkOwner::kEmb, &emb).ok());
  EXPECT_EQ(emb.held_.size(), 8u);
  (*pool)->SetTarget(0.375);  // 6 chunks: two to move
  StepResult r = (*pool)->Step();
  EXPECT_EQ(r.copied_bytes, 1000);
  EXPECT_EQ(r.chunks_committed, 0);
  PoolSnapshot s = (*pool)->Snapshot();
  EXPECT_EQ(s.emb_chunks, 8);  // the moving chunk still counts for its source
  EXPECT_EQ(s.moving_chunk, 15 - 8);
  EXPECT_EQ(s.pending_chunks, 2);
  EXPECT_EQ(s.pending_bytes, 1000 + (64 << 10));
  EXPECT_TRUE((*pool)->CheckInvariants().ok());
  int steps = 1;
  while (!(*pool)->Step().idle && steps < 100) ++steps;
  EXPECT_EQ(steps, 6);
  EXPECT_EQ((*pool)->Snapshot().emb_chunks, 6);
  EXPECT_EQ((*pool)->stats().migration_bytes_done, 6000);
  EXPECT_TRUE((*pool)->CheckInvariants().ok());
  (*pool)->Detach(ChunkOwner::kEmb);
}

TEST(Pool, PinnedContentBlocksTheStepUntilReleased) {
  auto pool = Pool::Create(SmallOptions());
  ASSERT_TRUE(pool.ok());
  FakeClient kv;
  ASSERT_TRUE((*pool)->Attach(ChunkOwner::kKv, &kv).ok());
  kv.pinned_ = true;
  (*pool)->SetTarget(0.75);
  StepResult r = (*pool)->Step();
  EXPECT_TRUE(r.blocked);
  EXPECT_EQ((*pool)->Snapshot().emb_chunks, 8);
  EXPECT_EQ((*pool)->stats().blocked_steps, 1);
  kv.pinned_ = false;
  for (int i = 0; i < 10; ++i) (*pool)->Step();
  EXPECT_EQ((*pool)->Snapshot().emb_chunks, 12);
  EXPECT_EQ(kv.held_.size(), 4u);
  EXPECT_TRUE((*pool)->CheckInvariants().ok());
  (*pool)->Detach(ChunkOwner::kKv);
}

TEST(Pool, FlippedTargetAbortsTheMoveWithoutDrainingMore) {
  auto pool = Pool::Create(SmallOptions());
  ASSERT_TRUE(pool.ok());
  FakeClient emb(/*steps_to_drain=*/3);
  ASSERT_TRUE((*pool)->Attach(ChunkOwner::kEmb, &emb).ok());
  (*pool)->SetTarget(7.0 / 16);  // one chunk to leave EMB
  EXPECT_FALSE((*pool)->Step().aborted);
  EXPECT_EQ((*pool)->Snapshot().moving_chunk, 7);
  EXPECT_EQ(emb.drain_calls_, 1);

  (*pool)->SetTarget(0.5);  // EMB keeps all 8: the move is no longer wanted
  PoolSnapshot s = (*pool)->Snapshot();
  EXPECT_EQ(s.moving_chunk, -1);
  EXPECT_EQ(s.aborting_chunk, 7);
  EXPECT_EQ(s.moving_from, ChunkOwner::kEmb);
  EXPECT_EQ(s.pending_chunks, 0);
  EXPECT_EQ(s.pending_bytes, 0);
  EXPECT_TRUE(emb.cancelled_.empty());  // SetTarget never calls into a cache

  const StepResult r = (*pool)->Step();
  EXPECT_TRUE(r.aborted);
  EXPECT_TRUE(r.idle);
  EXPECT_EQ(r.copied_bytes, 0);
  EXPECT_EQ(emb.cancelled_, std::vector<int32_t>{7});
  EXPECT_EQ(emb.drain_calls_, 1);  // not drained any further
  s = (*pool)->Snapshot();
  EXPECT_EQ(s.moving_chunk, -1);
  EXPECT_EQ(s.aborting_chunk, -1);
  EXPECT_EQ(s.emb_chunks, 8);
  EXPECT_EQ(s.pending_bytes, 0);
  EXPECT_EQ((*pool)->stats().aborted_moves, 1);
  EXPECT_EQ((*pool)->stats().chunks_to_kv, 0);
  EXPECT_TRUE((*pool)->CheckInvariants().ok());
  EXPECT_TRUE((*pool)->Step().idle);
  EXPECT_EQ((*pool)->stats().aborted_moves, 1);
  (*pool)->Detach(ChunkOwner::kEmb);
}

TEST(Pool, ReversedTargetAbortsThenMovesTheOtherWay) {
  PoolOptions o = SmallOptions();
  o.max_step_bytes = 1000;
  auto pool = Pool::Create(o);
  ASSERT_TRUE(pool.ok());
  FakeClient emb(/*steps_to_drain=*/3), kv(/*steps_to_drain=*/2);
  ASSERT_TRUE((*pool)->Attach(ChunkOwner::kEmb, &emb).ok());
  ASSERT_TRUE((*pool)->Attach(ChunkOwner::kKv, &kv).ok());
  (*pool)->SetTarget(7.0 / 16);
  (*pool)->Step();
  ASSERT_EQ((*pool)->Snapshot().moving_chunk, 7);

  (*pool)->SetTarget(9.0 / 16);  // now one chunk should go the other way
  PoolSnapshot s = (*pool)->Snapshot();
  EXPECT_EQ(s.aborting_chunk, 7);
  EXPECT_EQ(s.pending_chunks, 1);
  EXPECT_EQ(s.pending_bytes, 64 << 10);  // a whole KV chunk, not what chunk 7 still holds

  StepResult r = (*pool)->Step();  // aborts, then starts the KV chunk in the same step
  EXPECT_TRUE(r.aborted);
  EXPECT_EQ(emb.cancelled_, std::vector<int32_t>{7});
  s = (*pool)->Snapshot();
  EXPECT_EQ(s.moving_chunk, 15);
  EXPECT_EQ(s.moving_from, ChunkOwner::kKv);
  EXPECT_EQ(s.pending_bytes, 1000);
  EXPECT_TRUE((*pool)->CheckInvariants().ok());
  int steps = 0;
  while (!(*pool)->Step().idle && steps < 100) {
    ++steps;
    ASSERT_TRUE((*pool)->CheckInvariants().ok());
  }
  s = (*pool)->Snapshot();
  EXPECT_EQ(s.emb_chunks, 9);
  EXPECT_EQ(emb.held_.size(), 9u);
  EXPECT_EQ(kv.held_.size(), 7u);
  EXPECT_EQ((*pool)->stats().aborted_moves, 1);
  EXPECT_EQ((*pool)->stats().chunks_to_emb, 1);
  EXPECT_EQ((*pool)->stats().chunks_to_kv, 0);
  EXPECT_TRUE((*pool)->CheckInvariants().ok());
  (*pool)->Detach(ChunkOwner::kEmb);
  (*pool)->Detach(ChunkOwner::kKv);
}

TEST(Pool, DetachKeepsAChunkWhoseMoveIsNoLongerWanted) {
  auto pool = Pool::Create(SmallOptions());
  ASSERT_TRUE(pool.ok());
  FakeClient emb(/*steps_to_drain=*/3);
  ASSERT_TRUE((*pool)->Attach(ChunkOwner::kEmb, &emb).ok());
  (*pool)->SetTarget(7.0 / 16);
  (*pool)->Step();
  (*pool)->SetTarget(0.5);
  (*pool)->Detach(ChunkOwner::kEmb);
  const PoolSnapshot s = (*pool)->Snapshot();
  EXPECT_EQ(s.emb_chunks, 8);
  EXPECT_EQ(s.aborting_chunk, -1);
  EXPECT_EQ((*pool)->stats().aborted_moves, 1);
  EXPECT_TRUE((*pool)->CheckInvariants().ok());
}

TEST(Pool, PrefetchPacingWorksOnAClockThatStartsAtZero) {
  PoolOptions o = SmallOptions();
  o.prefetch_bytes_per_s = 1'000'000;  // 1 byte per microsecond
  FakeClock clock(0);
  auto pool = Pool::Create(o, &clock);
  ASSERT_TRUE(pool.ok());
  FakeClient emb;
  ASSERT_TRUE((*pool)->Attach(ChunkOwner::kEmb, &emb).ok());
  EXPECT_TRUE((*pool)->Step().idle);  // at t = 0: starts the budget's clock, no budget yet
  EXPECT_TRUE(emb.prefetch_budgets_.empty());
  clock.AdvanceMicros(1000);
  (*pool)->Step();
  EXPECT_EQ(emb.prefetch_budgets_, std::vector<int64_t>{1000});
  clock.AdvanceMicros(500);
  (*pool)->Step();
  EXPECT_EQ(emb.prefetch_budgets_, (std::vector<int64_t>{1000, 500}));
  EXPECT_EQ((*pool)->stats().prefetch_bytes, 1500);
  (*pool)->Detach(ChunkOwner::kEmb);
}

TEST(Pool, SecondClientForOneSideIsRejected) {
  auto pool = Pool::Create(SmallOptions());
  ASSERT_TRUE(pool.ok());
  FakeClient a, b;
  ASSERT_TRUE((*pool)->Attach(ChunkOwner::kEmb, &a).ok());
  EXPECT_EQ((*pool)->Attach(ChunkOwner::kEmb, &b).code(), absl::StatusCode::kAlreadyExists);
  (*pool)->Detach(ChunkOwner::kEmb);
}

TEST(Pool, InvariantCheckCatchesAClientThatLostAChunk) {
  auto pool = Pool::Create(SmallOptions());
  ASSERT_TRUE(pool.ok());
  FakeClient emb;
  ASSERT_TRUE((*pool)->Attach(ChunkOwner::kEmb, &emb).ok());
  emb.held_.pop_back();
  EXPECT_FALSE((*pool)->CheckInvariants().ok());
  (*pool)->Detach(ChunkOwner::kEmb);
}

}  // namespace
}  // namespace helm::pool
