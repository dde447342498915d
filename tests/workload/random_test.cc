#include "helm/workload/random.h"

#include <cmath>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace helm::workload {
namespace {

uint64_t TestSeed() {
  return static_cast<uint64_t>(::testing::UnitTest::GetInstance()->random_seed()) + 7;
}

// Empirical share of ranks [0, k) over `draws` samples.
double EmpiricalHead(const ZipfSampler& zipf, int64_t k, int draws, Rng& rng) {
  int64_t head = 0;
  for (int i = 0; i < draws; ++i) {
    const int64_t r = zipf.Sample(rng);
    EXPECT_GE(r, 0);
    EXPECT_LT(r, zipf.n());
    head += r < k ? 1 : 0;
  }
  return static_cast<double>(head) / draws;
}

TEST(ZipfSampler, AliasTableMatchesTheExactHeadShare) {
  Rng rng(TestSeed());
  const ZipfSampler zipf(27278, 0.8);
  for (int64_t k : {1, 10, 273, 5000}) {
    EXPECT_NEAR(EmpiricalHead(zipf, k, 200000, rng), zipf.HeadShare(k), 0.007)
        << "k " << k << " seed " << TestSeed();
  }
}

TEST(ZipfSampler, RejectionInversionMatchesTheExactHeadShareOnHugeCatalogs) {
  Rng rng(TestSeed());
  for (double exponent : {0.6, 0.9, 1.0, 1.2}) {
    const ZipfSampler zipf(32038725, exponent);  // beyond the alias-table limit
    for (int64_t k : {1, 100, 100000}) {
      EXPECT_NEAR(EmpiricalHead(zipf, k, 100000, rng), zipf.HeadShare(k), 0.01)
          << "exponent " << exponent << " k " << k << " seed " << TestSeed();
    }
  }
}

TEST(ZipfSampler, HeadShareIsOneForTheWholeCatalogAndMonotone) {
  const ZipfSampler zipf(1000, 1.0);
  EXPECT_NEAR(zipf.HeadShare(1000), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(zipf.HeadShare(0), 0.0);
  // Rank 0 of Zipf(1) over 1000 ranks has mass 1 / H(1000) = 1 / 7.4855.
  EXPECT_NEAR(zipf.HeadShare(1), 1.0 / 7.485470860550345, 1e-9);
  EXPECT_LT(zipf.HeadShare(10), zipf.HeadShare(11));
}

TEST(ZipfSampler, SampleManyGivesTheDrawsOfOneSampleEachFromTheSameStream) {
  // Both paths (alias table, rejection-inversion), and counts around the prefetch block of 32.
  for (int64_t n : {int64_t{27278}, int64_t{32038725}}) {
    const ZipfSampler zipf(n, 0.9);
    Rng one(TestSeed());
    Rng many(TestSeed());
    for (int64_t count : {0, 1, 31, 32, 33, 100}) {
      std::vector<int64_t> expected(static_cast<size_t>(count));
      for (int64_t& r : expected) r = zipf.Sample(one);
      std::vector<int64_t> got(static_cast<size_t>(count), -1);
      zipf.SampleMany(many, got.data(), count);
      EXPECT_EQ(got, expected) << "n " << n << " count " << count;
    }
    EXPECT_EQ(one.NextU64(), many.NextU64()) << "n " << n;
  }
}

TEST(Permutation, IsABijection) {
  for (int64_t n : {1, 2, 7, 1000, 27278, 65536}) {
    const Permutation perm(n, TestSeed());
    absl::flat_hash_set<int64_t> seen;
    for (int64_t x = 0; x < n; ++x) {
      const int64_t y = perm(x);
      ASSERT_GE(y, 0);
      ASSERT_LT(y, n);
      seen.insert(y);
    }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), n) << "n " << n << " seed " << TestSeed();
  }
}

TEST(Rng, SamplersHaveTheirMeans) {
  Rng rng(TestSeed());
  constexpr int kDraws = 200000;
  double uniform = 0, exponential = 0, normal = 0, normal_sq = 0, poisson_small = 0,
         poisson_large = 0;
  for (int i = 0; i < kDraws; ++i) {
    uniform += rng.Uniform();
    exponential += rng.Exponential(3.0);
    const double z = rng.Normal();
    normal += z;
    normal_sq += z * z;
    poisson_small += static_cast<double>(rng.Poisson(4.0));
  }
  for (int i = 0; i < 2000; ++i) poisson_large += static_cast<double>(rng.Poisson(1200.0));
  EXPECT_NEAR(uniform / kDraws, 0.5, 0.005);
  EXPECT_NEAR(exponential / kDraws, 3.0, 0.05);
  EXPECT_NEAR(normal / kDraws, 0.0, 0.01);
  EXPECT_NEAR(normal_sq / kDraws, 1.0, 0.02);
  EXPECT_NEAR(poisson_small / kDraws, 4.0, 0.03);
  EXPECT_NEAR(poisson_large / 2000, 1200.0, 4.0);
  for (int i = 0; i < 1000; ++i) ASSERT_LT(rng.Below(7), 7u);
}

TEST(Rng, SameSeedSameStream) {
  Rng a(TestSeed()), b(TestSeed()), c(TestSeed() + 1);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.NextU64();
    ASSERT_EQ(x, b.NextU64());
    differs |= x != c.NextU64();
  }
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace helm::workload
