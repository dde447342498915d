// The simulator's miniature EMB cache: a hashed sample of the ids in a cache scaled to match
// (emb_cache.h "Sampling", id_sampler.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "emb/zipf.h"
#include "gtest/gtest.h"
#include "helm/emb/emb_cache.h"
#include "helm/emb/id_sampler.h"
#include "helm/pool/pool.h"

namespace helm::emb {
namespace {

TEST(IdSampler, KeepsAboutItsRateOfTheIdsAndTheSameOnesEveryTime) {
  const IdSampler all;
  EXPECT_TRUE(all.all());
  const IdSampler a(0.05, 7), again(0.05, 7), other(0.05, 8);
  EXPECT_FALSE(a.all());
  int64_t kept = 0, same = 0, shared = 0;
  constexpr int64_t kIds = 1'000'000;
  for (int64_t id = 0; id < kIds; ++id) {
    EXPECT_TRUE(all.Contains(id));
    const bool in = a.Contains(id);
    kept += in;
    same += in == again.Contains(id);
    shared += in && other.Contains(id);
  }
  EXPECT_NEAR(static_cast<double>(kept) / kIds, 0.05, 0.002);
  EXPECT_EQ(same, kIds);
  // Another salt picks another sample: about rate^2 of the ids are in both.
  EXPECT_NEAR(static_cast<double>(shared) / kIds, 0.0025, 0.001);
}

struct Fixture {
  std::unique_ptr<pool::Pool> pool;
  std::unique_ptr<EmbCache> cache;
};

// 16 chunks of 64 KiB, 4 of them the EMB cache's; rows of 16 fp32 (64 B).
absl::StatusOr<Fixture> Make(double sample_rate, const std::string& backend = "none") {
  pool::PoolOptions po;
  po.bytes = 1 << 20;
  po.chunk_bytes = 64 << 10;
  po.initial_split = 0.25;
  po.r_min = 0.0;
  po.r_max = 1.0;
  po.backend = backend;
  EmbOptions eo;
  eo.num_items = 20000;
  eo.dim = 16;
  eo.sample_rate = sample_rate;
  eo.sample_salt = 3;
  Fixture f;
  absl::StatusOr<std::unique_ptr<pool::Pool>> pool = pool::Pool::Create(po);
  if (!pool.ok()) return pool.status();
  f.pool = *std::move(pool);
  absl::StatusOr<std::unique_ptr<EmbCache>> cache = EmbCache::Create(eo, f.pool.get());
  if (!cache.ok()) return cache.status();
  f.cache = *std::move(cache);
  return f;
}

TEST(EmbSampling, OnlyThePayloadFreeBackendSamplesAndTheRateMustBeAShare) {
  absl::StatusOr<Fixture> cpu = Make(0.1, "cpu");
  ASSERT_FALSE(cpu.ok());
  EXPECT_EQ(cpu.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(cpu.status().message().find("payload-free"), std::string::npos) << cpu.status();
  for (double bad : {0.0, -0.5, 1.5}) {
    absl::StatusOr<Fixture> f = Make(bad);
    ASSERT_FALSE(f.ok()) << bad;
    EXPECT_NE(f.status().message().find("sample_rate"), std::string::npos) << f.status();
  }
  // A slot 1 / rate times a row must still fit in a chunk.
  absl::StatusOr<Fixture> tiny = Make(1e-4);
  ASSERT_FALSE(tiny.ok());
  EXPECT_NE(tiny.status().message().find("pool.chunk_bytes"), std::string::npos) << tiny.status();
}

TEST(EmbSampling, TheCacheHoldsItsRateOfTheRowsAndOnlySampledIds) {
  absl::StatusOr<Fixture> exact = Make(1.0);
  absl::StatusOr<Fixture> sampled = Make(0.1);
  ASSERT_TRUE(exact.ok()) << exact.status();
  ASSERT_TRUE(sampled.ok()) << sampled.status();
  EXPECT_EQ(exact->cache->row_bytes(), 64);
  EXPECT_EQ(sampled->cache->row_bytes(), 640);
  EXPECT_EQ(exact->cache->capacity_rows(), 4 * 1024);
  EXPECT_EQ(sampled->cache->capacity_rows(), 4 * ((64 << 10) / 640));

  std::vector<int64_t> ids(500);
  for (int64_t i = 0; i < 500; ++i) ids[i] = i;
  const IdSampler& sampler = sampled->cache->sampler();
  int64_t in_sample = 0;
  for (int64_t id : ids) in_sample += sampler.Contains(id);
  EXPECT_GT(in_sample, 25);
  EXPECT_LT(in_sample, 80);
  EmbLookup r;
  ASSERT_TRUE(sampled->cache->Lookup(ids, &r).ok());
  // A location for every id; every id counted, as a hit or a miss. A cold cache: every sampled id
  // misses, and the estimate is the sample's misses / rate.
  const int64_t estimated = std::min<int64_t>(500, std::llround(in_sample / 0.1));
  EXPECT_EQ(r.locations().size(), ids.size());
  EXPECT_EQ(r.misses(), estimated);
  EXPECT_EQ(r.hits(), 500 - estimated);
  r.Release();
  for (int64_t id : ids) {
    EXPECT_EQ(sampled->cache->IsResident(id), sampler.Contains(id)) << id;
  }
  EXPECT_EQ(sampled->cache->resident_rows(), in_sample);
  // Counts stand for the whole id space; bytes are full-size slots already.
  const EmbStats s = sampled->cache->stats();
  EXPECT_EQ(s.lookups, 500);
  EXPECT_EQ(s.misses, estimated);
  EXPECT_EQ(s.admitted, std::llround(in_sample / 0.1));
  EXPECT_EQ(s.h2d_bytes, in_sample * 640);
  EXPECT_TRUE(sampled->cache->CheckInvariants().ok());
}

// A result moved out of Lookup keeps its rows: when a flood of other ids finds every slot held
// by it, the cache pins exactly what it returned (read through the live-lookup record, which
// must follow the result's buffers when it moves).
TEST(EmbSampling, AMovedResultKeepsItsRowsThroughAFlood) {
  absl::StatusOr<Fixture> f = Make(0.1);
  ASSERT_TRUE(f.ok()) << f.status();
  EmbCache& cache = *f->cache;
  const IdSampler& sampler = cache.sampler();
  std::vector<int64_t> held_ids;
  for (int64_t id = 0; static_cast<int64_t>(held_ids.size()) < cache.capacity_rows(); ++id) {
    if (sampler.Contains(id)) held_ids.push_back(id);
  }
  absl::StatusOr<EmbLookup> held = cache.Lookup(held_ids);
  ASSERT_TRUE(held.ok()) << held.status();
  EmbLookup moved = *std::move(held);
  held = absl::StatusOr<EmbLookup>();  // the moved-from result is gone
  EmbLookup flood;
  std::vector<int64_t> others(256);
  for (int round = 0; round < 20; ++round) {
    for (int64_t i = 0; i < 256; ++i) others[i] = 10000 + round * 256 + i;
    ASSERT_TRUE(cache.Lookup(others, &flood).ok());
  }
  flood.Release();
  for (int64_t id : held_ids) EXPECT_TRUE(cache.IsResident(id)) << id;
  EXPECT_TRUE(cache.CheckInvariants().ok());
}

// The miniature's hit ratio is close to the full cache's on a skewed stream (the property the
// simulator's sampling rests on), both in its counts and in its per-lookup estimates.
TEST(EmbSampling, AMiniatureCacheHitsAboutAsOftenAsTheFullOne) {
  absl::StatusOr<Fixture> exact = Make(1.0);
  absl::StatusOr<Fixture> sampled = Make(0.1);
  ASSERT_TRUE(exact.ok()) << exact.status();
  ASSERT_TRUE(sampled.ok()) << sampled.status();
  const testing::Zipf zipf(20000, 0.9);
  std::mt19937_64 rng(11);
  std::vector<int64_t> batch(256);
  EmbLookup re, rs;
  int64_t exact_hits = 0, estimated_hits = 0, total = 0;
  for (int b = 0; b < 3000; ++b) {
    for (int64_t& id : batch) id = zipf(rng);
    ASSERT_TRUE(exact->cache->Lookup(batch, &re).ok());
    ASSERT_TRUE(sampled->cache->Lookup(batch, &rs).ok());
    ASSERT_EQ(rs.hits() + rs.misses(), 256);
    if (b >= 500) {  // both warm
      exact_hits += re.hits();
      estimated_hits += rs.hits();
      total += 256;
    }
  }
  const double exact_ratio = static_cast<double>(exact_hits) / total;
  const double estimated_ratio = static_cast<double>(estimated_hits) / total;
  EXPECT_GT(exact_ratio, 0.3);
  EXPECT_LT(exact_ratio, 0.9);
  EXPECT_NEAR(estimated_ratio, exact_ratio, 0.02);
  EXPECT_NEAR(sampled->cache->stats().hit_rate(), exact->cache->stats().hit_rate(), 0.02);
  EXPECT_NEAR(static_cast<double>(sampled->cache->stats().lookups), 3000.0 * 256,
              0.05 * 3000 * 256);
  EXPECT_TRUE(sampled->cache->CheckInvariants().ok());
}

}  // namespace
}  // namespace helm::emb
