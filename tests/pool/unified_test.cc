// The pool with both caches attached: randomized operation sequences with resizes back and forth
// while lookups, appends, pins and evictions run; invariants after every step; byte integrity of
// every cached EMB row and KV token; payload-free vs cpu equivalence; a multi-threaded run.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <random>
#include <thread>
#include <vector>

#include "emb/zipf.h"
#include "gtest/gtest.h"
#include "helm/emb/emb_cache.h"
#include "helm/kv/kv_cache.h"
#include "helm/pool/pool.h"
#include "kv/kv_test_util.h"

namespace helm {
namespace {

using kv::testutil::UserHistory;

constexpr int kTpb = 4;
constexpr int kUsers = 40;
constexpr int64_t kItems = 5000;

struct World {
  std::unique_ptr<pool::Pool> pool;
  std::unique_ptr<emb::EmbCache> emb;
  std::unique_ptr<kv::KvCache> kv;
  kv::testutil::BlockShape model{.num_layers = 1, .num_heads = 1, .d_qk = 8, .d_v = 8};
};

// The HSTU recompute-cost ratio (model::KvAttentionRatio) of one head of d_qk = d_v = 8 in a model
// of width 64: attention 2*(8+8) over linear 2*64*(2*8+3*8) FLOPs.
constexpr double kAttentionRatio = 32.0 / 5120.0;

World MakeWorld(const std::string& backend, int64_t max_step_bytes = 16 << 10) {
  pool::PoolOptions po;
  po.bytes = 1 << 20;
  po.chunk_bytes = 64 << 10;  // 16 chunks
  po.initial_split = 0.5;
  po.r_min = 0.125;
  po.r_max = 0.875;
  po.max_step_bytes = max_step_bytes;
  po.backend = backend;
  emb::EmbOptions eo;
  eo.num_items = kItems;
  eo.dim = 16;  // 64 B rows, 1024 per chunk
  kv::KvOptions ko;
  ko.tokens_per_block = kTpb;
  World w;  // 256 B blocks, 256 per chunk
  auto pool = pool::Pool::Create(po);
  EXPECT_TRUE(pool.ok()) << pool.status();
  w.pool = *std::move(pool);
  auto e = emb::EmbCache::Create(eo, w.pool.get());
  EXPECT_TRUE(e.ok()) << e.status();
  w.emb = *std::move(e);
  auto k =
      kv::KvCache::Create(kv::testutil::CacheOptions(ko, w.model, kAttentionRatio), w.pool.get());
  EXPECT_TRUE(k.ok()) << k.status();
  w.kv = *std::move(k);
  return w;
}

absl::Status CheckAll(const World& w) {
  if (absl::Status s = w.pool->CheckInvariants(); !s.ok()) return s;
  if (absl::Status s = w.emb->CheckInvariants(); !s.ok()) return s;
  return w.kv->CheckInvariants();
}

// Rows behind every location of a lookup equal their host rows.
absl::Status VerifyLookup(const World& w, absl::Span<const int64_t> ids, const emb::EmbLookup& r) {
  if (!w.pool->storage()->has_payload()) return absl::OkStatus();
  const int64_t rb = w.emb->row_bytes();
  std::vector<uint8_t> row(static_cast<size_t>(rb));
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t loc = r.locations()[i];
    const uint8_t* bytes;
    if (loc >= 0) {
      if (absl::Status s = w.pool->storage()->CopyPoolToHost(loc, row.data(), rb); !s.ok())
        return s;
      bytes = row.data();
    } else {
      bytes = static_cast<const uint8_t*>(r.staging_data()) + (-(loc + 1)) * rb;
    }
    if (std::memcmp(bytes, *w.emb->HostRow(ids[i]), static_cast<size_t>(rb)) != 0) {
      return absl::DataLossError(absl::StrCat("emb id ", ids[i], " at location ", loc, " differs"));
    }
  }
  return absl::OkStatus();
}

// Everything observable about a run, compared across backends.
struct Trace {
  std::vector<int64_t> values;
  void Add(int64_t v) { values.push_back(v); }
};

struct HeldEmb {
  std::vector<int64_t> ids;
  emb::EmbLookup result;
};
struct HeldKv {
  int64_t user;
  UserHistory history;
  kv::KvLease lease;
};

// Runs `ops` seeded random operations. With `verify`, checks invariants after every operation and
// bytes periodically (any failure is returned).
absl::Status RunRandom(World& w, uint64_t seed, int ops, bool verify, Trace* trace) {
  std::mt19937_64 rng(seed);
  testing::Zipf item_zipf(kItems, 0.9), user_zipf(kUsers, 0.8);
  std::vector<UserHistory> truth(kUsers), committed(kUsers);
  std::deque<HeldEmb> held_emb;
  std::deque<HeldKv> held_kv;
  int64_t clock_ms = 1;
  auto verify_all = [&]() -> absl::Status {
    if (absl::Status s = w.emb->VerifyResidentRows(); !s.ok()) return s;
    for (const HeldEmb& h : held_emb) {
      if (absl::Status s = VerifyLookup(w, h.ids, h.result); !s.ok()) return s;
    }
    for (const HeldKv& h : held_kv) {
      std::vector<int64_t> blocks(h.lease.cached_block_offsets().begin(),
                                  h.lease.cached_block_offsets().end());
      if (absl::Status s = kv::testutil::VerifyTokens(w.pool->storage(), w.model, kTpb, h.user,
                                                      h.history, blocks, h.lease.cached_tokens());
          !s.ok()) {
        return s;
      }
    }
    for (int u = 0; u < kUsers; ++u) {
      if (absl::Status s =
              kv::testutil::VerifyTokens(w.pool->storage(), w.model, kTpb, u, committed[u],
                                         w.kv->BlockOffsets(u), w.kv->CachedTokens(u));
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  };

  for (int op = 0; op < ops; ++op) {
    const int kind = static_cast<int>(rng() % 10);
    if (kind <= 3) {
      HeldEmb h;
      h.ids.resize(1 + rng() % 64);
      for (auto& id : h.ids)
        id = (rng() % 4 == 0) ? static_cast<int64_t>(rng() % kItems) : item_zipf(rng);
      if (absl::Status s = w.emb->Lookup(h.ids, &h.result); !s.ok()) return s;
      trace->Add(h.result.hits());
      trace->Add(h.result.staged_rows());
      for (int64_t loc : h.result.locations()) trace->Add(loc);
      if (verify) {
        if (absl::Status s = VerifyLookup(w, h.ids, h.result); !s.ok()) return s;
      }
      if (rng() % 10 < 3) {
        held_emb.push_back(std::move(h));
        if (held_emb.size() > 3) held_emb.pop_front();
      }
    } else if (kind <= 6) {
      const int64_t user = user_zipf(rng);
      UserHistory& t = truth[user];
      if (t.size() > 4 && rng() % 10 == 0) t.items[rng() % t.size()] += 1;  // history rewritten
      const int64_t grow = 1 + static_cast<int64_t>(rng() % 20);
      for (int64_t i = 0; i < grow; ++i) {
        t.Append(static_cast<int64_t>(rng() % kItems), static_cast<int32_t>(rng() % 4), clock_ms++);
      }
      HeldKv h{user, t, {}};
      auto lease = w.kv->Acquire(user, h.history.View());
      if (!lease.ok()) return lease.status();
      h.lease = *std::move(lease);
      trace->Add(h.lease.cached_tokens());
      if (verify) {
        std::vector<int64_t> blocks(h.lease.cached_block_offsets().begin(),
                                    h.lease.cached_block_offsets().end());
        if (absl::Status s = kv::testutil::VerifyTokens(w.pool->storage(), w.model, kTpb, user,
                                                        h.history, blocks, h.lease.cached_tokens());
            !s.ok()) {
          return s;
        }
      }
      const int64_t suffix = h.history.size() - h.lease.cached_tokens();
      if (suffix > 0) {
        auto r = h.lease.Reserve(suffix);
        trace->Add(static_cast<int64_t>(r.status().code()));
        if (r.ok()) {
          for (int64_t b : r->block_offsets) trace->Add(b);
          if (absl::Status s =
                  kv::testutil::WriteTokens(w.pool->storage(), w.model, kTpb, user, h.history, *r);
              !s.ok()) {
            return s;
          }
          if (rng() % 10 < 9) {
            if (absl::Status s = h.lease.Commit(); !s.ok()) return s;
            committed[user] = h.history;
          }
        }
      }
      if (rng() % 10 < 2) {
        held_kv.push_back(std::move(h));
        if (held_kv.size() > 3) held_kv.pop_front();
      }
    } else if (kind == 7) {
      w.pool->SetTarget(0.1 + 0.8 * std::uniform_real_distribution<double>(0, 1)(rng));
    } else {
      const int steps = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < steps; ++i) {
        const pool::StepResult r = w.pool->Step();
        trace->Add(r.copied_bytes);
        trace->Add(r.chunks_committed);
      }
    }
    if (verify) {
      if (absl::Status s = CheckAll(w); !s.ok()) {
        return absl::InternalError(absl::StrCat("after operation ", op, ": ", s.message()));
      }
      if (op % 25 == 0) {
        if (absl::Status s = verify_all(); !s.ok()) {
          return absl::DataLossError(absl::StrCat("after operation ", op, ": ", s.message()));
        }
      }
    }
  }
  held_emb.clear();
  held_kv.clear();
  // Let the resize finish now that nothing is pinned.
  for (int i = 0; i < 200 && !w.pool->Step().idle; ++i) {
  }
  const pool::PoolSnapshot snap = w.pool->Snapshot();
  trace->Add(snap.emb_chunks);
  if (snap.emb_chunks != snap.target_emb_chunks) {
    return absl::InternalError("resize did not finish once nothing was pinned");
  }
  const emb::EmbStats es = w.emb->stats();
  const kv::KvStats ks = w.kv->stats();
  for (int64_t v :
       {es.hits, es.misses, es.admitted, es.evictions, es.relocated_rows, es.dropped_rows,
        ks.hit_tokens, ks.evicted_blocks, ks.relocated_blocks, ks.trimmed_users}) {
    trace->Add(v);
  }
  if (verify) {
    if (absl::Status s = CheckAll(w); !s.ok()) return s;
    if (absl::Status s = verify_all(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

TEST(UnifiedPool, RandomizedOperationsKeepInvariantsAndBytes) {
  const uint64_t base = ::testing::UnitTest::GetInstance()->random_seed();
  int64_t moved = 0, relocated = 0;
  for (uint64_t i = 0; i < 12; ++i) {
    const uint64_t seed = base * 1000 + i;
    World w = MakeWorld("cpu");
    Trace trace;
    const absl::Status s = RunRandom(w, seed, 400, /*verify=*/true, &trace);
    ASSERT_TRUE(s.ok()) << "seed " << seed << ": " << s;
    moved += w.pool->stats().chunks_to_emb + w.pool->stats().chunks_to_kv;
    relocated += w.emb->stats().relocated_rows + w.kv->stats().relocated_blocks;
  }
  // The runs really resized and relocated (otherwise the checks above prove little).
  EXPECT_GT(moved, 50);
  EXPECT_GT(relocated, 100);
}

TEST(UnifiedPool, PayloadFreeBackendMakesTheSameDecisionsAsCpu) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  World cpu = MakeWorld("cpu");
  World none = MakeWorld("none");
  Trace a, b;
  ASSERT_TRUE(RunRandom(cpu, seed, 600, /*verify=*/false, &a).ok());
  ASSERT_TRUE(RunRandom(none, seed, 600, /*verify=*/false, &b).ok());
  ASSERT_GT(a.values.size(), 1000u);
  EXPECT_TRUE(a.values == b.values) << "seed " << seed;
  EXPECT_EQ(cpu.pool->storage()->stats().h2d_bytes, none.pool->storage()->stats().h2d_bytes);
  EXPECT_EQ(cpu.pool->storage()->stats().d2d_bytes, none.pool->storage()->stats().d2d_bytes);
}

// Steps until the split reaches the target; false when it does not within `max_steps`.
bool StepUntilIdle(World& w, int max_steps = 200) {
  for (int i = 0; i < max_steps; ++i) {
    if (w.pool->Step().idle) return true;
  }
  return false;
}

TEST(UnifiedPool, FlippedTargetAbortsAnEmbMoveAndKeepsItsRowsServable) {
  World w = MakeWorld("cpu");  // 16 KiB per step: a quarter of a full EMB chunk
  w.pool->SetTarget(0.25);     // EMB 4 chunks (empty: moves at once)
  ASSERT_TRUE(StepUntilIdle(w));
  std::vector<int64_t> ids(250);
  for (int64_t first = 0; first < kItems; first += 250) {
    for (int64_t i = 0; i < 250; ++i) ids[i] = first + i;
    ASSERT_TRUE(w.emb->Lookup(ids).ok());
  }
  ASSERT_GT(w.emb->resident_rows(), 3 * 1024);

  w.pool->SetTarget(3.0 / 16);  // one EMB chunk to give up
  w.pool->Step();
  const int32_t chunk = w.pool->Snapshot().moving_chunk;
  ASSERT_GE(chunk, 0) << "one step should not empty a full chunk";
  ASSERT_TRUE(CheckAll(w).ok());
  std::vector<int64_t> resident = w.emb->ResidentIds();
  std::sort(resident.begin(), resident.end());
  const emb::EmbStats emb_before = w.emb->stats();
  const pool::PoolStats pool_before = w.pool->stats();

  w.pool->SetTarget(0.25);  // flip back: EMB keeps its 4 chunks
  pool::PoolSnapshot snap = w.pool->Snapshot();
  EXPECT_EQ(snap.aborting_chunk, chunk);
  EXPECT_EQ(snap.pending_chunks, 0);
  EXPECT_EQ(snap.pending_bytes, 0);
  const pool::StepResult r = w.pool->Step();
  EXPECT_TRUE(r.aborted);
  EXPECT_EQ(r.copied_bytes, 0);
  ASSERT_TRUE(CheckAll(w).ok());
  EXPECT_TRUE(w.emb->VerifyResidentRows().ok());
  snap = w.pool->Snapshot();
  EXPECT_EQ(snap.emb_chunks, 4);
  EXPECT_EQ(snap.emb_chunks, snap.target_emb_chunks);
  EXPECT_EQ(snap.aborting_chunk, -1);
  EXPECT_EQ(w.pool->stats().aborted_moves, pool_before.aborted_moves + 1);
  // Nothing more was dropped or moved, and the chunk is usable capacity again.
  EXPECT_EQ(w.emb->stats().dropped_rows, emb_before.dropped_rows);
  EXPECT_EQ(w.emb->stats().relocated_rows, emb_before.relocated_rows);
  EXPECT_EQ(w.pool->stats().migration_bytes_dropped, pool_before.migration_bytes_dropped);
  EXPECT_EQ(w.emb->capacity_rows(), 4 * 1024);
  std::vector<int64_t> after = w.emb->ResidentIds();
  std::sort(after.begin(), after.end());
  EXPECT_EQ(after, resident);

  // Every row still resident is a hit, including those left in the aborted chunk.
  emb::EmbLookup hits;
  ASSERT_TRUE(w.emb->Lookup(resident, &hits).ok());
  EXPECT_EQ(hits.hits(), static_cast<int64_t>(resident.size()));
  EXPECT_TRUE(VerifyLookup(w, resident, hits).ok());
  int64_t in_chunk = 0;
  for (int64_t loc : hits.locations()) in_chunk += loc / w.pool->chunk_bytes() == chunk ? 1 : 0;
  EXPECT_GT(in_chunk, 0);
  hits.Release();
  EXPECT_TRUE(w.pool->Step().idle);
  ASSERT_TRUE(CheckAll(w).ok());
}

TEST(UnifiedPool, ReversedTargetAbortsAKvMoveKeepsItsUsersAndGrowsKv) {
  World w = MakeWorld("cpu");
  w.pool->SetTarget(0.75);  // KV 4 chunks of 256 blocks (empty: moves at once)
  ASSERT_TRUE(StepUntilIdle(w));
  constexpr int64_t kFillUsers = 100;  // 10 blocks each: 1000 of 1024 blocks
  std::vector<UserHistory> histories(kFillUsers);
  for (int64_t u = 0; u < kFillUsers; ++u) {
    for (int64_t t = 0; t < 10 * kTpb; ++t) histories[u].Append(u * 100 + t, 1, t);
    auto lease = w.kv->Acquire(u, histories[u].View());
    ASSERT_TRUE(lease.ok());
    auto r = lease->Reserve(histories[u].size());
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(
        kv::testutil::WriteTokens(w.pool->storage(), w.model, kTpb, u, histories[u], *r).ok());
    ASSERT_TRUE(lease->Commit().ok());
  }

  w.pool->SetTarget(13.0 / 16);  // one KV chunk to give up
  w.pool->Step();
  const int32_t chunk = w.pool->Snapshot().moving_chunk;
  ASSERT_GE(chunk, 0) << "one step should not empty a full chunk";
  ASSERT_EQ(w.pool->Snapshot().moving_from, pool::ChunkOwner::kKv);
  ASSERT_TRUE(CheckAll(w).ok());
  std::vector<int64_t> cached(kFillUsers);
  for (int64_t u = 0; u < kFillUsers; ++u) cached[u] = w.kv->CachedTokens(u);
  const kv::KvStats kv_before = w.kv->stats();
  const pool::PoolStats pool_before = w.pool->stats();

  w.pool->SetTarget(0.5);  // reverse: KV should grow to 8 chunks instead
  pool::PoolSnapshot snap = w.pool->Snapshot();
  EXPECT_EQ(snap.aborting_chunk, chunk);
  EXPECT_EQ(snap.moving_chunk, -1);
  EXPECT_EQ(snap.pending_chunks, 4);
  EXPECT_EQ(snap.pending_bytes, 4 * w.pool->chunk_bytes());
  const pool::StepResult r = w.pool->Step();
  EXPECT_TRUE(r.aborted);
  ASSERT_TRUE(CheckAll(w).ok());
  EXPECT_EQ(w.pool->stats().aborted_moves, pool_before.aborted_moves + 1);
  // The abort dropped nothing (EMB's chunks are empty: moving them drops nothing either).
  EXPECT_EQ(w.kv->stats().evicted_blocks, kv_before.evicted_blocks);
  EXPECT_EQ(w.kv->stats().relocated_blocks, kv_before.relocated_blocks);
  EXPECT_EQ(w.pool->stats().migration_bytes_dropped, pool_before.migration_bytes_dropped);
  int64_t users_in_chunk = 0;
  for (int64_t u = 0; u < kFillUsers; ++u) {
    ASSERT_EQ(w.kv->CachedTokens(u), cached[u]) << "user " << u;
    const std::vector<int64_t> blocks = w.kv->BlockOffsets(u);
    ASSERT_TRUE(kv::testutil::VerifyTokens(w.pool->storage(), w.model, kTpb, u, histories[u],
                                           blocks, cached[u])
                    .ok());
    bool in_chunk = false;
    for (int64_t b : blocks) in_chunk |= b / w.pool->chunk_bytes() == chunk;
    if (!in_chunk) continue;
    ++users_in_chunk;
    auto lease = w.kv->Acquire(u, histories[u].View());  // still a full hit
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(lease->cached_tokens(), cached[u]);
  }
  EXPECT_GT(users_in_chunk, 0);

  ASSERT_TRUE(StepUntilIdle(w));
  ASSERT_TRUE(CheckAll(w).ok());
  snap = w.pool->Snapshot();
  EXPECT_EQ(snap.emb_chunks, 8);
  EXPECT_EQ(snap.pending_chunks, 0);
  EXPECT_EQ(w.kv->capacity_blocks(), 8 * 256);
  for (int64_t u = 0; u < kFillUsers; ++u) EXPECT_EQ(w.kv->CachedTokens(u), cached[u]);
}

TEST(UnifiedPool, ConcurrentLookupsAppendsAndResizeStepsKeepDataIntact) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  World w = MakeWorld("cpu", 32 << 10);
  std::atomic<bool> failed{false};
  std::string failure;
  absl::Mutex failure_mu;
  auto fail = [&](const absl::Status& s) {
    absl::MutexLock lock(&failure_mu);
    if (!failed.exchange(true)) failure = s.ToString();
  };
  std::thread lookups([&] {
    std::mt19937_64 rng(seed + 1);
    testing::Zipf zipf(kItems, 0.9);
    std::vector<int64_t> ids(128);
    emb::EmbLookup r;
    for (int i = 0; i < 1500 && !failed; ++i) {
      for (auto& id : ids) id = zipf(rng);
      if (absl::Status s = w.emb->Lookup(ids, &r); !s.ok()) return fail(s);
      if (absl::Status s = VerifyLookup(w, ids, r); !s.ok()) return fail(s);
    }
  });
  std::thread requests([&] {
    std::mt19937_64 rng(seed + 2);
    std::vector<UserHistory> truth(kUsers);
    int64_t clock_ms = 1;
    for (int i = 0; i < 1500 && !failed; ++i) {
      const int64_t user = static_cast<int64_t>(rng() % kUsers);
      UserHistory& t = truth[user];
      for (int k = 0; k < 1 + static_cast<int>(rng() % 12); ++k) {
        t.Append(static_cast<int64_t>(rng() % kItems), 1, clock_ms++);
      }
      auto lease = w.kv->Acquire(user, t.View());
      if (!lease.ok()) return fail(lease.status());
      std::vector<int64_t> blocks(lease->cached_block_offsets().begin(),
                                  lease->cached_block_offsets().end());
      if (absl::Status s = kv::testutil::VerifyTokens(w.pool->storage(), w.model, kTpb, user, t,
                                                      blocks, lease->cached_tokens());
          !s.ok()) {
        return fail(s);
      }
      auto r = lease->Reserve(t.size() - lease->cached_tokens());
      if (!r.ok()) continue;
      if (absl::Status s = kv::testutil::WriteTokens(w.pool->storage(), w.model, kTpb, user, t, *r);
          !s.ok()) {
        return fail(s);
      }
      if (absl::Status s = lease->Commit(); !s.ok()) return fail(s);
      // Still pinned: the bytes just written must stay where they are.
      std::vector<int64_t> all = w.kv->BlockOffsets(user);
      if (absl::Status s =
              kv::testutil::VerifyTokens(w.pool->storage(), w.model, kTpb, user, t, all, t.size());
          !s.ok()) {
        return fail(s);
      }
    }
  });
  int resizes = 0;
  std::thread resizer([&] {
    std::mt19937_64 rng(seed + 3);
    for (int i = 0; i < 400 && !failed; ++i) {
      if (i % 20 == 0) {
        w.pool->SetTarget(i % 40 == 0 ? 0.25 : 0.75);
        ++resizes;
      }
      w.pool->Step();
      if (absl::Status s = CheckAll(w); !s.ok()) return fail(s);
    }
  });
  lookups.join();
  requests.join();
  resizer.join();
  ASSERT_FALSE(failed) << "seed " << seed << ": " << failure;
  ASSERT_TRUE(CheckAll(w).ok());
  EXPECT_TRUE(w.emb->VerifyResidentRows().ok());
  EXPECT_GT(w.pool->stats().chunks_to_emb + w.pool->stats().chunks_to_kv, 4);
}

}  // namespace
}  // namespace helm
