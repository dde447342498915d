#include "helm/workload/generator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"
#include "helm/workload/random.h"

namespace helm::workload {
namespace {

uint64_t TestSeed() {
  return static_cast<uint64_t>(::testing::UnitTest::GetInstance()->random_seed()) + 1;
}

std::unique_ptr<Generator> MustCreate(const WorkloadOptions& options) {
  absl::StatusOr<std::unique_ptr<Generator>> generator = Generator::Create(options);
  EXPECT_TRUE(generator.ok()) << generator.status();
  return generator.ok() ? *std::move(generator) : nullptr;
}

// A fingerprint of everything a request carries.
uint64_t Fingerprint(const Request& r) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ULL; };
  mix(static_cast<uint64_t>(r.arrival_us));
  mix(static_cast<uint64_t>(r.user_id));
  mix(static_cast<uint64_t>(r.phase));
  for (int64_t v : r.history_item_ids) mix(static_cast<uint64_t>(v));
  for (int32_t v : r.history_actions) mix(static_cast<uint64_t>(v));
  for (int64_t v : r.history_timestamps_ms) mix(static_cast<uint64_t>(v));
  for (int64_t v : r.candidate_item_ids) mix(static_cast<uint64_t>(v));
  return h;
}

std::vector<uint64_t> Fingerprints(const WorkloadOptions& options, int n) {
  std::unique_ptr<Generator> generator = MustCreate(options);
  std::vector<uint64_t> out;
  Request request;
  while (static_cast<int>(out.size()) < n && generator->Next(&request)) {
    out.push_back(Fingerprint(request));
  }
  return out;
}

TEST(WorkloadGenerator, SameSeedGivesTheSameRequestsAndAnotherSeedDoesNot) {
  const uint64_t seed = TestSeed();
  for (const char* phases : {"steady:5", "trend:5", "burst:5", "steady:2,trend:2,burst:2"}) {
    WorkloadOptions options;
    options.seed = seed;
    options.phases = phases;
    options.rate_per_s = 300;
    options.max_users = 2000;
    const std::vector<uint64_t> a = Fingerprints(options, 1000);
    const std::vector<uint64_t> b = Fingerprints(options, 1000);
    ASSERT_GT(a.size(), 500u) << phases << " seed " << seed;
    EXPECT_EQ(a, b) << phases << " seed " << seed;
    options.seed = seed + 1;
    EXPECT_NE(a, Fingerprints(options, 1000)) << phases << " seed " << seed;
  }
}

TEST(WorkloadGenerator, RequestsAreWellFormedAndWithinTheCaps) {
  WorkloadOptions options;
  options.seed = TestSeed();
  options.profile = "kuairand";
  options.phases = "steady:3,trend:3,burst:3";
  options.rate_per_s = 200;
  options.max_users = 500;
  options.max_items = 50000;
  options.max_history = 512;
  options.num_actions = 5;
  options.candidates = 64;
  std::unique_ptr<Generator> generator = MustCreate(options);
  EXPECT_EQ(generator->num_items(), 50000);
  EXPECT_EQ(generator->num_users(), 500);
  EXPECT_EQ(generator->max_history(), 512);
  Request r;
  int64_t last_arrival = -1;
  int count = 0;
  while (generator->Next(&r)) {
    ++count;
    ASSERT_GE(r.arrival_us, last_arrival);
    ASSERT_LT(r.arrival_us, generator->duration_us());
    last_arrival = r.arrival_us;
    const Phase& phase = generator->phases()[r.phase];
    ASSERT_GE(r.arrival_us, phase.start_us);
    ASSERT_LT(r.arrival_us, phase.end_us());
    ASSERT_GE(r.user_id, 0);
    if (!r.crowd_user) {
      ASSERT_LT(r.user_id, 500);
    }
    ASSERT_FALSE(r.history_item_ids.empty());
    ASSERT_LE(r.history_item_ids.size(), 512u);
    ASSERT_EQ(r.history_actions.size(), r.history_item_ids.size());
    ASSERT_EQ(r.history_timestamps_ms.size(), r.history_item_ids.size());
    ASSERT_EQ(r.candidate_item_ids.size(), 64u);
    for (size_t i = 0; i < r.history_item_ids.size(); ++i) {
      ASSERT_GE(r.history_item_ids[i], 0);
      ASSERT_LT(r.history_item_ids[i], 50000);
      ASSERT_GE(r.history_actions[i], 0);
      ASSERT_LT(r.history_actions[i], 5);
      if (i > 0) {
        ASSERT_LE(r.history_timestamps_ms[i - 1], r.history_timestamps_ms[i]);
      }
    }
    // The newest event is not after the request.
    ASSERT_LE(r.history_timestamps_ms.back(), 1'700'000'000'000 + r.arrival_us / 1000);
    for (int64_t c : r.candidate_item_ids) {
      ASSERT_GE(c, 0);
      ASSERT_LT(c, 50000);
    }
  }
  EXPECT_GT(count, 1000) << "seed " << options.seed;
}

TEST(WorkloadGenerator, HistoriesOnlyGrowAndKeepTheirPrefixAcrossRevisits) {
  WorkloadOptions options;
  options.seed = TestSeed();
  options.profile = "movielens-20m";
  options.phases = "steady:4,trend:4,burst:4";
  options.rate_per_s = 400;
  options.max_users = 300;  // many revisits
  options.max_history = 400;
  std::unique_ptr<Generator> generator = MustCreate(options);
  struct Seen {
    std::vector<int64_t> items;
    std::vector<int32_t> actions;
    std::vector<int64_t> timestamps;
  };
  absl::flat_hash_map<int64_t, Seen> last;
  Request r;
  int revisits = 0;
  int truncations = 0;
  while (generator->Next(&r)) {
    auto it = last.find(r.user_id);
    ASSERT_EQ(r.first_visit, it == last.end()) << "user " << r.user_id;
    ASSERT_GE(r.new_events, 1);
    if (it != last.end()) {
      ++revisits;
      const Seen& before = it->second;
      const size_t n = r.history_item_ids.size();
      const size_t kept = n - static_cast<size_t>(r.new_events);
      if (!r.truncated) {
        // Same prefix, new events appended.
        ASSERT_EQ(n, before.items.size() + r.new_events);
        ASSERT_TRUE(
            std::equal(before.items.begin(), before.items.end(), r.history_item_ids.begin()));
        ASSERT_TRUE(
            std::equal(before.actions.begin(), before.actions.end(), r.history_actions.begin()));
        ASSERT_TRUE(std::equal(before.timestamps.begin(), before.timestamps.end(),
                               r.history_timestamps_ms.begin()));
      } else {
        // The oldest events were dropped: what is left is a suffix of the previous history.
        ++truncations;
        ASSERT_LT(kept, before.items.size());
        ASSERT_TRUE(
            std::equal(before.items.end() - kept, before.items.end(), r.history_item_ids.begin()));
      }
      ASSERT_GE(r.history_timestamps_ms[kept], before.timestamps.back());
    }
    Seen& seen = last[r.user_id];
    seen.items.assign(r.history_item_ids.begin(), r.history_item_ids.end());
    seen.actions.assign(r.history_actions.begin(), r.history_actions.end());
    seen.timestamps.assign(r.history_timestamps_ms.begin(), r.history_timestamps_ms.end());
  }
  EXPECT_GT(revisits, 2000) << "seed " << options.seed;
  EXPECT_GT(truncations, 0) << "seed " << options.seed;
}

// Mean and mean log of first-visit history lengths of `n` new users.
std::pair<double, double> InitialHistoryMoments(const char* profile, int n, uint64_t seed) {
  WorkloadOptions options;
  options.seed = seed;
  options.profile = profile;
  options.rate_per_s = 1e6;
  options.duration_s = 100;
  options.candidates = 1;
  std::unique_ptr<Generator> generator = MustCreate(options);
  Request r;
  double sum = 0;
  double sum_log = 0;
  int users = 0;
  while (users < n && generator->Next(&r)) {
    if (!r.first_visit) continue;
    ++users;
    sum += static_cast<double>(r.history_item_ids.size());
    sum_log += std::log(static_cast<double>(r.history_item_ids.size()));
  }
  return {sum / users, sum_log / users};
}

TEST(WorkloadGenerator, MeanHistoryLengthMatchesTheProfile) {
  const uint64_t seed = TestSeed();
  for (const char* name : {"movielens-20m", "amazon-books"}) {
    const DatasetProfile profile = *FindProfile(name);
    const auto [mean, mean_log] = InitialHistoryMoments(name, 5000, seed);
    EXPECT_NEAR(mean / profile.mean_history, 1.0, 0.10) << name << " seed " << seed;
  }
  // KuaiRand histories are ~12K events: fewer users, and the log-space mean (tighter spread).
  const DatasetProfile kuairand = *FindProfile("kuairand");
  const auto [mean, mean_log] = InitialHistoryMoments("kuairand", 300, seed);
  const double mu =
      std::log(kuairand.mean_history) - 0.5 * kuairand.history_sigma * kuairand.history_sigma;
  EXPECT_NEAR(mean_log, mu, 0.2) << "seed " << seed;
  EXPECT_GT(mean, 1000.0) << "thousands of events per user; seed " << seed;
}

TEST(WorkloadGenerator, ItemPopularityHasTheProfilesZipfHead) {
  WorkloadOptions options;
  options.seed = TestSeed();
  options.profile = "movielens-20m";
  options.rate_per_s = 2000;
  options.duration_s = 2;
  options.candidates = 200;
  options.candidate_popular_share = 1.0;  // every candidate drawn by popularity
  std::unique_ptr<Generator> generator = MustCreate(options);
  absl::flat_hash_map<int64_t, int64_t> counts;
  int64_t total = 0;
  Request r;
  while (generator->Next(&r)) {
    for (int64_t c : r.candidate_item_ids) ++counts[c];
    total += static_cast<int64_t>(r.candidate_item_ids.size());
  }
  std::vector<int64_t> sorted;
  for (const auto& [item, count] : counts) sorted.push_back(count);
  std::sort(sorted.rbegin(), sorted.rend());
  const DatasetProfile profile = *FindProfile("movielens-20m");
  const ZipfSampler zipf(profile.num_items, profile.item_zipf);
  for (int64_t k : {10, 100, 1000}) {
    int64_t head = 0;
    for (int64_t i = 0; i < k && i < static_cast<int64_t>(sorted.size()); ++i) head += sorted[i];
    EXPECT_NEAR(static_cast<double>(head) / total, zipf.HeadShare(k), 0.02)
        << "top " << k << " seed " << options.seed;
  }
  // The most popular ids are spread over the catalog, not packed at 0.
  EXPECT_GT(counts.size(), 20000u);
}

TEST(WorkloadGenerator, SteadyArrivalsArePoissonAtTheRate) {
  WorkloadOptions options;
  options.seed = TestSeed();
  options.rate_per_s = 500;
  options.duration_s = 20;
  options.max_users = 1000;
  options.candidates = 1;
  std::unique_ptr<Generator> generator = MustCreate(options);
  Request r;
  std::vector<double> gaps_us;
  int64_t last = 0;
  int64_t n = 0;
  while (generator->Next(&r)) {
    gaps_us.push_back(static_cast<double>(r.arrival_us - last));
    last = r.arrival_us;
    ++n;
  }
  const double expected = 500 * 20;
  EXPECT_NEAR(static_cast<double>(n), expected, 5 * std::sqrt(expected)) << "seed " << options.seed;
  // Exponential gaps: the coefficient of variation is 1.
  double mean = 0;
  for (double g : gaps_us) mean += g;
  mean /= gaps_us.size();
  double var = 0;
  for (double g : gaps_us) var += (g - mean) * (g - mean);
  var /= gaps_us.size();
  EXPECT_NEAR(std::sqrt(var) / mean, 1.0, 0.05) << "seed " << options.seed;
  EXPECT_DOUBLE_EQ(generator->RatePerS(5'000'000), 500.0);
}

TEST(WorkloadGenerator, BurstMultipliesTheRateAndBringsNewUsersOnHotItems) {
  WorkloadOptions options;
  options.seed = TestSeed();
  options.regime = "burst";
  options.duration_s = 30;
  options.rate_per_s = 200;
  options.burst_start_fraction = 1.0 / 3;
  options.burst_length_fraction = 1.0 / 3;
  options.burst_rate_multiplier = 4.0;
  options.burst_new_user_share = 0.7;
  options.burst_hot_items = 16;
  options.burst_hot_share = 0.8;
  options.max_users = 5000;
  options.candidates = 50;
  std::unique_ptr<Generator> generator = MustCreate(options);
  Request r;
  int64_t inside = 0, outside = 0, crowd_inside = 0, crowd_outside = 0;
  absl::flat_hash_map<int64_t, int64_t> inside_candidates;
  int64_t inside_candidate_total = 0;
  while (generator->Next(&r)) {
    const bool window = r.arrival_us >= 10'000'000 && r.arrival_us < 20'000'000;
    ASSERT_EQ(r.in_burst, window) << r.arrival_us;
    if (window) {
      ++inside;
      crowd_inside += r.crowd_user ? 1 : 0;
      for (int64_t c : r.candidate_item_ids) ++inside_candidates[c];
      inside_candidate_total += static_cast<int64_t>(r.candidate_item_ids.size());
      if (r.crowd_user) {
        ASSERT_GE(r.user_id, 5000);
      }
    } else {
      ++outside;
      crowd_outside += r.crowd_user ? 1 : 0;
    }
  }
  // Same length inside and outside (10 s vs 20 s): rate ratio = (inside / 10) / (outside / 20).
  const double ratio = (inside / 10.0) / (outside / 20.0);
  EXPECT_NEAR(ratio, 4.0, 0.3) << "seed " << options.seed;
  EXPECT_EQ(crowd_outside, 0);
  EXPECT_NEAR(static_cast<double>(crowd_inside) / inside, 0.7, 0.03) << "seed " << options.seed;
  // The 16 hot items take ~80% of the candidates in the window.
  std::vector<int64_t> sorted;
  for (const auto& [item, count] : inside_candidates) sorted.push_back(count);
  std::sort(sorted.rbegin(), sorted.rend());
  int64_t hot = 0;
  for (int i = 0; i < 16 && i < static_cast<int>(sorted.size()); ++i) hot += sorted[i];
  EXPECT_GT(static_cast<double>(hot) / inside_candidate_total, 0.78) << "seed " << options.seed;
  EXPECT_DOUBLE_EQ(generator->RatePerS(15'000'000), 800.0);
  EXPECT_DOUBLE_EQ(generator->RatePerS(25'000'000), 200.0);
}

// Share of the draws in [from, to) s that fall on the 10 ids most drawn in the first window.
struct RotationProbe {
  double item_share_first = 0, item_share_last = 0;
  double user_share_first = 0, user_share_last = 0;
  std::vector<int64_t> per_second;
};

RotationProbe ProbeRotation(const char* regime, uint64_t seed) {
  WorkloadOptions options;
  options.seed = seed;
  options.regime = regime;
  options.duration_s = 60;
  options.rate_per_s = 500;
  options.candidates = 32;
  options.candidate_popular_share = 1.0;
  options.trend_amplitude = 0.5;
  options.trend_rotation_ranks_per_s = 2.0;
  std::unique_ptr<Generator> generator = MustCreate(options);
  std::map<int64_t, int64_t> items_first, items_last, users_first, users_last;
  RotationProbe probe;
  probe.per_second.assign(60, 0);
  Request r;
  while (generator->Next(&r)) {
    const int64_t second = r.arrival_us / 1'000'000;
    ++probe.per_second[second];
    if (second < 12) {
      ++users_first[r.user_id];
      for (int64_t c : r.candidate_item_ids) ++items_first[c];
    } else if (second >= 48) {
      ++users_last[r.user_id];
      for (int64_t c : r.candidate_item_ids) ++items_last[c];
    }
  }
  auto shares = [](const std::map<int64_t, int64_t>& first, const std::map<int64_t, int64_t>& last,
                   double* share_first, double* share_last) {
    std::vector<std::pair<int64_t, int64_t>> by_count;
    for (const auto& [id, count] : first) by_count.push_back({count, id});
    std::sort(by_count.rbegin(), by_count.rend());
    absl::flat_hash_set<int64_t> top;
    for (size_t i = 0; i < 10 && i < by_count.size(); ++i) top.insert(by_count[i].second);
    int64_t in_first = 0, all_first = 0, in_last = 0, all_last = 0;
    for (const auto& [id, count] : first) {
      all_first += count;
      if (top.contains(id)) in_first += count;
    }
    for (const auto& [id, count] : last) {
      all_last += count;
      if (top.contains(id)) in_last += count;
    }
    *share_first = static_cast<double>(in_first) / all_first;
    *share_last = static_cast<double>(in_last) / all_last;
  };
  shares(items_first, items_last, &probe.item_share_first, &probe.item_share_last);
  shares(users_first, users_last, &probe.user_share_first, &probe.user_share_last);
  return probe;
}

TEST(WorkloadGenerator, TrendRotatesPopularityAndSteadyDoesNot) {
  const uint64_t seed = TestSeed();
  const RotationProbe steady = ProbeRotation("steady", seed);
  const RotationProbe trend = ProbeRotation("trend", seed);
  // Bounds from 200 seeds. Items (32 per request) are tight: steady 1.00 +- 0.01, trend
  // 0.13 +- 0.005. Users (one per request, ten of them in the head) are noisy: steady
  // 0.94 +- 0.08, trend 0.15 +- 0.05 (max 0.31 seen), so their bounds sit >= 4.8 sd away.
  // Steady: the early hot items and users stay hot.
  EXPECT_GT(steady.item_share_last / steady.item_share_first, 0.8) << "seed " << seed;
  EXPECT_GT(steady.user_share_last / steady.user_share_first, 0.55) << "seed " << seed;
  // Trend: after ~100 ranks of rotation the early head has faded.
  EXPECT_LT(trend.item_share_last / trend.item_share_first, 0.3) << "seed " << seed;
  EXPECT_LT(trend.user_share_last / trend.user_share_first, 0.45) << "seed " << seed;
}

TEST(WorkloadGenerator, TrendRateFollowsTheDiurnalCurve) {
  const uint64_t seed = TestSeed();
  const RotationProbe trend = ProbeRotation("trend", seed);
  // rate(t) = 500 * (1 - 0.5 cos(2 pi t / 60)): ~250/s at the edges, ~750/s in the middle.
  const double edges =
      (trend.per_second[0] + trend.per_second[1] + trend.per_second[58] + trend.per_second[59]) /
      4.0;
  const double middle =
      (trend.per_second[28] + trend.per_second[29] + trend.per_second[30] + trend.per_second[31]) /
      4.0;
  EXPECT_NEAR(middle / edges, 3.0, 0.4) << "seed " << seed;
  int64_t total = 0;
  for (int64_t c : trend.per_second) total += c;
  EXPECT_NEAR(static_cast<double>(total), 500.0 * 60, 5 * std::sqrt(500.0 * 60)) << "seed " << seed;
}

TEST(WorkloadGenerator, PhasesRunBackToBackAndUsersCarryOver) {
  WorkloadOptions options;
  options.seed = TestSeed();
  options.phases = "steady:2, trend:3, burst:2, steady:1";
  options.rate_per_s = 300;
  options.max_users = 200;
  std::unique_ptr<Generator> generator = MustCreate(options);
  const std::vector<Phase>& phases = generator->phases();
  ASSERT_EQ(phases.size(), 4u);
  EXPECT_EQ(phases[0].name, "steady");
  EXPECT_EQ(phases[3].name, "steady#2");
  EXPECT_EQ(phases[1].start_us, 2'000'000);
  EXPECT_EQ(phases[2].regime, Regime::kBurst);
  EXPECT_EQ(generator->duration_us(), 8'000'000);
  std::vector<int64_t> per_phase(4, 0);
  int64_t revisits_after_first_phase = 0;
  Request r;
  while (generator->Next(&r)) {
    ++per_phase[r.phase];
    if (r.phase > 0 && !r.first_visit && !r.crowd_user) ++revisits_after_first_phase;
  }
  for (int i = 0; i < 4; ++i) EXPECT_GT(per_phase[i], 100) << "phase " << i;
  EXPECT_GT(revisits_after_first_phase, 1000);
}

TEST(WorkloadGenerator, BadOptionsAreClearErrors) {
  WorkloadOptions options;
  options.phases = "steady:10,sideways:5";
  absl::StatusOr<std::unique_ptr<Generator>> g = Generator::Create(options);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(g.status().message().find("sideways"), absl::string_view::npos) << g.status();

  options = WorkloadOptions();
  options.phases = "steady:-1";
  EXPECT_FALSE(Generator::Create(options).ok());

  options = WorkloadOptions();
  options.rate_per_s = 0;
  g = Generator::Create(options);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("rate_per_s"), absl::string_view::npos) << g.status();

  options = WorkloadOptions();
  options.profile = "netflix";
  g = Generator::Create(options);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("profile"), absl::string_view::npos) << g.status();

  options = WorkloadOptions();
  options.burst_start_fraction = 0.8;
  options.burst_length_fraction = 0.5;
  EXPECT_FALSE(Generator::Create(options).ok());
}

}  // namespace
}  // namespace helm::workload
