// Session-shaped workloads (WorkloadOptions::sessions) and the stream with sessions off.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"
#include "helm/workload/generator.h"

namespace helm::workload {
namespace {

std::unique_ptr<Generator> MustCreate(const WorkloadOptions& options) {
  absl::StatusOr<std::unique_ptr<Generator>> generator = Generator::Create(options);
  EXPECT_TRUE(generator.ok()) << generator.status();
  return generator.ok() ? *std::move(generator) : nullptr;
}

// FNV-1a over everything the first `n` requests carry.
uint64_t StreamHash(const WorkloadOptions& options, int n) {
  std::unique_ptr<Generator> generator = MustCreate(options);
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ULL; };
  Request r;
  for (int i = 0; i < n && generator->Next(&r); ++i) {
    mix(static_cast<uint64_t>(r.arrival_us));
    mix(static_cast<uint64_t>(r.user_id));
    mix(static_cast<uint64_t>(r.phase));
    mix(static_cast<uint64_t>(r.new_events));
    mix(r.first_visit);
    mix(r.truncated);
    mix(r.in_burst);
    mix(r.crowd_user);
    for (int64_t v : r.history_item_ids) mix(static_cast<uint64_t>(v));
    for (int32_t v : r.history_actions) mix(static_cast<uint64_t>(v));
    for (int64_t v : r.history_timestamps_ms) mix(static_cast<uint64_t>(v));
    for (int64_t v : r.candidate_item_ids) mix(static_cast<uint64_t>(v));
  }
  return h;
}

// Recorded before sessions existed (commit 6e26231): with sessions off, the generator must give
// the very same stream, byte for byte.
TEST(WorkloadSessions, OffLeavesTheStreamUnchanged) {
  struct Case {
    const char* profile;
    const char* phases;
    double rate_per_s;
    uint64_t hash;
  };
  for (const Case& c :
       {Case{"movielens-20m", "steady:2,trend:2,burst:2", 100, 3343440271079007383u},
        Case{"amazon-books", "steady:2,trend:2,burst:2", 100, 11137522040404574989u},
        Case{"kuairand", "steady:2,trend:2,burst:2", 100, 9751785700696507805u},
        Case{"kuairand", "burst:3,trend:3", 40, 4089802141233315532u}}) {
    WorkloadOptions options;
    options.profile = c.profile;
    options.seed = 42;
    options.phases = c.phases;
    options.rate_per_s = c.rate_per_s;
    options.max_users = 2000;
    options.max_history = 512;
    EXPECT_EQ(StreamHash(options, 200), c.hash) << c.profile << " " << c.phases;
  }
}

// Bound on |mean session length - profile's mean|, in standard errors of the mean. A sweep of 200
// seeds (MeanSessionLengthMatchesTheProfile, both profiles) gave deviations of mean +0.01 / -0.13
// and sd 1.00 / 1.08 standard errors, at most 2.8: the estimate is unbiased and the bound is ~5 sd.
constexpr double kMeanLengthBoundSe = 5.0;

uint64_t TestSeed() {
  return static_cast<uint64_t>(::testing::UnitTest::GetInstance()->random_seed()) + 1;
}

WorkloadOptions SessionOptions(const char* profile, uint64_t seed) {
  WorkloadOptions options;
  options.profile = profile;
  options.seed = seed;
  options.sessions = true;
  options.rate_per_s = 200;
  options.duration_s = 120;
  options.candidates = 1;
  options.max_history = 2048;
  return options;
}

// What a session-shaped run looks like, per request and per session.
struct SessionStats {
  int64_t requests = 0;
  int64_t requests_after_warmup = 0;  // arrivals in [duration / 2, duration)
  double mean_length = 0;             // of sessions begun early enough to be complete
  int64_t sessions = 0;
  int64_t follow_ups = 0;
  int64_t gaps_out_of_range = 0;
  int64_t out_of_order = 0;  // a follow-up not right after its session's previous request
  int64_t not_extended = 0;  // a follow-up whose history does not extend the previous one
};

SessionStats RunSessions(const WorkloadOptions& options, double complete_before_s) {
  std::unique_ptr<Generator> generator = MustCreate(options);
  const DatasetProfile& profile = generator->profile();
  const int64_t gap_min_us = static_cast<int64_t>(profile.session_gap_min_s * 1e6);
  const int64_t gap_max_us = static_cast<int64_t>(profile.session_gap_max_s * 1e6);
  struct Last {
    int64_t arrival_us = 0;
    int32_t session_request = 0;
    std::vector<int64_t> items;
  };
  absl::flat_hash_map<int64_t, Last> last;
  absl::flat_hash_map<int64_t, int64_t> open_session_length;  // user -> requests so far
  std::vector<int64_t> lengths;
  SessionStats stats;
  Request r;
  const int64_t half_us = generator->duration_us() / 2;
  const int64_t complete_before_us = static_cast<int64_t>(complete_before_s * 1e6);
  while (generator->Next(&r)) {
    ++stats.requests;
    if (r.arrival_us >= half_us) ++stats.requests_after_warmup;
    auto it = last.find(r.user_id);
    if (r.session_request == 0) {
      ++stats.sessions;
      if (auto open = open_session_length.find(r.user_id); open != open_session_length.end()) {
        lengths.push_back(open->second);
        open_session_length.erase(open);
      }
      if (r.arrival_us < complete_before_us) open_session_length[r.user_id] = 1;
    } else {
      ++stats.follow_ups;
      if (it != last.end()) {
        if (it->second.session_request != r.session_request - 1) ++stats.out_of_order;
        const int64_t gap = r.arrival_us - it->second.arrival_us;
        if (gap < gap_min_us || gap > gap_max_us) ++stats.gaps_out_of_range;
        const std::vector<int64_t>& before = it->second.items;
        const bool extends = !r.truncated &&
                             r.history_item_ids.size() == before.size() + r.new_events &&
                             std::equal(before.begin(), before.end(), r.history_item_ids.begin());
        if (!extends && !r.truncated) ++stats.not_extended;
      }
      if (auto open = open_session_length.find(r.user_id); open != open_session_length.end()) {
        ++open->second;
      }
    }
    Last& l = last[r.user_id];
    l.arrival_us = r.arrival_us;
    l.session_request = r.session_request;
    l.items.assign(r.history_item_ids.begin(), r.history_item_ids.end());
  }
  // Sessions begun early enough have ended by the end of the run (sessions are far shorter).
  for (const auto& [user, length] : open_session_length) lengths.push_back(length);
  double sum = 0;
  for (int64_t n : lengths) sum += static_cast<double>(n);
  stats.mean_length = lengths.empty() ? 0 : sum / static_cast<double>(lengths.size());
  stats.sessions = static_cast<int64_t>(lengths.size());
  return stats;
}

TEST(WorkloadSessions, RequestsOfASessionComeBackToBackWithinTheProfilesGaps) {
  const uint64_t seed = TestSeed();
  for (const char* profile : {"movielens-20m", "kuairand", "taobao"}) {
    WorkloadOptions options = SessionOptions(profile, seed);
    options.duration_s = 60;
    const SessionStats stats = RunSessions(options, 0);
    EXPECT_GT(stats.follow_ups, stats.requests / 2) << profile << " seed " << seed;
    EXPECT_EQ(stats.out_of_order, 0) << profile << " seed " << seed;
    EXPECT_EQ(stats.gaps_out_of_range, 0) << profile << " seed " << seed;
  }
}

// With sessions the burst multiplies the rate at which sessions start; the request rate follows
// as the sessions unfold (smoothed over a session's span: the burst's requests trail its sessions).
TEST(WorkloadSessions, BurstBringsTheFlashCrowdInSessions) {
  WorkloadOptions options = SessionOptions("movielens-20m", TestSeed());
  options.phases = "steady:60,burst:120";
  options.burst_start_fraction = 0.0;
  options.burst_length_fraction = 1.0;
  options.burst_users = 100000;  // enough crowd users for the crowd's share of the sessions
  std::unique_ptr<Generator> generator = MustCreate(options);
  absl::flat_hash_map<int64_t, int32_t> last_index;
  int64_t steady = 0, steady_starts = 0, burst_starts = 0, crowd_starts = 0, burst_late = 0;
  int64_t out_of_order = 0;
  Request r;
  while (generator->Next(&r)) {
    const bool start = r.session_request == 0;
    if (r.phase == 0) {
      ++steady;
      steady_starts += start;
    } else {
      burst_starts += start;
      crowd_starts += start && r.crowd_user;
      if (r.arrival_us >= 120'000'000) ++burst_late;  // a minute into the burst
    }
    auto [it, inserted] = last_index.try_emplace(r.user_id, r.session_request);
    if (!inserted && r.session_request > 0 && it->second != r.session_request - 1) ++out_of_order;
    it->second = r.session_request;
  }
  const double start_ratio = (burst_starts / 120.0) / (steady_starts / 60.0);
  EXPECT_NEAR(start_ratio, options.burst_rate_multiplier, 0.3) << "seed " << options.seed;
  EXPECT_NEAR(static_cast<double>(crowd_starts) / burst_starts, options.burst_new_user_share, 0.05)
      << "seed " << options.seed;
  const double late_ratio = (burst_late / 60.0) / (steady / 60.0);
  EXPECT_GT(late_ratio, 0.75 * options.burst_rate_multiplier) << "seed " << options.seed;
  EXPECT_LT(late_ratio, 1.1 * options.burst_rate_multiplier) << "seed " << options.seed;
  EXPECT_EQ(out_of_order, 0);
}

TEST(WorkloadSessions, HistoryGrowsAcrossASession) {
  const uint64_t seed = TestSeed();
  for (const char* profile : {"amazon-books", "kuairand"}) {
    WorkloadOptions options = SessionOptions(profile, seed);
    options.duration_s = 60;
    const SessionStats stats = RunSessions(options, 0);
    EXPECT_GT(stats.follow_ups, 1000) << profile << " seed " << seed;
    EXPECT_EQ(stats.not_extended, 0) << profile << " seed " << seed;
  }
}

TEST(WorkloadSessions, MeanSessionLengthMatchesTheProfile) {
  const uint64_t seed = TestSeed();
  for (const char* profile : {"movielens-20m", "amazon-video-games"}) {
    WorkloadOptions options = SessionOptions(profile, seed);
    options.duration_s = 1000;
    const DatasetProfile p = *FindProfile(profile);
    // Sessions begun in the first 200 s have ended by 1000 s unless ~20 requests long (P < 1e-3),
    // so the cut at the end of the run biases the mean by far less than a standard error.
    const SessionStats stats = RunSessions(options, 200);
    // Geometric: sd of one length sqrt(1 - q) / q with q = 1 / mean.
    const double q = 1.0 / p.session_requests_mean;
    const double se = std::sqrt(1.0 - q) / q / std::sqrt(static_cast<double>(stats.sessions));
    ASSERT_GT(stats.sessions, 5000) << profile;
    EXPECT_NEAR(stats.mean_length, p.session_requests_mean, kMeanLengthBoundSe * se)
        << profile << " seed " << seed << " sessions " << stats.sessions;
  }
}

TEST(WorkloadSessions, OverallRateMatchesTheRate) {
  const uint64_t seed = TestSeed();
  for (const char* profile : {"movielens-20m", "kuairand", "taobao"}) {
    WorkloadOptions options = SessionOptions(profile, seed);
    const DatasetProfile p = *FindProfile(profile);
    const SessionStats stats = RunSessions(options, 0);
    // Requests come in clusters: the count's variance is the session rate times E[length^2].
    const double q = 1.0 / p.session_requests_mean;
    const double second_moment = (2.0 - q) / (q * q);
    const double expected = options.rate_per_s * options.duration_s;
    const double sd = std::sqrt(expected / p.session_requests_mean * second_moment);
    EXPECT_NEAR(static_cast<double>(stats.requests), expected, 5 * sd)
        << profile << " seed " << seed;
    // No ramp-up: the first half holds half of the requests.
    EXPECT_NEAR(static_cast<double>(stats.requests_after_warmup), expected / 2,
                5 * sd / std::sqrt(2.0))
        << profile << " seed " << seed;
  }
}

// 1500 KuaiRand users at 80/s: ~3300 sessions would be in progress at once (80/s x ~41 s mean
// gap), more than there are users. The rate still holds (some users then run two sessions).
TEST(WorkloadSessions, RateHoldsWhenUsersAreTooFewForTheSessions) {
  WorkloadOptions options = SessionOptions("kuairand", TestSeed());
  options.max_users = 1500;
  options.max_history = 256;
  options.rate_per_s = 80;
  options.duration_s = 120;
  std::unique_ptr<Generator> generator = MustCreate(options);
  int64_t n = 0;
  Request r;
  while (generator->Next(&r)) ++n;
  const double expected = options.rate_per_s * options.duration_s;
  const double q = 1.0 / generator->profile().session_requests_mean;
  const double sd = std::sqrt(expected * q * (2.0 - q) / (q * q));
  EXPECT_NEAR(static_cast<double>(n), expected, 5 * sd) << "seed " << options.seed;
}

TEST(WorkloadSessions, SameSeedGivesTheSameSessions) {
  const uint64_t seed = TestSeed();
  for (const char* phases : {"steady:5", "steady:3,trend:3,burst:3"}) {
    WorkloadOptions options = SessionOptions("kuairand", seed);
    options.phases = phases;
    options.max_users = 3000;
    options.max_history = 256;
    options.candidates = 16;
    const uint64_t a = StreamHash(options, 1000);
    EXPECT_EQ(a, StreamHash(options, 1000)) << phases;
    options.seed = seed + 1;
    EXPECT_NE(a, StreamHash(options, 1000)) << phases;
    options.seed = seed;
    options.sessions = false;
    EXPECT_NE(a, StreamHash(options, 1000)) << phases;
  }
}

TEST(WorkloadSessions, BadSessionOptionsNameTheKey) {
  WorkloadOptions options;
  options.sessions = true;
  options.session_gap_min_s = 100;
  options.session_gap_max_s = 10;
  absl::StatusOr<std::unique_ptr<Generator>> g = Generator::Create(options);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("session_gap_min_s"), absl::string_view::npos) << g.status();

  options = WorkloadOptions();
  options.session_requests_mean = 0.5;
  g = Generator::Create(options);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("session_requests_mean"), absl::string_view::npos)
      << g.status();

  options = WorkloadOptions();
  options.session_gap_max_s = -1;
  g = Generator::Create(options);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("session_gap_max_s"), absl::string_view::npos) << g.status();
}

}  // namespace
}  // namespace helm::workload
