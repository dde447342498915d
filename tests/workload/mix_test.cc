// The two-surface workload (WorkloadOptions::mix): each surface's rate follows its weight, the
// surfaces keep their own users and request shapes, one catalog, and bad options are named.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"
#include "helm/workload/generator.h"

namespace helm::workload {
namespace {

uint64_t TestSeed() {
  return static_cast<uint64_t>(::testing::UnitTest::GetInstance()->random_seed()) + 1;
}

// A feed (the workload: long histories, few candidates) against search (short histories, many
// candidates) whose weight goes 0.1 -> 0.9 -> 0.1 over the run.
WorkloadOptions FeedAndSearch() {
  WorkloadOptions options;
  options.seed = TestSeed();
  options.profile = "kuairand";
  options.regime = "steady";
  options.duration_s = 40;
  options.rate_per_s = 300;
  options.max_users = 400;
  options.max_items = 100000;
  options.max_history = 256;
  options.candidates = 16;
  options.mix.candidates = 96;
  options.mix.max_history = 8;
  options.mix.max_users = 3000;
  options.mix.share_min = 0.1;
  options.mix.share_max = 0.9;
  options.mix.rate_ratio = 3;
  return options;
}

double Weight(const SurfaceMix& mix, double t_s, double period_s) {
  return mix.share_min + (mix.share_max - mix.share_min) * 0.5 *
                             (1 - std::cos(2 * std::numbers::pi * t_s / period_s));
}

TEST(SurfaceMix, EachSurfacesRateFollowsItsWeight) {
  const WorkloadOptions options = FeedAndSearch();
  absl::StatusOr<std::unique_ptr<Generator>> generator = Generator::Create(options);
  ASSERT_TRUE(generator.ok()) << generator.status();
  constexpr int kBins = 8;  // of 5 s
  std::vector<int64_t> counts[2] = {std::vector<int64_t>(kBins), std::vector<int64_t>(kBins)};
  Request r;
  int64_t last = -1;
  while ((*generator)->Next(&r)) {
    ASSERT_GE(r.arrival_us, last);
    last = r.arrival_us;
    ASSERT_TRUE(r.surface == 0 || r.surface == 1);
    ++counts[r.surface][r.arrival_us / 5'000'000];
  }
  for (int bin = 0; bin < kBins; ++bin) {
    // Expected requests in the bin: the rate integrated over it (0.1 s steps).
    double expected[2] = {0, 0};
    for (int step = 0; step < 50; ++step) {
      const int64_t t_us = bin * 5'000'000 + step * 100'000 + 50'000;
      const double w = Weight(options.mix, static_cast<double>(t_us) * 1e-6, options.duration_s);
      expected[0] += 0.1 * options.rate_per_s * (1 - w);
      expected[1] += 0.1 * options.rate_per_s * options.mix.rate_ratio * w;
      EXPECT_NEAR((*generator)->RatePerS(t_us),
                  options.rate_per_s * (1 - w + options.mix.rate_ratio * w), 1e-6);
    }
    for (int s = 0; s < 2; ++s) {
      // Poisson: within 5 standard deviations.
      EXPECT_NEAR(static_cast<double>(counts[s][bin]), expected[s], 5 * std::sqrt(expected[s]))
          << "surface " << s << " bin " << bin << " seed " << options.seed;
    }
  }
  // The swing is there: the search surface's middle bins carry several times its first bin's.
  EXPECT_GT(counts[1][3], 4 * counts[1][0]);
  EXPECT_GT(counts[0][0], 4 * counts[0][3]);
}

TEST(SurfaceMix, SurfacesKeepTheirOwnUsersAndRequestShapesOverOneCatalog) {
  const WorkloadOptions options = FeedAndSearch();
  absl::StatusOr<std::unique_ptr<Generator>> generator = Generator::Create(options);
  ASSERT_TRUE(generator.ok()) << generator.status();
  EXPECT_EQ((*generator)->num_users(), 400);
  EXPECT_EQ((*generator)->num_items(), 100000);
  EXPECT_EQ((*generator)->max_history(), 256);
  const int64_t offset = 400 + options.burst_users;  // after the feed's users and flash crowd
  absl::flat_hash_map<int64_t, int64_t> candidate_counts[2];
  Request r;
  int64_t requests[2] = {0, 0};
  while ((*generator)->Next(&r)) {
    ++requests[r.surface];
    if (r.surface == 0) {
      ASSERT_GE(r.user_id, 0);
      ASSERT_LT(r.user_id, 400);
      ASSERT_EQ(r.candidate_item_ids.size(), 16u);
      ASSERT_LE(r.history_item_ids.size(), 256u);
    } else {
      ASSERT_GE(r.user_id, offset);
      ASSERT_LT(r.user_id, offset + 3000);
      ASSERT_EQ(r.candidate_item_ids.size(), 96u);
      ASSERT_LE(r.history_item_ids.size(), 8u);
    }
    for (int64_t item : r.candidate_item_ids) {
      ASSERT_GE(item, 0);
      ASSERT_LT(item, 100000);
      ++candidate_counts[r.surface][item];
    }
  }
  ASSERT_GT(requests[0], 1000);
  ASSERT_GT(requests[1], 1000);
  // One catalog: the search surface's ten most frequent candidates are among the feed's most
  // frequent (another seed's popularity order would share almost none of them).
  auto top = [](const absl::flat_hash_map<int64_t, int64_t>& counts, size_t n) {
    std::vector<std::pair<int64_t, int64_t>> v(counts.begin(), counts.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    std::vector<int64_t> ids;
    for (size_t i = 0; i < std::min(n, v.size()); ++i) ids.push_back(v[i].first);
    return ids;
  };
  const std::vector<int64_t> feed = top(candidate_counts[0], 50);
  int shared = 0;
  for (int64_t item : top(candidate_counts[1], 10)) {
    shared += std::find(feed.begin(), feed.end(), item) != feed.end() ? 1 : 0;
  }
  EXPECT_GE(shared, 8) << "seed " << options.seed;
}

TEST(SurfaceMix, TheSameSeedGivesTheSameStream) {
  const WorkloadOptions options = FeedAndSearch();
  auto run = [](const WorkloadOptions& o) {
    std::vector<int64_t> out;
    std::unique_ptr<Generator> g = *Generator::Create(o);
    Request r;
    while (out.size() < 6000 && g->Next(&r)) {
      out.push_back(r.arrival_us);
      out.push_back(r.user_id);
      out.push_back(r.candidate_item_ids.front());
    }
    return out;
  };
  EXPECT_EQ(run(options), run(options));
  WorkloadOptions other = options;
  other.seed += 1;
  EXPECT_NE(run(options), run(other));
}

TEST(SurfaceMix, BadOptionsAreNamed) {
  auto error = [](const WorkloadOptions& o) {
    absl::StatusOr<std::unique_ptr<Generator>> g = Generator::Create(o);
    EXPECT_FALSE(g.ok());
    return g.ok() ? std::string() : std::string(g.status().message());
  };
  WorkloadOptions o = FeedAndSearch();
  o.mix.share_min = 0.95;
  EXPECT_NE(error(o).find("mix.share_min"), std::string::npos) << error(o);
  o = FeedAndSearch();
  o.mix.share_max = 1.5;
  EXPECT_NE(error(o).find("mix.share_max"), std::string::npos) << error(o);
  o = FeedAndSearch();
  o.mix.profile = "no-such-profile";
  EXPECT_NE(error(o).find("mix.profile"), std::string::npos) << error(o);
  o = FeedAndSearch();
  o.sessions = true;
  EXPECT_NE(error(o).find("mix: not with sessions"), std::string::npos) << error(o);
  // Off while share_max is 0: the workload's own stream, request for request.
  o = FeedAndSearch();
  o.mix = SurfaceMix();
  std::unique_ptr<Generator> plain = *Generator::Create(o);
  o.mix.candidates = 999;  // ignored while off
  std::unique_ptr<Generator> off = *Generator::Create(o);
  Request a;
  Request b;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(plain->Next(&a));
    ASSERT_TRUE(off->Next(&b));
    ASSERT_EQ(a.arrival_us, b.arrival_us);
    ASSERT_EQ(a.user_id, b.user_id);
    ASSERT_EQ(b.surface, 0);
    ASSERT_EQ(b.candidate_item_ids.size(), 16u);
  }
}

}  // namespace
}  // namespace helm::workload
