#include "helm/emb/emb_cache.h"

#include <cstring>
#include <list>
#include <random>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "emb/zipf.h"
#include "gtest/gtest.h"
#include "helm/common/clock.h"
#include "helm/pool/pool.h"

namespace helm::emb {
namespace {

uint32_t Seed() { return static_cast<uint32_t>(::testing::UnitTest::GetInstance()->random_seed()); }

struct Fixture {
  std::unique_ptr<pool::Pool> pool;
  std::unique_ptr<EmbCache> cache;
};

// 16 chunks of 64 KiB; rows of 16 fp32 (64 B): 1024 rows per chunk.
Fixture Make(int emb_chunks, const std::string& admission = "tinylfu",
             const std::string& backend = "cpu", int64_t num_items = 20000,
             double ghost_sample_rate = 1.0 / 16) {
  pool::PoolOptions po;
  po.bytes = 1 << 20;
  po.chunk_bytes = 64 << 10;
  po.initial_split = emb_chunks / 16.0;
  po.r_min = 0.0;
  po.r_max = 1.0;
  po.backend = backend;
  po.max_step_bytes = 64 << 10;
  EmbOptions eo;
  eo.num_items = num_items;
  eo.dim = 16;
  eo.admission = admission;
  eo.ghost_sample_rate = ghost_sample_rate;
  Fixture f;
  auto pool = pool::Pool::Create(po);
  EXPECT_TRUE(pool.ok()) << pool.status();
  f.pool = *std::move(pool);
  auto cache = EmbCache::Create(eo, f.pool.get());
  EXPECT_TRUE(cache.ok()) << cache.status();
  f.cache = *std::move(cache);
  return f;
}

// The bytes a location points at (cpu backend: host memory).
const uint8_t* RowAt(const EmbCache& cache, const EmbLookup& r, int64_t loc) {
  if (loc >= 0) return static_cast<const uint8_t*>(cache.storage()->base()) + loc;
  return static_cast<const uint8_t*>(r.staging_data()) + (-(loc + 1)) * cache.row_bytes();
}

void ExpectRowsMatch(const EmbCache& cache, absl::Span<const int64_t> ids, const EmbLookup& r) {
  ASSERT_EQ(r.locations().size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(std::memcmp(RowAt(cache, r, r.locations()[i]), *cache.HostRow(ids[i]),
                          static_cast<size_t>(cache.row_bytes())),
              0)
        << "id " << ids[i] << " at position " << i << " loc " << r.locations()[i];
  }
}

TEST(EmbCache, MissesAreAdmittedThenHitAndEveryLocationHoldsItsRow) {
  Fixture f = Make(2);
  const std::vector<int64_t> ids = {5, 17, 5, 19999, 0};
  auto first = f.cache->Lookup(ids);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->hits(), 0);
  EXPECT_EQ(first->misses(), 5);
  EXPECT_EQ(first->unique_ids(), 4);
  EXPECT_EQ(first->locations()[0], first->locations()[2]);   // repeats share a row
  for (int64_t loc : first->locations()) EXPECT_GE(loc, 0);  // free room: all admitted
  ExpectRowsMatch(*f.cache, ids, *first);
  first->Release();
  const EmbStats after_first = f.cache->stats();
  auto second = f.cache->Lookup(ids);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->hits(), 5);
  EXPECT_EQ(second->unique_ids(), 4);
  ExpectRowsMatch(*f.cache, ids, *second);
  const EmbStats s = f.cache->stats();
  EXPECT_EQ(s.lookups, 10);
  EXPECT_EQ(s.hits, 5);
  EXPECT_EQ(s.admitted, 4);
  EXPECT_EQ(s.h2d_bytes, 4 * 64);
  EXPECT_GT(after_first.fetch_ns, 0) << "the first lookup fetched its four rows";
  EXPECT_EQ(s.fetch_ns, after_first.fetch_ns) << "the second hit every row: nothing fetched";
  EXPECT_TRUE(f.cache->CheckInvariants().ok());
  EXPECT_TRUE(f.cache->VerifyResidentRows().ok());
}

// Fills 1024 rows, evicts them with 1024 others, looks the first up again: the ghost hits of that
// last lookup, and its misses.
std::pair<int64_t, int64_t> GhostHitsOfAReturn(Fixture& f) {
  std::vector<int64_t> first(1024), second(1024);
  for (int i = 0; i < 1024; ++i) {
    first[i] = i;
    second[i] = 5000 + i;
  }
  EXPECT_TRUE(f.cache->Lookup(first).ok());
  EXPECT_EQ(f.cache->stats().ghost_hits, 0) << "nothing was evicted yet";
  EXPECT_TRUE(f.cache->Lookup(second).ok());
  const EmbStats before = f.cache->stats();
  EXPECT_TRUE(f.cache->Lookup(first).ok());
  const EmbStats d = f.cache->stats() - before;
  return {d.ghost_hits, d.misses};
}

TEST(EmbCache, GhostHitsAreMissesOfRowsEvictedLately) {
  // Admission "always": every miss evicts. 1024 rows in the cache; the ghost covers
  // pool.ghost_share of the 1 MiB pool (819 rows at 5%), here of every id.
  Fixture f = Make(1, "always", "cpu", 20000, /*ghost_sample_rate=*/1.0);
  const auto [ghost_hits, misses] = GhostHitsOfAReturn(f);
  // The first rows were evicted by the second (bar those the sampled search spared): of their
  // misses now, those the ghost still remembers count, at most its 819 rows.
  EXPECT_GT(misses, 500);
  EXPECT_GT(ghost_hits, 400);
  EXPECT_LE(ghost_hits, std::min<int64_t>(misses, 819));
  // Hits are no ghost hits: the rows just admitted hit, and add none.
  const EmbStats settled = f.cache->stats();
  auto hit = f.cache->Lookup(std::vector<int64_t>{1023});
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->hits(), 1);
  EXPECT_EQ(f.cache->stats().ghost_hits, settled.ghost_hits);
  // The default ghost tracks a hashed sixteenth of the ids and scales its hits back up: the same
  // run estimates the same count, within the sample's noise.
  Fixture sampled = Make(1, "always");
  const auto [sampled_hits, sampled_misses] = GhostHitsOfAReturn(sampled);
  EXPECT_EQ(sampled_misses, misses);
  EXPECT_EQ(sampled_hits % 16, 0);
  EXPECT_NEAR(static_cast<double>(sampled_hits), static_cast<double>(ghost_hits), 0.4 * ghost_hits);
}

TEST(EmbCache, IdsOutsideTheTableAreInvalidArgumentNamingIdAndSize) {
  Fixture f = Make(2);
  for (int64_t bad : {int64_t{-1}, int64_t{20000}}) {
    auto r = f.cache->Lookup(std::vector<int64_t>{1, bad});
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(std::to_string(bad)), absl::string_view::npos);
    EXPECT_NE(r.status().message().find("20000"), absl::string_view::npos);
  }
  EXPECT_EQ(f.cache->stats().lookups, 0);
  EXPECT_EQ(f.cache->resident_rows(), 0);
}

TEST(EmbCache, RejectedMissesAreStagedWithTheirHostRows) {
  Fixture f = Make(1);  // 1024 rows
  std::vector<int64_t> warm(1024);
  for (int i = 0; i < 1024; ++i) warm[i] = i;
  for (int rep = 0; rep < 3; ++rep) ASSERT_TRUE(f.cache->Lookup(warm).ok());
  // Unseen ids lose against rows hit three times: staged, never admitted.
  const std::vector<int64_t> cold = {5000, 5001, 5000, 7};
  auto r = f.cache->Lookup(cold);
  ASSERT_TRUE(r.ok());
  EXPECT_LT(r->locations()[0], 0);
  EXPECT_EQ(r->locations()[0], r->locations()[2]);
  EXPECT_GE(r->locations()[3], 0);
  EXPECT_EQ(r->staged_rows(), 2);
  EXPECT_EQ(r->hits(), 1);
  ExpectRowsMatch(*f.cache, cold, *r);
  EXPECT_FALSE(f.cache->IsResident(5000));
  EXPECT_EQ(f.cache->stats().admission_rejects, 2);
}

TEST(EmbCache, SketchCountsHalveOncePerAgingPeriod) {
  Fixture f = Make(1);  // 1024 rows; a period is sketch_reset_factor (10) x 1024 accesses
  std::vector<int64_t> warm(1024);
  for (int i = 0; i < 1024; ++i) warm[i] = i;
  for (int rep = 0; rep < 3; ++rep) ASSERT_TRUE(f.cache->Lookup(warm).ok());
  // 24 misses of one id, turned away by the filter: its count climbs.
  ASSERT_TRUE(f.cache->Lookup(std::vector<int64_t>(24, 5000)).ok());
  EXPECT_FALSE(f.cache->IsResident(5000));
  auto estimate = [&] { return static_cast<int>(f.cache->FrequencyEstimate(5000)); };
  const int count = estimate();
  ASSERT_GE(count, 24);
  int64_t next_miss = 6000;
  auto writer_sections = [&](int n) {  // lookups with one (rejected) miss each
    for (int i = 0; i < n; ++i, ++next_miss) {
      ASSERT_TRUE(f.cache->Lookup(absl::MakeConstSpan(&next_miss, 1)).ok());
    }
  };
  auto one_period_of_hits = [&] {
    for (int rep = 0; rep < 10; ++rep) ASSERT_TRUE(f.cache->Lookup(warm).ok());
  };
  writer_sections(4);
  EXPECT_EQ(estimate(), count) << "halved before a period ended";
  one_period_of_hits();
  // The halving is spread over the writer sections that follow (a slice each), and happens once.
  writer_sections(8);
  EXPECT_EQ(estimate(), count / 2);
  writer_sections(8);
  EXPECT_EQ(estimate(), count / 2);
  one_period_of_hits();
  writer_sections(8);
  EXPECT_EQ(estimate(), count / 4);
  EXPECT_TRUE(f.cache->CheckInvariants().ok());
}

struct ScanOutcome {
  double head_resident = 0;      // share of the 200 hottest ids still cached after the scan
  double lru_head_resident = 0;  // the same for a plain LRU of equal capacity fed the same ids
  EmbStats scan;                 // the cache's counters over the scan
};

// Warms a 1024-row cache with Zipf traffic, then floods it with 10240 one-off ids.
ScanOutcome ScanAfterZipf(const std::string& admission, uint32_t seed) {
  Fixture f = Make(1, admission);  // 1024 rows for 20000 items
  std::mt19937_64 rng(seed);
  testing::Zipf zipf(20000, 1.0);
  std::list<int64_t> lru;  // front: most recent
  absl::flat_hash_map<int64_t, std::list<int64_t>::iterator> where;
  auto lru_access = [&](int64_t id) {
    if (auto it = where.find(id); it != where.end()) lru.erase(it->second);
    lru.push_front(id);
    where[id] = lru.begin();
    if (lru.size() > 1024) {
      where.erase(lru.back());
      lru.pop_back();
    }
  };
  std::vector<int64_t> batch(256);
  for (int b = 0; b < 60; ++b) {
    for (auto& id : batch) id = zipf(rng);
    EXPECT_TRUE(f.cache->Lookup(batch).ok());
    for (int64_t id : batch) lru_access(id);
  }
  const EmbStats before = f.cache->stats();
  int64_t next_scan = 20000 - 1;
  for (int b = 0; b < 40; ++b) {
    for (auto& id : batch) id = next_scan--;  // one-off ids, never seen again
    EXPECT_TRUE(f.cache->Lookup(batch).ok());
    for (int64_t id : batch) lru_access(id);
  }
  ScanOutcome out;
  out.scan = f.cache->stats() - before;
  for (int64_t id = 0; id < 200; ++id) {
    out.head_resident += f.cache->IsResident(id) ? 1.0 / 200 : 0.0;
    out.lru_head_resident += where.contains(id) ? 1.0 / 200 : 0.0;
  }
  EXPECT_TRUE(f.cache->CheckInvariants().ok());
  return out;
}

TEST(EmbCache, TinyLfuKeepsTheZipfHeadUnderAOneOffScan) {
  const uint32_t seed = Seed();
  const ScanOutcome tinylfu = ScanAfterZipf("tinylfu", seed);
  EXPECT_GE(tinylfu.head_resident, 0.95) << "seed " << seed;
  EXPECT_LE(tinylfu.lru_head_resident, 0.05) << "seed " << seed;  // the scan flushes an LRU
  // The filter turned the one-off ids away instead of letting them displace warm rows.
  EXPECT_GE(tinylfu.scan.admission_rejects, 9 * 10240 / 10) << "seed " << seed;
  const ScanOutcome always = ScanAfterZipf("always", seed);
  EXPECT_EQ(always.scan.admission_rejects, 0);
  EXPECT_GE(always.scan.admitted, 10000);
  EXPECT_GT(always.scan.evictions, tinylfu.scan.evictions + 5000);
}

TEST(EmbCache, PinnedRowsStayIntactWhileNewIdsFloodTheCache) {
  Fixture f = Make(1, "always");
  std::vector<int64_t> held_ids(300);
  for (int i = 0; i < 300; ++i) held_ids[i] = 3 * i;
  auto held = f.cache->Lookup(held_ids);
  ASSERT_TRUE(held.ok());
  // Flood with far more new ids than the cache holds; "always" admits and evicts eagerly.
  std::vector<int64_t> flood(512);
  for (int b = 0; b < 20; ++b) {
    for (int i = 0; i < 512; ++i) flood[i] = 1000 + b * 512 + i;
    auto r = f.cache->Lookup(flood);
    ASSERT_TRUE(r.ok());
    ExpectRowsMatch(*f.cache, flood, *r);
  }
  ExpectRowsMatch(*f.cache, held_ids, *held);  // no pinned slot was overwritten
  EXPECT_GT(f.cache->stats().evictions, 5000);
  EXPECT_TRUE(f.cache->CheckInvariants().ok());
}

TEST(EmbCache, ShrinkRelocatesHotRowsAndKeepsEveryRowIntact) {
  Fixture f = Make(4);  // 4096 rows
  std::mt19937_64 rng(Seed());
  testing::Zipf zipf(20000, 0.9);
  std::vector<int64_t> batch(512);
  for (int b = 0; b < 40; ++b) {
    for (auto& id : batch) id = zipf(rng);
    ASSERT_TRUE(f.cache->Lookup(batch).ok());
  }
  std::vector<int64_t> head(100);
  for (int i = 0; i < 100; ++i) head[i] = i;
  auto pinned = f.cache->Lookup(head);  // held across the resize
  ASSERT_TRUE(pinned.ok());
  const int64_t before = f.cache->resident_rows();
  f.pool->SetTarget(2 / 16.0);
  int steps = 0;
  while (f.pool->Snapshot().emb_chunks > 2 && steps < 200) {
    f.pool->Step();
    ++steps;
    ASSERT_TRUE(f.pool->CheckInvariants().ok());
    ASSERT_TRUE(f.cache->CheckInvariants().ok());
  }
  // Pinned slots may hold up the last chunk: release and finish.
  ExpectRowsMatch(*f.cache, head, *pinned);
  pinned->Release();
  while (f.pool->Snapshot().emb_chunks > 2 && steps < 400) {
    f.pool->Step();
    ++steps;
  }
  EXPECT_EQ(f.pool->Snapshot().emb_chunks, 2);
  EXPECT_EQ(f.cache->capacity_rows(), 2048);
  EXPECT_LE(f.cache->resident_rows(), 2048);
  EXPECT_LT(f.cache->resident_rows(), before);
  int head_resident = 0;
  for (int64_t id : head) head_resident += f.cache->IsResident(id) ? 1 : 0;
  EXPECT_GE(head_resident, 95);  // hot rows were relocated, not dropped
  EXPECT_GT(f.cache->stats().relocated_rows, 0);
  EXPECT_GT(f.pool->stats().migration_bytes_done, 0);
  EXPECT_TRUE(f.cache->VerifyResidentRows().ok());
  EXPECT_TRUE(f.cache->CheckInvariants().ok());
  // Grow back: empty capacity fills through the miss path.
  f.pool->SetTarget(6 / 16.0);
  while (!f.pool->Step().idle) {
  }
  EXPECT_EQ(f.cache->capacity_rows(), 6144);
  EXPECT_TRUE(f.pool->CheckInvariants().ok());
}

TEST(EmbCache, ResidentIdsEnumerateExactlyTheCachedRows) {
  Fixture f = Make(2);
  const std::vector<int64_t> ids = {3, 9, 27, 81, 243};
  ASSERT_TRUE(f.cache->Lookup(ids).ok());
  std::vector<int64_t> resident = f.cache->ResidentIds();
  std::sort(resident.begin(), resident.end());
  EXPECT_EQ(resident, ids);
}

TEST(EmbCache, PrefetchFillsFreeSlotsWithRecentlyRejectedIds) {
  Fixture f = Make(1);
  std::vector<int64_t> warm(1024);
  for (int i = 0; i < 1024; ++i) warm[i] = i;
  for (int rep = 0; rep < 3; ++rep) ASSERT_TRUE(f.cache->Lookup(warm).ok());
  const std::vector<int64_t> rejected = {7000, 7001, 7002};
  for (int rep = 0; rep < 2; ++rep) ASSERT_TRUE(f.cache->Lookup(rejected).ok());
  EXPECT_FALSE(f.cache->IsResident(7000));
  f.pool->SetTarget(2 / 16.0);
  while (!f.pool->Step().idle) {
  }
  EXPECT_EQ(f.cache->Prefetch(1 << 20), 3 * 64);
  for (int64_t id : rejected) EXPECT_TRUE(f.cache->IsResident(id));
  EXPECT_TRUE(f.cache->VerifyResidentRows().ok());
  EXPECT_EQ(f.cache->stats().prefetched_rows, 3);
}

TEST(EmbCache, PacedPrefetchRunsOnAVirtualClockStartingAtZero) {
  FakeClock clock(0);  // a simulator's clock
  pool::PoolOptions po;
  po.bytes = 1 << 20;
  po.chunk_bytes = 64 << 10;
  po.initial_split = 1 / 16.0;
  po.r_min = 0.0;
  po.r_max = 1.0;
  po.backend = "cpu";
  po.prefetch_bytes_per_s = 128'000;  // two 64-byte rows per millisecond
  EmbOptions eo;
  eo.num_items = 20000;
  eo.dim = 16;
  auto pool = pool::Pool::Create(po, &clock);
  ASSERT_TRUE(pool.ok()) << pool.status();
  auto cache = EmbCache::Create(eo, pool->get());
  ASSERT_TRUE(cache.ok()) << cache.status();
  std::vector<int64_t> warm(1024);
  for (int i = 0; i < 1024; ++i) warm[i] = i;
  for (int rep = 0; rep < 3; ++rep) ASSERT_TRUE((*cache)->Lookup(warm).ok());
  const std::vector<int64_t> rejected = {7000, 7001, 7002};
  for (int rep = 0; rep < 2; ++rep) ASSERT_TRUE((*cache)->Lookup(rejected).ok());
  (*pool)->SetTarget(2 / 16.0);
  while (!(*pool)->Step().idle) {
  }
  // The first idle step, at t = 0, starts the budget's clock.
  EXPECT_EQ((*cache)->stats().prefetched_rows, 0);
  clock.AdvanceMicros(1000);
  (*pool)->Step();
  EXPECT_EQ((*cache)->stats().prefetched_rows, 2);
  clock.AdvanceMicros(1000);
  (*pool)->Step();
  EXPECT_EQ((*cache)->stats().prefetched_rows, 3);
  EXPECT_EQ((*pool)->stats().prefetch_bytes, 3 * 64);
  for (int64_t id : rejected) EXPECT_TRUE((*cache)->IsResident(id));
  EXPECT_TRUE((*cache)->VerifyResidentRows().ok());
  EXPECT_TRUE((*cache)->CheckInvariants().ok());
}

TEST(EmbCache, PayloadFreeBackendNeedsNoTable) {
  Fixture f = Make(2, "tinylfu", "none", int64_t{1} << 40);  // a table no memory could hold
  auto r = f.cache->Lookup(std::vector<int64_t>{int64_t{1} << 39, 5});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->misses(), 2);
  EXPECT_EQ(f.cache->HostRow(5).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(f.cache->IsResident(5));
}

}  // namespace
}  // namespace helm::emb
