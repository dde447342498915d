// The EMB cache's miniature (emb_shadow.h): the cache's policy without its slots, followed against
// the cache itself.
#include "helm/emb/emb_shadow.h"

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

constexpr int64_t kItems = 20000;
constexpr int64_t kChunkRows = 1024;  // 64 KiB chunks of 64-byte rows
constexpr int64_t kChunks = 16;

// A payload-free pool of 16 chunks, `chunks` of them the EMB cache's.
struct Fixture {
  std::unique_ptr<pool::Pool> pool;
  std::unique_ptr<EmbCache> cache;
};

Fixture MakeCache(const EmbOptions& eo, int chunks) {
  pool::PoolOptions po;
  po.bytes = kChunks * kChunkRows * 64;
  po.chunk_bytes = kChunkRows * 64;
  po.initial_split = static_cast<double>(chunks) / kChunks;
  po.r_min = 0.0;
  po.r_max = 1.0;
  po.backend = "none";
  Fixture f;
  f.pool = *pool::Pool::Create(po);
  f.cache = *EmbCache::Create(eo, f.pool.get());
  return f;
}

EmbOptions Options(const std::string& admission = "tinylfu") {
  EmbOptions eo;
  eo.num_items = kItems;
  eo.dim = 16;
  eo.admission = admission;
  return eo;
}

// Lookups of 32 ids: a Zipf(0.9) hot set, with every fourth lookup a scan of ids drawn evenly from
// the catalog (one-off ids, which TinyLFU turns away and an LRU-like cache lets in).
std::vector<std::vector<int64_t>> Stream(int lookups, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const testing::Zipf zipf(kItems, 0.9);
  std::uniform_int_distribution<int64_t> any(0, kItems - 1);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(lookups));
  for (int i = 0; i < lookups; ++i) {
    for (int j = 0; j < 32; ++j) out[i].push_back(i % 4 == 3 ? any(rng) : zipf(rng));
  }
  return out;
}

double MissRatio(EmbShadow& shadow, const std::vector<std::vector<int64_t>>& stream,
                 const IdSampler& sampler = IdSampler()) {
  int64_t misses = 0, lookups = 0;
  std::vector<int64_t> sampled;
  for (const std::vector<int64_t>& ids : stream) {
    sampled.clear();
    for (int64_t id : ids) {
      if (sampler.Contains(id)) sampled.push_back(id);
    }
    misses += shadow.Lookup(sampled);
    lookups += static_cast<int64_t>(ids.size());
  }
  // A sample's misses scaled back up, over every id looked up (reuse_tracker.h).
  return static_cast<double>(misses) / sampler.rate() / static_cast<double>(lookups);
}

double CacheMissRatio(const EmbOptions& eo, int chunks,
                      const std::vector<std::vector<int64_t>>& stream) {
  Fixture f = MakeCache(eo, chunks);
  for (const std::vector<int64_t>& ids : stream) {
    absl::StatusOr<EmbLookup> lookup = f.cache->Lookup(ids);
    EXPECT_TRUE(lookup.ok()) << lookup.status();
  }
  const EmbStats s = f.cache->stats();
  return static_cast<double>(s.misses) / static_cast<double>(s.lookups);
}

TEST(EmbShadow, FollowsTheCachesMissRatioAtEverySizeUnderEitherAdmission) {
  const std::vector<std::vector<int64_t>> stream = Stream(6000, 7);
  for (const char* admission : {"tinylfu", "always"}) {
    const EmbOptions eo = Options(admission);
    double smallest = 0, largest = 0;
    for (int chunks : {1, 2, 4, 8}) {
      EmbShadow shadow(eo, chunks * kChunkRows, kChunks * kChunkRows);
      const double cache = CacheMissRatio(eo, chunks, stream);
      EXPECT_NEAR(MissRatio(shadow, stream), cache, 0.005) << admission << " " << chunks;
      EXPECT_EQ(shadow.resident_rows(), chunks * kChunkRows);
      (chunks == 1 ? smallest : largest) = cache;
    }
    // The sizes differ by far more than the shadow's error: a shadow blind to its size would fail.
    EXPECT_GT(smallest - largest, 0.15) << admission;
  }
}

TEST(EmbShadow, ASampleOfTheIdsInAMiniatureFollowsTheWholeCache) {
  const std::vector<std::vector<int64_t>> stream = Stream(6000, 8);
  const EmbOptions eo = Options();
  const double cache = CacheMissRatio(eo, 4, stream);
  for (uint64_t salt : {1, 2, 3}) {
    constexpr double kRate = 0.1;
    EmbShadow shadow(eo, static_cast<int64_t>(4 * kChunkRows * kRate),
                     static_cast<int64_t>(kChunks * kChunkRows * kRate), salt);
    EXPECT_NEAR(MissRatio(shadow, stream, IdSampler(kRate, salt)), cache, 0.03) << salt;
  }
}

TEST(EmbShadow, EveryOccurrenceOfAnAbsentIdMissesAndNothingExceedsTheCapacity) {
  const EmbOptions eo = Options();
  EmbShadow none(eo, 0, 16);
  EXPECT_EQ(none.Lookup(std::vector<int64_t>{1, 2, 1}), 3);
  EXPECT_EQ(none.Lookup(std::vector<int64_t>{1}), 1);
  EXPECT_EQ(none.resident_rows(), 0);

  EmbShadow two(eo, 2, 16);
  EXPECT_EQ(two.Lookup(std::vector<int64_t>{5, 5, 6}), 3);  // both admitted into free rows
  EXPECT_TRUE(two.IsResident(5));
  EXPECT_TRUE(two.IsResident(6));
  EXPECT_EQ(two.Lookup(std::vector<int64_t>{5, 6, 6}), 0);
  // 7 is seen once against residents seen more often: TinyLFU turns it away, every time.
  EXPECT_EQ(two.Lookup(std::vector<int64_t>{7, 7}), 2);
  EXPECT_FALSE(two.IsResident(7));
  EXPECT_EQ(two.resident_rows(), 2);
}

}  // namespace
}  // namespace helm::emb
