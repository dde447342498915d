// The bounds on work the KV cache does under its lock (kv_cache.h, "Work under the lock"): a
// resize step's evictions are charged to its budget and reported as dropped, BeginRelease reads
// per-chunk pin counts instead of scanning slots, and num_users() is a maintained counter.
#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "helm/kv/kv_cache.h"
#include "kv/kv_test_util.h"

namespace helm::kv {
namespace {

using testutil::UserHistory;

constexpr int kTpb = 4;
constexpr int64_t kChunkBytes = 64 << 10;

struct Fixture {
  std::unique_ptr<pool::Pool> pool;
  std::unique_ptr<KvCache> kv;
  testutil::BlockShape model{.num_layers = 2, .num_heads = 1, .d_qk = 8, .d_v = 8};
};

// 16 pool chunks of 64 KiB, `kv_chunks` of them for KV; blocks of 512 B: 128 per chunk.
Fixture Make(int kv_chunks, const std::string& eviction = "cost_aware", bool allow_trim = true) {
  Fixture f;
  f.pool = *pool::Pool::Create(testutil::SixteenChunks(kv_chunks, kChunkBytes, 16 << 10));
  auto kv = KvCache::Create(
      testutil::CacheOptions(testutil::Eviction(kTpb, eviction, allow_trim), f.model, 0.025),
      f.pool.get());
  EXPECT_TRUE(kv.ok()) << kv.status();
  f.kv = *std::move(kv);
  return f;
}

UserHistory Events(int64_t user, int64_t n, int64_t salt = 0) {
  UserHistory h;
  for (int64_t i = 0; i < n; ++i) {
    h.Append(user * 1000 + i + salt, static_cast<int32_t>(i % 3), 1000 * i);
  }
  return h;
}

// Acquire, append the uncached suffix (when there is room), commit, release.
void Serve(Fixture& f, int64_t user, const UserHistory& h) {
  auto lease = f.kv->Acquire(user, h.View());
  ASSERT_TRUE(lease.ok()) << lease.status();
  const int64_t prefix = lease->cached_tokens();
  if (prefix == h.size()) return;
  auto r = lease->Reserve(h.size() - prefix);
  if (!r.ok()) return;
  ASSERT_TRUE(testutil::WriteTokens(f.kv->storage(), f.model, kTpb, user, h, *r).ok());
  ASSERT_TRUE(lease->Commit().ok());
}

// Fills every block of the cache with users of random lengths; returns their histories.
std::map<int64_t, UserHistory> FillUp(Fixture& f, std::mt19937_64& rng) {
  std::map<int64_t, UserHistory> users;
  for (int64_t u = 0; f.kv->used_blocks() < f.kv->capacity_blocks() && u < 1000; ++u) {
    users[u] = Events(u, 8 + static_cast<int64_t>(rng() % 120));
    Serve(f, u, users[u]);
  }
  EXPECT_EQ(f.kv->used_blocks(), f.kv->capacity_blocks());
  return users;
}

// Drains the chunk BeginRelease picks in steps of `step_blocks` blocks and checks each step's
// bound: copied + dropped within the budget, and every block evicted reported as dropped.
void DrainWithinBudget(const std::string& eviction, int64_t step_blocks) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  SCOPED_TRACE(::testing::Message() << "eviction " << eviction << ", seed " << seed);
  Fixture f = Make(2, eviction);
  std::mt19937_64 rng(seed);
  const std::map<int64_t, UserHistory> users = FillUp(f, rng);
  const int64_t bb = f.kv->block_bytes();
  const int32_t chunk = f.kv->BeginRelease();
  ASSERT_GE(chunk, 0);
  int64_t dropped = 0;
  bool empty = false;
  for (int step = 0; step < 1000 && !empty; ++step) {
    const KvStats before = f.kv->stats();
    const pool::DrainResult r = f.kv->Drain(chunk, step_blocks * bb);
    const KvStats d = f.kv->stats() - before;
    ASSERT_LE(r.copied_bytes + r.dropped_bytes, step_blocks * bb) << "step " << step;
    ASSERT_EQ(r.dropped_bytes, d.evicted_blocks * bb) << "step " << step;
    ASSERT_EQ(r.copied_bytes, d.relocated_blocks * bb) << "step " << step;
    ASSERT_TRUE(f.kv->CheckInvariants().ok()) << f.kv->CheckInvariants();
    dropped += r.dropped_bytes;
    empty = r.empty;
  }
  EXPECT_TRUE(empty);
  EXPECT_GT(dropped, 0);  // the cache was full: relocating needed evictions
  EXPECT_EQ(f.kv->capacity_blocks(), 128);
  for (const auto& [uid, h] : users) {
    EXPECT_TRUE(testutil::VerifyTokens(f.kv->storage(), f.model, kTpb, uid, h,
                                       f.kv->BlockOffsets(uid), f.kv->CachedTokens(uid))
                    .ok())
        << "user " << uid;
  }
}

TEST(KvCacheBounds, DrainChargesTrimsForRelocationRoomToItsBudget) {
  DrainWithinBudget("cost_aware", 8);
  DrainWithinBudget("cost_aware", 1);
}

TEST(KvCacheBounds, DrainNeverDropsAWholeLruUserBeyondItsBudget) {
  DrainWithinBudget("lru", 8);
  DrainWithinBudget("lru", 2);
}

TEST(KvCacheBounds, NumUsersMatchesABruteForceCountAfterRandomOperations) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  Fixture f = Make(2);
  std::mt19937_64 rng(seed);
  constexpr int64_t kUsers = 40;
  std::vector<KvLease> held;
  for (int op = 0; op < 3000; ++op) {
    const int64_t user = static_cast<int64_t>(rng() % kUsers);
    switch (rng() % 6) {
      case 0:
      case 1:
        // Salted histories disagree with the cache: trims before appending.
        Serve(f, user, Events(user, 1 + static_cast<int64_t>(rng() % 150), rng() % 4 == 0));
        break;
      case 2: {
        auto lease =
            f.kv->Acquire(user, Events(user, 1 + static_cast<int64_t>(rng() % 150)).View());
        ASSERT_TRUE(lease.ok());
        if (held.size() < 4) held.push_back(*std::move(lease));
        break;
      }
      case 3: {
        auto lease = f.kv->AcquireUnverified(user, static_cast<int64_t>(rng() % 60));
        ASSERT_TRUE(lease.ok());
        if (lease->history_tokens() > lease->cached_tokens() && rng() % 2 == 0) {
          (void)lease->Reserve(lease->history_tokens() - lease->cached_tokens());  // may be refused
          if (rng() % 2 == 0) (void)lease->Commit();  // else released uncommitted
        }
        break;
      }
      case 4:
        if (!held.empty()) held.erase(held.begin() + static_cast<int64_t>(rng() % held.size()));
        break;
      case 5:
        f.pool->SetTarget(1.0 - static_cast<double>(1 + rng() % 3) / 16.0);
        f.pool->Step();
        break;
    }
    int64_t resident = 0;
    for (int64_t u = 0; u < kUsers; ++u) resident += f.kv->CachedTokens(u) > 0 ? 1 : 0;
    ASSERT_EQ(f.kv->num_users(), resident) << "op " << op;
    ASSERT_EQ(static_cast<int64_t>(f.kv->ResidentUsers().size()), resident) << "op " << op;
  }
  held.clear();
  EXPECT_TRUE(f.kv->CheckInvariants().ok()) << f.kv->CheckInvariants();
}

TEST(KvCacheBounds, BeginReleasePicksTheLeastPinnedChunkExaminingChunksNotSlots) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  Fixture f = Make(4);  // 4 chunks of 128 blocks
  std::mt19937_64 rng(seed);
  const std::map<int64_t, UserHistory> users = FillUp(f, rng);
  for (int round = 0; round < 30; ++round) {
    std::vector<KvLease> held;
    std::map<int64_t, int64_t> pinned;  // pool chunk -> distinct pinned blocks
    for (int32_t c : f.kv->HeldChunks()) pinned[c] = 0;
    std::vector<int64_t> pinned_offsets;
    for (const auto& [uid, h] : users) {
      if (rng() % 3 != 0) continue;
      auto lease = f.kv->Acquire(uid, h.View());
      ASSERT_TRUE(lease.ok());
      for (int64_t off : lease->cached_block_offsets()) pinned_offsets.push_back(off);
      held.push_back(*std::move(lease));
    }
    std::sort(pinned_offsets.begin(), pinned_offsets.end());
    pinned_offsets.erase(std::unique(pinned_offsets.begin(), pinned_offsets.end()),
                         pinned_offsets.end());
    for (int64_t off : pinned_offsets) ++pinned[off / kChunkBytes];
    int64_t fewest = f.kv->capacity_blocks();
    for (const auto& [c, n] : pinned) fewest = std::min(fewest, n);

    const KvStats before = f.kv->stats();
    const int32_t chunk = f.kv->BeginRelease();
    ASSERT_GE(chunk, 0);
    EXPECT_EQ(pinned[chunk], fewest) << "round " << round;
    // Its work: one look at each held chunk, whatever the chunk's 128 slots hold.
    EXPECT_EQ((f.kv->stats() - before).release_chunks_examined, 4);
    ASSERT_TRUE(f.kv->CheckInvariants().ok()) << f.kv->CheckInvariants();
    f.kv->CancelRelease(chunk);
  }
  EXPECT_TRUE(f.kv->CheckInvariants().ok()) << f.kv->CheckInvariants();
}

}  // namespace
}  // namespace helm::kv
