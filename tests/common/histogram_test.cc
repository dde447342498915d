#include "helm/common/histogram.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace helm {
namespace {

// The exact value at quantile q, with the histogram's rank convention (ceil(q * n), 1-based).
double ExactQuantile(std::vector<int64_t> values, double q) {
  std::sort(values.begin(), values.end());
  const int64_t n = static_cast<int64_t>(values.size());
  const int64_t rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(q * n)));
  return static_cast<double>(values[rank - 1]);
}

constexpr double kMaxRelativeError = 1.0 / (2 << LatencyHistogram::kSubBucketBits);

TEST(LatencyHistogram, EmptyReportsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.Count(), 0);
  EXPECT_EQ(h.Quantile(0.99), 0.0);
  EXPECT_EQ(h.Mean(), 0.0);
  EXPECT_EQ(h.Max(), 0);
}

TEST(LatencyHistogram, SmallValuesAreExact) {
  LatencyHistogram h;
  for (int64_t v = 0; v < LatencyHistogram::kSubBuckets; ++v) h.Record(v);
  EXPECT_EQ(h.Quantile(0.5), 63.0);
  EXPECT_EQ(h.Quantile(1.0), 127.0);
  EXPECT_EQ(h.Min(), 0);
}

TEST(LatencyHistogram, BucketsTileTheValueRangeWithoutGaps) {
  for (int64_t i = 1; i < LatencyHistogram::kNumBuckets; ++i) {
    ASSERT_EQ(LatencyHistogram::BucketLow(i), LatencyHistogram::BucketHigh(i - 1) + 1) << i;
  }
  for (int64_t v : {int64_t{0}, int64_t{127}, int64_t{128}, int64_t{1000}, int64_t{123456789},
                    int64_t{1} << 40}) {
    const int64_t i = LatencyHistogram::BucketIndex(v);
    EXPECT_LE(LatencyHistogram::BucketLow(i), v);
    EXPECT_GE(LatencyHistogram::BucketHigh(i), v);
  }
}

// Percentiles of log-normal latencies (a realistic long tail) within the bounded relative error.
TEST(LatencyHistogram, QuantilesMatchExactWithinRelativeError) {
  const unsigned seed = static_cast<unsigned>(::testing::UnitTest::GetInstance()->random_seed());
  for (int trial = 0; trial < 20; ++trial) {
    std::mt19937_64 rng(seed * 1000 + trial);
    std::lognormal_distribution<double> dist(7.0 + trial * 0.2, 1.0 + trial * 0.05);
    std::vector<int64_t> values(5000 + trial * 1000);
    LatencyHistogram h;
    for (auto& v : values) {
      v = static_cast<int64_t>(dist(rng));
      h.Record(v);
    }
    for (double q : {0.5, 0.9, 0.99, 0.999, 1.0}) {
      const double exact = ExactQuantile(values, q);
      const double got = h.Quantile(q);
      EXPECT_LE(std::abs(got - exact), kMaxRelativeError * exact + 0.5)
          << "seed " << seed << " trial " << trial << " q " << q;
    }
    EXPECT_EQ(h.Count(), static_cast<int64_t>(values.size()));
    EXPECT_EQ(h.Max(), *std::max_element(values.begin(), values.end()));
  }
}

TEST(LatencyHistogram, MergeEqualsRecordingEverything) {
  std::mt19937_64 rng(::testing::UnitTest::GetInstance()->random_seed());
  std::exponential_distribution<double> dist(1e-4);
  LatencyHistogram a, b, all;
  for (int i = 0; i < 20000; ++i) {
    const int64_t v = static_cast<int64_t>(dist(rng));
    (i % 3 == 0 ? a : b).Record(v);
    all.Record(v);
  }
  a.Merge(b);
  EXPECT_EQ(a.Count(), all.Count());
  EXPECT_DOUBLE_EQ(a.Mean(), all.Mean());
  for (double q : {0.1, 0.5, 0.9, 0.99, 0.999}) EXPECT_EQ(a.Quantile(q), all.Quantile(q)) << q;
}

TEST(LatencyHistogram, ConcurrentRecordsAreAllCounted) {
  LatencyHistogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h, t] {
      for (int i = 0; i < 10000; ++i) h.Record(t * 1000 + i);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(h.Count(), 40000);
  EXPECT_EQ(h.Min(), 0);
  EXPECT_EQ(h.Max(), 3000 + 9999);
}

TEST(LatencyHistogram, HugeValuesAreClampedNotLost) {
  LatencyHistogram h;
  h.Record(std::numeric_limits<int64_t>::max());
  h.Record(-5);
  EXPECT_EQ(h.Count(), 2);
  EXPECT_EQ(h.Min(), 0);
  EXPECT_GT(h.Quantile(1.0), 1e18);
  // The last bucket ends exactly at INT64_MAX (its upper bound once overflowed).
  const int64_t top = LatencyHistogram::BucketIndex(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(LatencyHistogram::BucketHigh(top), std::numeric_limits<int64_t>::max());
  EXPECT_LE(LatencyHistogram::BucketLow(top), LatencyHistogram::BucketHigh(top));
}

}  // namespace
}  // namespace helm

namespace helm {
namespace {

TEST(LatencyHistogram, CountAtOrBelowCountsTheBucketsUpToTheValue) {
  LatencyHistogram h;
  for (int64_t v : {10, 20, 30, 5000, 100000, 100000}) h.Record(v);
  EXPECT_EQ(h.CountAtOrBelow(-1), 0);
  EXPECT_EQ(h.CountAtOrBelow(9), 0);
  EXPECT_EQ(h.CountAtOrBelow(20), 2);
  EXPECT_EQ(h.CountAtOrBelow(4000), 3);
  EXPECT_EQ(h.CountAtOrBelow(5000), 4);
  EXPECT_EQ(h.CountAtOrBelow(1 << 30), 6);
  EXPECT_EQ(h.CountAtOrBelow(100000), 6);
  EXPECT_EQ(LatencyHistogram().CountAtOrBelow(1 << 30), 0);
}

// Quantiles and counts scan from the smallest recording's bucket: the same answers as a scan of
// every bucket, across a Reset and for recordings far from 0.
TEST(LatencyHistogram, ScansFromTheSmallestRecordingGiveTheFullScansAnswers) {
  LatencyHistogram h;
  std::mt19937_64 rng(::testing::UnitTest::GetInstance()->random_seed());
  for (int round = 0; round < 3; ++round) {
    h.Reset();
    std::lognormal_distribution<double> latency(8.0 + round, 0.7);
    for (int i = 0; i < 2000; ++i) h.Record(static_cast<int64_t>(latency(rng)));
    int64_t below = 0;
    for (int64_t b = 0; b < LatencyHistogram::kNumBuckets; ++b) {
      const int64_t high = LatencyHistogram::BucketHigh(b);
      const int64_t in_bucket =
          h.CountAtOrBelow(high) -
          (b == 0 ? 0 : h.CountAtOrBelow(LatencyHistogram::BucketHigh(b - 1)));
      EXPECT_GE(in_bucket, 0);
      below += in_bucket;
      if (high >= h.Max()) break;
    }
    EXPECT_EQ(below, h.Count());
    for (double q : {0.0, 0.5, 0.99, 1.0}) {
      const double v = h.Quantile(q);
      EXPECT_GE(v, h.Min());
      EXPECT_LE(v, h.Max());
      // At least q of the recordings lie at or below the quantile's bucket.
      EXPECT_GE(h.CountAtOrBelow(static_cast<int64_t>(v)), static_cast<int64_t>(q * h.Count()));
    }
  }
}

// High quantiles are found scanning down from the largest recording: each answer is still the
// bucket where the ascending count first reaches the rank, for every rank (ties and gaps too).
TEST(LatencyHistogram, QuantilesFromEitherEndAreTheAscendingCountsBucket) {
  std::mt19937_64 rng(::testing::UnitTest::GetInstance()->random_seed());
  for (int n : {1, 2, 3, 7, 64, 501}) {
    LatencyHistogram h;
    std::lognormal_distribution<double> latency(9.0, 1.2);
    for (int i = 0; i < n; ++i) h.Record(i % 5 == 4 ? 70'000 : static_cast<int64_t>(latency(rng)));
    for (int64_t rank = 1; rank <= n; ++rank) {
      const double q = (static_cast<double>(rank) - 0.5) / n;  // ceil(q * n) == rank
      const int64_t b = LatencyHistogram::BucketIndex(static_cast<int64_t>(h.Quantile(q)));
      EXPECT_GE(h.CountAtOrBelow(LatencyHistogram::BucketHigh(b)), rank) << "n " << n << " q " << q;
      if (b > 0) {
        EXPECT_LT(h.CountAtOrBelow(LatencyHistogram::BucketHigh(b - 1)), rank)
            << "n " << n << " q " << q;
      }
    }
  }
}

}  // namespace
}  // namespace helm
