#include "helm/kv/kv_cache.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "helm/common/hash.h"
#include "kv/kv_test_util.h"

namespace helm::kv {
namespace {

using testutil::UserHistory;
using testutil::VerifyTokens;
using testutil::WriteTokens;

constexpr int kTpb = 4;

// What the HSTU cost formula (model::KvAttentionRatio) gives for one head of d_qk = d_v = 8 and
// d_model 16: attention 2*(8+8) over linear 2*16*(2*8+3*8) FLOPs.
constexpr double kAttentionRatio = 32.0 / 1280.0;

struct Fixture {
  std::unique_ptr<pool::Pool> pool;
  std::unique_ptr<KvCache> kv;
  testutil::BlockShape model{.num_layers = 2, .num_heads = 1, .d_qk = 8, .d_v = 8};
};

// 16 chunks of 64 KiB; blocks of 2 layers x 4 tokens x 16 floats = 512 B: 128 blocks per chunk.
Fixture Make(int kv_chunks, const std::string& eviction = "cost_aware", bool allow_trim = true) {
  Fixture f;
  f.pool = *pool::Pool::Create(testutil::SixteenChunks(kv_chunks));
  auto kv = KvCache::Create(testutil::CacheOptions(testutil::Eviction(kTpb, eviction, allow_trim),
                                                   f.model, kAttentionRatio),
                            f.pool.get());
  EXPECT_TRUE(kv.ok()) << kv.status();
  f.kv = *std::move(kv);
  return f;
}

UserHistory Events(int64_t user, int64_t n, int64_t salt = 0) {
  UserHistory h;
  for (int64_t i = 0; i < n; ++i)
    h.Append(user * 1000 + i + salt, static_cast<int32_t>(i % 3), 1000 * i);
  return h;
}

// One full request: acquire, append the uncached suffix, commit, release. Returns the prefix.
int64_t Serve(Fixture& f, int64_t user, const UserHistory& h) {
  auto lease = f.kv->Acquire(user, h.View());
  EXPECT_TRUE(lease.ok()) << lease.status();
  const int64_t prefix = lease->cached_tokens();
  if (prefix < h.size()) {
    auto r = lease->Reserve(h.size() - prefix);
    if (!r.ok()) return prefix;
    EXPECT_TRUE(WriteTokens(f.kv->storage(), f.model, kTpb, user, h, *r).ok());
    EXPECT_TRUE(lease->Commit().ok());
  }
  return prefix;
}

// The fingerprint residency events carry for a cache of `h`.
uint64_t Start(const UserHistory& h) {
  return HistoryStartFingerprint(h.items[0], h.actions[0], h.timestamps[0]);
}

absl::Status Verify(Fixture& f, int64_t user, const UserHistory& h) {
  return VerifyTokens(f.kv->storage(), f.model, kTpb, user, h, f.kv->BlockOffsets(user),
                      f.kv->CachedTokens(user));
}

TEST(KvCache, UsesTheBlockBytesItIsGiven) {
  Fixture f = Make(2);
  EXPECT_EQ(f.kv->block_bytes(), 512);
  EXPECT_EQ(f.kv->capacity_blocks(), 256);  // two chunks of 64 KiB
}

TEST(KvCache, CreateRejectsBadGeometryAndOptions) {
  pool::PoolOptions po;
  po.bytes = 1 << 20;
  po.chunk_bytes = 64 << 10;
  po.backend = "cpu";
  auto pool = *pool::Pool::Create(po);
  KvOptions ko;
  ko.tokens_per_block = kTpb;
  const testutil::BlockShape shape{.num_layers = 2, .num_heads = 1, .d_qk = 8, .d_v = 8};
  auto status_of = [&](const KvCacheOptions& o) { return KvCache::Create(o, pool.get()).status(); };
  KvCacheOptions o = testutil::CacheOptions(ko, shape, 0.5);
  o.block_bytes = 0;
  EXPECT_EQ(status_of(o).code(), absl::StatusCode::kInvalidArgument);
  o.block_bytes = (64 << 10) + 1;  // larger than a chunk
  EXPECT_EQ(status_of(o).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status_of(o).message().find("pool.chunk_bytes"), absl::string_view::npos);
  o = testutil::CacheOptions(ko, shape, -1.0);
  EXPECT_EQ(status_of(o).code(), absl::StatusCode::kInvalidArgument);
  o = testutil::CacheOptions(ko, shape, std::nan(""));
  EXPECT_EQ(status_of(o).code(), absl::StatusCode::kInvalidArgument);
  o = testutil::CacheOptions(ko, shape, 0.5);
  o.kv.dtype = "int8";
  EXPECT_NE(status_of(o).message().find("kv.dtype"), absl::string_view::npos);
  o = testutil::CacheOptions(ko, shape, 0.5);
  o.kv.tokens_per_block = 0;
  EXPECT_NE(status_of(o).message().find("kv.tokens_per_block"), absl::string_view::npos);
  // The same options are fine once valid (nothing above attached a cache to the pool).
  EXPECT_TRUE(KvCache::Create(testutil::CacheOptions(ko, shape, 0.5), pool.get()).ok());
}

TEST(KvCache, ReusesTheVerifiedPrefixAndAppendsIntoThePartialBlock) {
  Fixture f = Make(2);
  UserHistory h = Events(1, 10);
  EXPECT_EQ(Serve(f, 1, h), 0);
  EXPECT_EQ(f.kv->CachedTokens(1), 10);
  const std::vector<int64_t> blocks10 = f.kv->BlockOffsets(1);
  ASSERT_EQ(blocks10.size(), 3u);
  h.Append(77, 1, 50000);
  h.Append(78, 2, 50001);
  h.Append(79, 0, 50002);
  auto lease = f.kv->Acquire(1, h.View());
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->cached_tokens(), 10);
  EXPECT_EQ(std::vector<int64_t>(lease->cached_block_offsets().begin(),
                                 lease->cached_block_offsets().end()),
            blocks10);
  auto r = lease->Reserve(3);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first_token, 10);
  ASSERT_EQ(r->block_offsets.size(), 2u);
  EXPECT_EQ(r->block_offsets[0], blocks10[2]);  // tokens 10, 11 finish block 2
  ASSERT_TRUE(WriteTokens(f.kv->storage(), f.model, kTpb, 1, h, *r).ok());
  EXPECT_EQ(f.kv->CachedTokens(1), 10);  // invisible until commit
  ASSERT_TRUE(lease->Commit().ok());
  EXPECT_EQ(f.kv->CachedTokens(1), 13);
  lease->Release();
  EXPECT_TRUE(Verify(f, 1, h).ok());
  const KvStats s = f.kv->stats();
  EXPECT_EQ(s.requests, 2);
  EXPECT_EQ(s.requested_tokens, 23);
  EXPECT_EQ(s.hit_tokens, 10);
  EXPECT_EQ(s.recomputed_tokens, 13);
  EXPECT_EQ(s.appended_tokens, 13);
  EXPECT_TRUE(f.kv->CheckInvariants().ok());
}

TEST(KvCache, PrefixHashMismatchIsAMissFromTheChangedBlockOn) {
  Fixture f = Make(2);
  const UserHistory h = Events(2, 13);
  Serve(f, 2, h);
  UserHistory changed = h;
  changed.items[6] = 123456;  // inside block 1 (tokens 4..7)
  auto lease = f.kv->Acquire(2, changed.View());
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->cached_tokens(), 4);
  lease->Release();
  changed = h;
  changed.timestamps[0] += 1;  // the very first event
  lease = f.kv->Acquire(2, changed.View());
  EXPECT_EQ(lease->cached_tokens(), 0);
  lease->Release();
  changed = h;
  changed.actions[12] = 7;  // inside the partial last block (tokens 12..12)
  lease = f.kv->Acquire(2, changed.View());
  EXPECT_EQ(lease->cached_tokens(), 12);
  lease->Release();
  EXPECT_EQ(f.kv->stats().prefix_mismatches, 3);
  EXPECT_EQ(f.kv->CachedTokens(2), 13);  // looking is not changing
}

TEST(KvCache, ChangedTailIsRewrittenAfterTheMatchingPrefix) {
  Fixture f = Make(2);
  const UserHistory a = Events(3, 13);
  Serve(f, 3, a);
  UserHistory b = Events(3, 8);
  for (int i = 0; i < 7; ++i) b.Append(900 + i, 1, 2000000 + i);
  EXPECT_EQ(Serve(f, 3, b), 8);
  EXPECT_EQ(f.kv->CachedTokens(3), 15);
  EXPECT_TRUE(Verify(f, 3, b).ok());
  EXPECT_FALSE(Verify(f, 3, a).ok());  // the check itself can fail
  EXPECT_TRUE(f.kv->CheckInvariants().ok());
}

TEST(KvCache, PinnedBlocksSurvivePressureUntilReleased) {
  Fixture f = Make(1);                    // 128 blocks
  const UserHistory a = Events(10, 400);  // 100 blocks
  Serve(f, 10, a);
  auto held = f.kv->Acquire(10, a.View());
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(held->cached_tokens(), 400);
  const UserHistory b = Events(11, 240);  // 60 blocks; 28 are free
  auto lease = f.kv->Acquire(11, b.View());
  auto r = lease->Reserve(240);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(f.kv->CachedTokens(10), 400);
  EXPECT_TRUE(VerifyTokens(f.kv->storage(), f.model, kTpb, 10, a,
                           std::vector<int64_t>(held->cached_block_offsets().begin(),
                                                held->cached_block_offsets().end()),
                           400)
                  .ok());
  lease->Release();
  held->Release();
  EXPECT_EQ(Serve(f, 11, b), 0);
  EXPECT_EQ(f.kv->CachedTokens(11), 240);
  EXPECT_LT(f.kv->CachedTokens(10), 400);
  EXPECT_EQ(f.kv->stats().reserve_exhausted, 1);
  EXPECT_TRUE(f.kv->CheckInvariants().ok());
}

TEST(KvCache, TailTrimmingKeepsAUsablePrefix) {
  Fixture f = Make(1);
  const UserHistory a = Events(20, 400);  // 100 blocks
  Serve(f, 20, a);
  std::vector<ResidencyEvent> events;
  f.kv->DrainResidencyEvents(&events);
  const UserHistory b = Events(21, 160);  // 40 blocks, 28 free: 12 short
  EXPECT_EQ(Serve(f, 21, b), 0);
  EXPECT_EQ(f.kv->CachedTokens(20), (100 - 12) * kTpb);
  EXPECT_EQ(f.kv->stats().trimmed_users, 1);
  EXPECT_EQ(f.kv->stats().evicted_users, 0);
  f.kv->DrainResidencyEvents(&events);
  EXPECT_EQ(events, (std::vector<ResidencyEvent>{{20, 352, Start(a)}, {21, 160, Start(b)}}));
  auto lease = f.kv->Acquire(20, a.View());
  EXPECT_EQ(lease->cached_tokens(), 352);
  lease->Release();
  EXPECT_TRUE(Verify(f, 20, a).ok());
  EXPECT_TRUE(Verify(f, 21, b).ok());
}

TEST(KvCache, TheGhostCountsTheTokensAUserLostToMakeRoom) {
  // The ghost covers pool.ghost_share (5%) of the 1 MiB pool: 102 blocks, 409 tokens.
  Fixture f = Make(1, "lru");
  Serve(f, 30, Events(30, 200));
  Serve(f, 31, Events(31, 200));
  Serve(f, 32, Events(32, 160));  // drops user 30's 200 tokens whole
  ASSERT_EQ(f.kv->CachedTokens(30), 0);
  EXPECT_EQ(f.kv->stats().ghost_hit_tokens, 0);
  auto lease = f.kv->Acquire(30, Events(30, 208).View());  // 8 new events on top
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->cached_tokens(), 0);
  lease->Release();
  // A KV share larger by the ghost's would have kept the 200 tokens, not the 8 new ones.
  EXPECT_EQ(f.kv->stats().ghost_hit_tokens, 200);
  EXPECT_EQ(f.kv->stats().recomputed_tokens, 200 + 200 + 160 + 208);
  // Taken once: a second request of the same user finds nothing in the ghost.
  ASSERT_TRUE(f.kv->Acquire(30, Events(30, 208).View()).ok());
  EXPECT_EQ(f.kv->stats().ghost_hit_tokens, 200);

  // A trimmed tail counts what was cut, and only up to what the request recomputes.
  Fixture g = Make(1);
  const UserHistory a = Events(20, 400);
  Serve(g, 20, a);
  Serve(g, 21, Events(21, 160));  // trims user 20 by 12 blocks
  ASSERT_EQ(g.kv->CachedTokens(20), 352);
  ASSERT_TRUE(g.kv->Acquire(20, a.View()).ok());
  EXPECT_EQ(g.kv->stats().ghost_hit_tokens, 48);
}

TEST(KvCache, ResidencyEventsCarryTheStartOfTheCachedHistory) {
  Fixture f = Make(2);
  std::vector<ResidencyEvent> events;
  UserHistory h = Events(50, 40);
  Serve(f, 50, h);
  f.kv->DrainResidencyEvents(&events);
  EXPECT_EQ(events, (std::vector<ResidencyEvent>{{50, 40, Start(h)}}));
  // Growth keeps the start.
  h.Append(9, 1, 90000);
  EXPECT_EQ(Serve(f, 50, h), 40);
  f.kv->DrainResidencyEvents(&events);
  EXPECT_EQ(events, (std::vector<ResidencyEvent>{{50, 41, Start(h)}}));
  // The client drops the oldest 8 events: nothing matches, and the rewritten cache starts
  // where the new history starts.
  UserHistory dropped;
  for (int64_t i = 8; i < h.size(); ++i) dropped.Append(h.items[i], h.actions[i], h.timestamps[i]);
  ASSERT_NE(Start(dropped), Start(h));
  EXPECT_EQ(Serve(f, 50, dropped), 0);
  f.kv->DrainResidencyEvents(&events);
  EXPECT_EQ(events, (std::vector<ResidencyEvent>{{50, 33, Start(dropped)}}));
  EXPECT_EQ(f.kv->ResidentUsers(), events);
  // A cache filled without history contents has no known start.
  auto lease = f.kv->AcquireUnverified(51, 8);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(lease->Reserve(8).ok());
  ASSERT_TRUE(lease->Commit().ok());
  f.kv->DrainResidencyEvents(&events);
  EXPECT_EQ(events, (std::vector<ResidencyEvent>{{51, 8, 0}}));
}

TEST(KvCache, LruDropsTheWholeLeastRecentUser) {
  Fixture f = Make(1, "lru");
  Serve(f, 30, Events(30, 200));  // 50 blocks, oldest
  Serve(f, 31, Events(31, 200));  // 50 blocks
  Serve(f, 32, Events(32, 160));  // 40 blocks: 28 free, drops user 30 whole
  EXPECT_EQ(f.kv->CachedTokens(30), 0);
  EXPECT_EQ(f.kv->CachedTokens(31), 200);
  EXPECT_EQ(f.kv->stats().evicted_users, 1);
  std::vector<ResidencyEvent> events;
  f.kv->DrainResidencyEvents(&events);
  EXPECT_EQ(events.front(), (ResidencyEvent{30, 0, 0}));
  EXPECT_EQ(f.kv->ResidentUsers(),
            (std::vector<ResidencyEvent>{{31, 200, Start(Events(31, 200))},
                                         {32, 160, Start(Events(32, 160))}}));
}

TEST(KvCache, CostAwareEvictionKeepsTheFrequentUserThatLruWouldDrop) {
  for (const std::string policy : {"cost_aware", "lru"}) {
    Fixture f = Make(1, policy, /*allow_trim=*/false);
    const UserHistory frequent = Events(40, 200), once = Events(41, 200);
    for (int i = 0; i < 5; ++i) Serve(f, 40, frequent);
    Serve(f, 41, once);
    Serve(f, 42, Events(42, 160));  // needs one of them gone
    if (policy == "cost_aware") {
      EXPECT_EQ(f.kv->CachedTokens(40), 200);
      EXPECT_EQ(f.kv->CachedTokens(41), 0);
    } else {
      EXPECT_EQ(f.kv->CachedTokens(40), 0);
      EXPECT_EQ(f.kv->CachedTokens(41), 200);
    }
  }
}

TEST(KvCache, ConcurrentRequestsOfOneUserDoNotBothAppend) {
  Fixture f = Make(2);
  UserHistory h = Events(50, 10);
  Serve(f, 50, h);
  h.Append(1, 1, 99999);
  h.Append(2, 1, 99999);
  auto first = f.kv->Acquire(50, h.View());
  auto second = f.kv->Acquire(50, h.View());
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_TRUE(first->Reserve(2).ok());
  auto r = second->Reserve(2);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("already appending"), absl::string_view::npos);
  ASSERT_TRUE(first->Commit().ok());
  // The first request now reads 12 tokens; the second would overwrite tokens 10..11 it reads.
  EXPECT_EQ(second->Reserve(2).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(f.kv->stats().reserve_conflicts, 2);
  first->Release();
  second->Release();
  EXPECT_TRUE(f.kv->CheckInvariants().ok());
}

TEST(KvCache, UncommittedReservationsAreFreedOnRelease) {
  Fixture f = Make(2);
  const UserHistory h = Events(60, 9);
  Serve(f, 60, h);
  std::vector<ResidencyEvent> events;
  f.kv->DrainResidencyEvents(&events);
  const int64_t used = f.kv->used_blocks();
  UserHistory longer = h;
  for (int i = 0; i < 20; ++i) longer.Append(i, 0, 10000000 + i);
  {
    auto lease = f.kv->Acquire(60, longer.View());
    ASSERT_TRUE(lease->Reserve(20).ok());
    EXPECT_EQ(f.kv->used_blocks(), used + 5);
  }
  EXPECT_EQ(f.kv->used_blocks(), used);
  EXPECT_EQ(f.kv->CachedTokens(60), 9);
  f.kv->DrainResidencyEvents(&events);
  EXPECT_TRUE(events.empty());
  EXPECT_TRUE(f.kv->CheckInvariants().ok());
}

TEST(KvCache, BadRequestsAreInvalidArgument) {
  Fixture f = Make(2);
  UserHistory h = Events(70, 5);
  EXPECT_EQ(f.kv->Acquire(-1, h.View()).status().code(), absl::StatusCode::kInvalidArgument);
  UserHistory ragged = h;
  ragged.actions.pop_back();
  auto bad = f.kv->Acquire(70, ragged.View());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("actions 4"), absl::string_view::npos);
  auto lease = f.kv->Acquire(70, h.View());
  EXPECT_EQ(lease->Reserve(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(lease->Reserve(0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvCache, ShrinkRelocatesBlocksWithoutChangingTheirBytes) {
  Fixture f = Make(2);  // 256 blocks
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  std::mt19937_64 rng(seed);
  std::vector<UserHistory> histories;
  for (int u = 0; u < 12; ++u) {  // ~360 blocks asked for: the cache is full and fragmented
    histories.push_back(Events(100 + u, 40 + static_cast<int64_t>(rng() % 160)));
    Serve(f, 100 + u, histories.back());
  }
  auto held = f.kv->Acquire(111, histories[11].View());  // the most recent user: resident
  ASSERT_GT(held->cached_tokens(), 0);
  const std::vector<int64_t> held_offsets(held->cached_block_offsets().begin(),
                                          held->cached_block_offsets().end());
  f.pool->SetTarget(1.0 - 1 / 16.0);
  for (int i = 0; i < 50 && f.pool->Snapshot().kv_chunks > 1; ++i) {
    f.pool->Step();
    ASSERT_TRUE(f.pool->CheckInvariants().ok());
    ASSERT_TRUE(f.kv->CheckInvariants().ok());
    const std::vector<int64_t> now = f.kv->BlockOffsets(111);
    ASSERT_TRUE(std::equal(held_offsets.begin(), held_offsets.end(), now.begin()));  // pinned
  }
  held->Release();
  for (int i = 0; i < 50 && f.pool->Snapshot().kv_chunks > 1; ++i) f.pool->Step();
  EXPECT_EQ(f.pool->Snapshot().kv_chunks, 1);
  EXPECT_EQ(f.kv->capacity_blocks(), 128);
  EXPECT_GT(f.kv->stats().relocated_blocks, 0) << "seed " << seed;
  int resident = 0;
  for (int u = 0; u < 12; ++u) {
    ASSERT_TRUE(Verify(f, 100 + u, histories[u]).ok()) << "user " << 100 + u;
    resident += f.kv->CachedTokens(100 + u) > 0 ? 1 : 0;
  }
  EXPECT_GT(resident, 0);
  EXPECT_TRUE(f.kv->CheckInvariants().ok());
}

}  // namespace
}  // namespace helm::kv
