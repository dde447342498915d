// The kinetic (AET) model over reuse-time histograms: exact on a cyclic scan, and within a few
// hundredths of a real LRU cache's miss ratio on uniform and skewed streams.
#include "helm/common/reuse_histogram.h"

#include <cmath>
#include <cstdint>
#include <list>
#include <random>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"

namespace helm {
namespace {

// A real LRU cache of `capacity` keys over `stream`: its miss ratio, and the reuse times
// (accesses since the key's previous access) the model reads.
double LruMissRatio(const std::vector<int64_t>& stream, size_t capacity, ReuseHistogram* reuse) {
  std::list<int64_t> order;  // most recent first
  absl::flat_hash_map<int64_t, std::list<int64_t>::iterator> where;
  absl::flat_hash_map<int64_t, int64_t> last;
  int64_t misses = 0;
  for (size_t i = 0; i < stream.size(); ++i) {
    const int64_t key = stream[i];
    const int64_t now = static_cast<int64_t>(i) + 1;
    if (auto it = last.find(key); it != last.end()) {
      reuse->Add(now - it->second, 1);
    } else {
      reuse->AddCold(1);
    }
    last[key] = now;
    if (auto it = where.find(key); it != where.end()) {
      order.erase(it->second);
    } else {
      ++misses;
      if (order.size() == capacity) {
        where.erase(order.back());
        order.pop_back();
      }
    }
    order.push_front(key);
    where[key] = order.begin();
  }
  return static_cast<double>(misses) / static_cast<double>(stream.size());
}

TEST(ReuseHistogram, ACyclicScanHitsOnlyOnceTheCacheHoldsItAll) {
  ReuseHistogram h;
  h.AddCold(1000);
  h.Add(1000, 19'000);  // 1000 keys scanned 20 times over
  EXPECT_DOUBLE_EQ(h.MissRatio(500), 1.0) << "LRU thrashes below the scan's size";
  EXPECT_NEAR(h.MissRatio(1500), 0.05, 1e-12) << "only the first pass misses";
  EXPECT_DOUBLE_EQ(ReuseHistogram().EvictionTime(7), 7) << "nothing seen: every access is new";
  EXPECT_DOUBLE_EQ(ReuseHistogram().MissRatio(100), 1.0) << "nothing seen: everything misses";
}

TEST(ReuseHistogram, FollowsARealLruCacheOnUniformAndSkewedStreams) {
  std::mt19937_64 rng(::testing::UnitTest::GetInstance()->random_seed());
  std::uniform_real_distribution<double> u(0, 1);
  constexpr int64_t kKeys = 20'000;
  std::vector<int64_t> uniform, skewed;
  for (int i = 0; i < 300'000; ++i) {
    uniform.push_back(static_cast<int64_t>(u(rng) * kKeys));
    skewed.push_back(static_cast<int64_t>(kKeys * std::pow(u(rng), 3.0)));  // a hot head
  }
  for (const std::vector<int64_t>* stream : {&uniform, &skewed}) {
    for (size_t capacity : {2000, 5000, 10'000, 15'000}) {
      ReuseHistogram reuse;
      const double lru = LruMissRatio(*stream, capacity, &reuse);
      EXPECT_NEAR(reuse.MissRatio(static_cast<double>(capacity)), lru, 0.03)
          << (stream == &uniform ? "uniform" : "skewed") << ", " << capacity << " keys";
    }
  }
}

TEST(ReuseHistogram, ScaleAndMergeWeighWindows) {
  ReuseHistogram old_window, new_window;
  old_window.Add(10, 100);
  new_window.Add(1000, 100);
  old_window.Scale(0.25);
  EXPECT_DOUBLE_EQ(old_window.total(), 25);
  old_window.Merge(new_window);
  EXPECT_DOUBLE_EQ(old_window.total(), 125);
  EXPECT_NEAR(old_window.ShareAbove(100), 100.0 / 125, 1e-12);
}

}  // namespace
}  // namespace helm
