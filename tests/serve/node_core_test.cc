// The node core on a fake clock, on one thread: batches compute what one-by-one requests compute,
// deadlines are checked before compute, queue time includes the batching wait, statistics come in
// windows, a new state subscriber sees a snapshot and then every change, and two runs of the same
// request sequence give identical statistics.
#include "helm/serve/node_core.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace helm::serve {
namespace {

config::Config SmallConfig(int max_batch) {
  config::Config config;
  config.node.id = "node-test";
  config.node.max_batch = max_batch;
  config.node.max_batch_wait_us = 200;
  config.node.queue_capacity = 64;
  config.node.max_history = 1024;
  config.pool.bytes = int64_t{8} << 20;
  config.pool.chunk_bytes = int64_t{256} << 10;
  config.pool.backend = "cpu";
  config.pool.initial_split = 0.5;
  config.emb.num_items = 20000;
  config.model.kernels = "cpu";
  return config;
}

// A job that owns its request's columns and records its outcome.
struct TestJob : RankJob {
  std::vector<int64_t> items, timestamps_ms, candidates;
  std::vector<int32_t> actions;
  std::optional<absl::Status> status;

  TestJob(int64_t user, int length, int num_candidates, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (int i = 0; i < length; ++i) {
      items.push_back(static_cast<int64_t>((user * 7919 + i * 104729) % 20000));
      actions.push_back(static_cast<int32_t>((user + i) % 8));
      timestamps_ms.push_back(1'700'000'000'000 + user * 1000 + int64_t{i} * 45'000);
    }
    for (int c = 0; c < num_candidates; ++c) candidates.push_back(rng() % 20000);
    input.user_id = user;
    input.history_item_ids = items;
    input.history_actions = actions;
    input.history_timestamps_ms = timestamps_ms;
    input.candidate_item_ids = candidates;
    done = [](RankJob* job, const absl::Status& s) { static_cast<TestJob*>(job)->status = s; };
  }
  std::vector<float> scores() const {
    std::vector<float> out;
    for (const ScoredItem& item : output.items) out.push_back(item.score);
    return out;
  }
};

std::unique_ptr<NodeCore> MakeCore(int max_batch, Clock* clock) {
  auto core = NodeCore::Create(SmallConfig(max_batch), clock);
  EXPECT_TRUE(core.ok()) << core.status();
  return core.ok() ? *std::move(core) : nullptr;
}

// Takes and runs every ready batch; returns the batch sizes.
std::vector<size_t> RunReady(NodeCore& core, Worker& worker) {
  std::vector<size_t> sizes;
  std::vector<QueuedJob*> batch;
  for (int guard = 0; guard < 1000; ++guard) {
    core.queue().TakeReady(&batch);
    if (batch.empty()) break;
    sizes.push_back(batch.size());
    core.RunBatch(worker, batch);
  }
  return sizes;
}

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-5f * std::max(1.0f, std::abs(want[i]))) << "candidate " << i;
  }
}

TEST(NodeCore, ABatchScoresWhatOneByOneRequestsScore) {
  FakeClock clock(0);
  auto batched = MakeCore(4, &clock);
  auto single = MakeCore(1, &clock);
  ASSERT_TRUE(batched && single);
  auto bw = batched->NewWorker();
  auto sw = single->NewWorker();
  ASSERT_TRUE(bw.ok() && sw.ok());
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  // Two rounds: cold users, then the same users with longer histories (cached prefixes).
  for (int round = 0; round < 2; ++round) {
    std::vector<std::unique_ptr<TestJob>> a, b;
    for (int u = 0; u < 4; ++u) {
      const int length = 60 + 45 * u + 70 * round;
      const int candidates = u == 3 ? 1 : 10 + 7 * u;
      a.push_back(std::make_unique<TestJob>(u, length, candidates, seed + u));
      b.push_back(std::make_unique<TestJob>(u, length, candidates, seed + u));
      ASSERT_TRUE(batched->Submit(a.back().get()).ok());
      ASSERT_TRUE(single->Submit(b.back().get()).ok());
    }
    EXPECT_EQ(RunReady(*batched, **bw), std::vector<size_t>{4}) << "seed " << seed;
    EXPECT_EQ(RunReady(*single, **sw), std::vector<size_t>(4, 1));
    for (int u = 0; u < 4; ++u) {
      ASSERT_TRUE(a[u]->status.has_value() && a[u]->status->ok());
      ASSERT_TRUE(b[u]->status.has_value() && b[u]->status->ok());
      EXPECT_EQ(a[u]->output.batch_size, 4);
      EXPECT_EQ(a[u]->output.cached_tokens, b[u]->output.cached_tokens);
      if (round == 1) {
        EXPECT_GT(a[u]->output.cached_tokens, 0) << "user " << u;
      }
      ExpectClose(a[u]->scores(), b[u]->scores());
    }
  }
}

TEST(NodeCore, APassedDeadlineIsAnsweredWithoutCompute) {
  FakeClock clock(1'000'000);
  auto core = MakeCore(4, &clock);
  ASSERT_TRUE(core);
  auto worker = core->NewWorker();
  ASSERT_TRUE(worker.ok());
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  TestJob late(1, 100, 8, seed), fine(2, 100, 8, seed + 1);
  late.deadline_us = clock.NowMicros() + 100;
  ASSERT_TRUE(core->Submit(&late).ok());
  ASSERT_TRUE(core->Submit(&fine).ok());
  clock.AdvanceMicros(250);  // past the late job's deadline and the batching wait
  EXPECT_EQ(RunReady(*core, **worker), std::vector<size_t>{2});
  ASSERT_TRUE(late.status.has_value());
  EXPECT_TRUE(absl::IsDeadlineExceeded(*late.status)) << *late.status;
  ASSERT_TRUE(fine.status.has_value());
  EXPECT_TRUE(fine.status->ok());
  EXPECT_EQ(core->engine().kv().stats().requests, 1) << "the late job took no KV lease";
  const NodeCounters c = core->counters();
  EXPECT_EQ(c.completions, 1);
  EXPECT_EQ(c.failures, 1);
  EXPECT_EQ(c.deadline_exceeded, 1);
  EXPECT_EQ(c.batched_requests, 1);
  EXPECT_EQ(c.computed_rows, 100 + 8) << "the fine job's uncached history and its candidates";
  // Attention work: history token t attends to t earlier tokens, each candidate to all 100.
  EXPECT_EQ(c.computed_attention, 100 * 99 / 2 + 8 * 100);
}

TEST(NodeCore, QueueTimeIncludesTheBatchingWait) {
  FakeClock clock(0);
  auto core = MakeCore(8, &clock);
  ASSERT_TRUE(core);
  auto worker = core->NewWorker();
  ASSERT_TRUE(worker.ok());
  TestJob first(1, 50, 4, 1), second(2, 50, 4, 2);
  ASSERT_TRUE(core->Submit(&first).ok());
  clock.AdvanceMicros(120);
  ASSERT_TRUE(core->Submit(&second).ok());
  EXPECT_TRUE(RunReady(*core, **worker).empty()) << "the batch is not full and not due";
  clock.AdvanceMicros(80);  // the first job has now waited max_batch_wait_us
  EXPECT_EQ(RunReady(*core, **worker), std::vector<size_t>{2});
  EXPECT_EQ(first.output.queue_us, 200);
  EXPECT_EQ(second.output.queue_us, 80);
  const StatsWindow w = core->CloseWindow();
  EXPECT_EQ(w.latency_us.Count(), 2);
  EXPECT_EQ(w.latency_us.Max(), 200) << "the fake clock does not move during compute";
}

TEST(NodeCore, EachWindowCountsOnlyItsOwnRequests) {
  FakeClock clock(0);
  auto core = MakeCore(1, &clock);
  ASSERT_TRUE(core);
  auto worker = core->NewWorker();
  ASSERT_TRUE(worker.ok());
  std::vector<std::unique_ptr<TestJob>> jobs;
  for (int i = 0; i < 3; ++i) {
    jobs.push_back(std::make_unique<TestJob>(i, 40, 4, i));
    ASSERT_TRUE(core->Submit(jobs.back().get()).ok());
  }
  RunReady(*core, **worker);
  clock.AdvanceMicros(1'000'000);
  const StatsWindow first = core->CloseWindow();
  EXPECT_EQ(first.requests.arrivals, 3);
  EXPECT_EQ(first.requests.completions, 3);
  EXPECT_EQ(first.latency_us.Count(), 3);
  EXPECT_EQ(first.kv.requests, 3);
  EXPECT_DOUBLE_EQ(first.seconds(), 1.0);
  EXPECT_DOUBLE_EQ(first.arrival_rate_per_s(), 3.0);

  jobs.push_back(std::make_unique<TestJob>(7, 40, 4, 7));
  ASSERT_TRUE(core->Submit(jobs.back().get()).ok());
  clock.AdvanceMicros(500);
  RunReady(*core, **worker);
  clock.AdvanceMicros(499'500);
  const StatsWindow second = core->CloseWindow();
  EXPECT_EQ(second.start_us, 1'000'000);
  EXPECT_EQ(second.requests.arrivals, 1);
  EXPECT_EQ(second.latency_us.Count(), 1) << "the histogram covers one window only";
  EXPECT_EQ(second.latency_us.Max(), 500);
  EXPECT_EQ(second.emb.lookups, 40 + 4);
  EXPECT_EQ(core->last_window().requests.arrivals, 1);
  EXPECT_EQ(core->counters().arrivals, 4);
}

// Under control.policy "predictive" every answer is sampled with what it cost (summed over the
// window's answers, the caches' own counters) and its user's reuse time; both caches' reuse times
// come with the window. Under any other policy nothing is kept.
TEST(NodeCore, APredictiveNodeSamplesItsAnswersAndTheCachesReuseTimes) {
  FakeClock clock(0);
  config::Config config = SmallConfig(4);
  config.control.policy = "predictive";
  auto core = NodeCore::Create(config, &clock);
  ASSERT_TRUE(core.ok()) << core.status();
  auto worker = (*core)->NewWorker();
  ASSERT_TRUE(worker.ok());
  std::mt19937_64 rng(::testing::UnitTest::GetInstance()->random_seed());
  std::vector<std::unique_ptr<TestJob>> jobs;
  for (int step = 0; step < 200; ++step) {  // 64 users with long histories: both caches churn
    const int64_t user = static_cast<int64_t>(rng() % 64);
    jobs.push_back(std::make_unique<TestJob>(user, 300 + static_cast<int>(rng() % 600), 64, rng()));
    ASSERT_TRUE((*core)->Submit(jobs.back().get()).ok());
    clock.AdvanceMicros(100);
    RunReady(**core, **worker);
  }
  clock.AdvanceMicros(200);  // the batching wait
  RunReady(**core, **worker);
  const StatsWindow w = (*core)->CloseWindow();
  ASSERT_EQ(static_cast<int64_t>(w.answers.size()), w.requests.completions);
  int64_t lookups = 0, misses = 0, history = 0, cached = 0, returning = 0;
  double batch_lookups = 0, batch_misses = 0;             // each batch's totals, once a batch
  int64_t reused_in_largest = 0, reused_in_smallest = 0;  // KV caches at r_min and at r_max
  ASSERT_EQ(w.kv_shadow_splits.size(), static_cast<size_t>(config.control.kv_shadows));
  for (const AnswerSample& a : w.answers) {
    ASSERT_GE(a.batch.size, 1);
    EXPECT_GE(a.batch.emb_lookups, a.emb_lookups);
    batch_lookups += static_cast<double>(a.batch.emb_lookups) / a.batch.size;
    batch_misses += static_cast<double>(a.batch.emb_misses) / a.batch.size;
    for (size_t i = 0; i < w.kv_shadow_splits.size(); ++i) {
      EXPECT_LE(a.reuse.kv_shadow_prefix[i], a.history_tokens);
      EXPECT_GE(a.batch.shadow.tokens[i], a.reuse.kv_shadow_prefix[i]);
    }
    reused_in_largest += a.reuse.kv_shadow_prefix[0];
    reused_in_smallest += a.reuse.kv_shadow_prefix[w.kv_shadow_splits.size() - 1];
    lookups += a.emb_lookups;
    misses += a.emb_misses;
    history += a.history_tokens;
    cached += a.cached_tokens;
    EXPECT_LE(a.queue_us, a.latency_us);
    EXPECT_LE(a.cached_tokens, a.reuse.kv_prefix_tokens) << "only a returning user's prefix hits";
    returning += a.reuse.kv_reuse_tokens >= 0;
  }
  EXPECT_EQ(lookups, w.emb.lookups);
  EXPECT_EQ(misses, w.emb.misses);
  EXPECT_GT(reused_in_largest, reused_in_smallest);
  EXPECT_NEAR(batch_lookups, static_cast<double>(lookups), 1e-6 * lookups);
  EXPECT_NEAR(batch_misses, static_cast<double>(misses), 1e-6 * lookups + 1e-9);
  EXPECT_EQ(history, w.kv.requested_tokens);
  EXPECT_EQ(cached, w.kv.hit_tokens);
  EXPECT_GT(returning, 100) << "64 users, 200 requests";
  EXPECT_NEAR(w.kv_reuse.total(), static_cast<double>(history), 0.5);
  // The miniature EMB caches (every id: the pool is far smaller than emb_shadow_rows) stand for
  // the EMB reuse times. The two around the node's split (0.5) bracket its cache's miss ratio,
  // and the one at r_min misses more than the one at r_max.
  EXPECT_EQ(w.emb_reuse.total(), 0);
  const std::vector<double>& m = w.emb_shadow_miss_ratios;
  ASSERT_EQ(m.size(), static_cast<size_t>(config.control.emb_shadows));
  ASSERT_EQ(w.emb_shadow_splits, w.kv_shadow_splits);
  const size_t above = static_cast<size_t>(
      std::upper_bound(w.emb_shadow_splits.begin(), w.emb_shadow_splits.end(), 0.5) -
      w.emb_shadow_splits.begin());
  ASSERT_TRUE(above > 0 && above < m.size());
  const double cache_ratio = static_cast<double>(misses) / static_cast<double>(lookups);
  EXPECT_GE(m[above - 1], cache_ratio - 0.01);
  EXPECT_LE(m[above], cache_ratio + 0.01);
  EXPECT_GT(m.front(), m.back() + 0.05);
  for (size_t i = 1; i < m.size(); ++i) EXPECT_LE(m[i], m[i - 1] + 0.01) << i;

  // Without them, the EMB reuse times are measured.
  config.control.emb_shadows = 0;
  auto timed = NodeCore::Create(config, &clock);
  ASSERT_TRUE(timed.ok());
  auto timed_worker = (*timed)->NewWorker();
  ASSERT_TRUE(timed_worker.ok());
  for (int i = 0; i < 4; ++i) {
    jobs.push_back(std::make_unique<TestJob>(i, 40, 64, i));
    ASSERT_TRUE((*timed)->Submit(jobs.back().get()).ok());
  }
  clock.AdvanceMicros(200);  // the batching wait
  RunReady(**timed, **timed_worker);
  const StatsWindow timed_window = (*timed)->CloseWindow();
  EXPECT_GT(timed_window.emb_reuse.total(), 0);
  EXPECT_TRUE(timed_window.emb_shadow_miss_ratios.empty());

  // Any other policy keeps none of it.
  config.control.policy = "static";
  auto plain = NodeCore::Create(config, &clock);
  ASSERT_TRUE(plain.ok());
  auto plain_worker = (*plain)->NewWorker();
  ASSERT_TRUE(plain_worker.ok());
  TestJob job(1, 40, 4, 1);
  ASSERT_TRUE((*plain)->Submit(&job).ok());
  clock.AdvanceMicros(200);  // the batching wait
  RunReady(**plain, **plain_worker);
  ASSERT_TRUE(job.status.has_value() && job.status->ok());
  const StatsWindow none = (*plain)->CloseWindow();
  EXPECT_TRUE(none.answers.empty());
  EXPECT_EQ(none.kv_reuse.total(), 0);
}

TEST(AnswerReservoir, KeepsAUniformSampleOfAtMostItsCapacity) {
  AnswerReservoir r(1000, /*seed=*/7);
  constexpr int kN = 100'000;
  for (int i = 0; i < kN; ++i) r.Add(AnswerSample{.latency_us = i});
  const std::vector<AnswerSample> sample = r.Take();
  ASSERT_EQ(sample.size(), 1000u);
  // Uniform over the stream: the mean is within 5 sigma of the stream's, and about half the
  // sample comes from each half of it (a reservoir that kept the first or last 1000 fails both).
  double sum = 0;
  int first_half = 0;
  for (const AnswerSample& a : sample) {
    sum += static_cast<double>(a.latency_us);
    first_half += a.latency_us < kN / 2;
  }
  const double sigma = kN / std::sqrt(12.0) / std::sqrt(1000.0);
  EXPECT_NEAR(sum / 1000, kN / 2.0, 5 * sigma);
  EXPECT_NEAR(first_half, 500, 5 * std::sqrt(250.0));
  // Take starts a new sample: fewer answers than the capacity are all kept.
  for (int i = 0; i < 10; ++i) r.Add(AnswerSample{.latency_us = i});
  const std::vector<AnswerSample> next = r.Take();
  ASSERT_EQ(next.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(next[i].latency_us, i);
}

// A subscriber's view of residency: user -> cached tokens, built from its messages.
struct View {
  std::map<int64_t, int64_t> users;
  std::vector<NodeStateUpdate> messages;
  void Apply(const NodeStateUpdate& u) {
    messages.push_back(u);
    if (u.full_snapshot) users.clear();
    for (const kv::ResidencyEvent& e : u.kv_events) {
      if (e.cached_tokens == 0) {
        users.erase(e.user_id);
      } else {
        users[e.user_id] = e.cached_tokens;
      }
    }
  }
};

std::map<int64_t, int64_t> Resident(NodeCore& core) {
  std::map<int64_t, int64_t> out;
  for (const kv::ResidencyEvent& e : core.engine().kv().ResidentUsers()) {
    out[e.user_id] = e.cached_tokens;
  }
  return out;
}

TEST(NodeCore, ANewSubscriberGetsASnapshotThenEveryChange) {
  FakeClock clock(0);
  auto core = MakeCore(2, &clock);
  ASSERT_TRUE(core);
  auto worker = core->NewWorker();
  ASSERT_TRUE(worker.ok());
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  std::mt19937_64 rng(seed);
  View early, late;
  const int early_id = core->Subscribe([&early](const NodeStateUpdate& u) { early.Apply(u); });
  ASSERT_EQ(early.messages.size(), 1u);
  EXPECT_TRUE(early.messages[0].full_snapshot);
  ASSERT_TRUE(early.messages[0].emb_summary.has_value());

  std::vector<std::unique_ptr<TestJob>> jobs;
  // The pool is small: later users evict earlier ones, so the views see removals too.
  for (int round = 0; round < 12; ++round) {
    for (int i = 0; i < 3; ++i) {
      const int64_t user = static_cast<int64_t>(rng() % 40);
      jobs.push_back(
          std::make_unique<TestJob>(user, 200 + static_cast<int>(rng() % 400), 8, rng()));
      ASSERT_TRUE(core->Submit(jobs.back().get()).ok());
    }
    clock.AdvanceMicros(300);
    RunReady(*core, **worker);
    if (round == 5) {
      // Subscribes with residency changes not yet published.
      core->Subscribe([&late](const NodeStateUpdate& u) { late.Apply(u); });
      ASSERT_FALSE(late.messages.empty());
      EXPECT_TRUE(late.messages[0].full_snapshot);
      EXPECT_EQ(late.users, Resident(*core)) << "seed " << seed;
      EXPECT_EQ(early.users, Resident(*core)) << "seed " << seed;
    }
    core->Publish(round % 4 == 0);
    EXPECT_EQ(early.users, Resident(*core)) << "round " << round << " seed " << seed;
    if (round >= 5) {
      EXPECT_EQ(late.users, Resident(*core)) << "round " << round;
    }
  }
  EXPECT_GT(core->engine().kv().stats().evicted_users + core->engine().kv().stats().trimmed_users,
            0)
      << "the test should see evictions";
  // Memory pressure in the load the router sees: the KV side is full and has been evicting.
  clock.AdvanceMicros(1'000'000);
  const StatsWindow window = core->CloseWindow();
  const NodeLoad load = core->Load();
  EXPECT_GT(load.kv_occupancy, 0.5);
  EXPECT_LE(load.kv_occupancy, 1.0);
  EXPECT_GT(window.kv.evicted_blocks, 0);
  EXPECT_NEAR(load.kv_eviction_rate,
              window.kv.evicted_blocks / window.seconds() /
                  static_cast<double>(core->engine().kv().capacity_blocks()),
              1e-12);
  core->Publish(false);
  EXPECT_DOUBLE_EQ(late.messages.back().load.kv_occupancy, load.kv_occupancy);
  for (size_t i = 1; i < late.messages.size(); ++i) {
    EXPECT_FALSE(late.messages[i].full_snapshot);
    EXPECT_GT(late.messages[i].seq, late.messages[i - 1].seq);
  }
  core->Unsubscribe(early_id);
  const size_t before = early.messages.size();
  core->Publish(false);
  EXPECT_EQ(early.messages.size(), before);
}

// The simulator's node: payload-free storage, no forward, time from the caller between the two
// halves of a batch. Its caches decide exactly what the real node's caches decide.
TEST(NodeCore, APayloadFreeNodeKeepsTheSameCacheStatisticsAsARealOne) {
  FakeClock clock(0);
  auto real = MakeCore(4, &clock);
  config::Config sim_config = SmallConfig(4);
  sim_config.pool.backend = "none";
  auto sim = NodeCore::Create(sim_config, &clock);
  ASSERT_TRUE(real && sim.ok()) << sim.status();
  auto rw = real->NewWorker();
  auto sw = (*sim)->NewWorker();
  ASSERT_TRUE(rw.ok() && sw.ok());
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  std::mt19937_64 rng(seed);
  std::vector<std::unique_ptr<TestJob>> jobs;
  for (int round = 0; round < 25; ++round) {
    std::vector<QueuedJob*> a, b;
    for (int i = 0; i < 4; ++i) {
      const int64_t user = static_cast<int64_t>(rng() % 16);
      const int length = 60 + static_cast<int>(rng() % 300);
      const uint64_t s = rng();
      jobs.push_back(std::make_unique<TestJob>(user, length, 12, s));
      a.push_back(jobs.back().get());
      jobs.push_back(std::make_unique<TestJob>(user, length, 12, s));
      b.push_back(jobs.back().get());
    }
    if (round == 10) {
      real->SetTargetSplit(0.25);
      (*sim)->SetTargetSplit(0.25);
    }
    real->StepResize();
    (*sim)->StepResize();
    real->RunBatch(**rw, a);
    PreparedBatch batch = (*sim)->BeginBatch(b);
    ASSERT_EQ(batch.jobs.size(), 4u);
    clock.AdvanceMicros(700);  // the cost model's figure for this batch
    (*sim)->CompleteBatch(**sw, batch);
    for (int i = 0; i < 4; ++i) {
      const TestJob& x = *static_cast<TestJob*>(a[i]);
      const TestJob& y = *static_cast<TestJob*>(b[i]);
      ASSERT_TRUE(x.status.has_value() && x.status->ok());
      ASSERT_TRUE(y.status.has_value() && y.status->ok());
      EXPECT_EQ(x.output.cached_tokens, y.output.cached_tokens) << "round " << round;
      EXPECT_EQ(x.output.emb_hits, y.output.emb_hits) << "round " << round;
      EXPECT_EQ(x.output.kv_appended, y.output.kv_appended);
      EXPECT_EQ(y.output.compute_us, 700);
    }
  }
  const emb::EmbStats re = real->engine().emb().stats(), se = (*sim)->engine().emb().stats();
  const kv::KvStats rk = real->engine().kv().stats(), sk = (*sim)->engine().kv().stats();
  EXPECT_EQ(re.hits, se.hits);
  EXPECT_EQ(re.misses, se.misses);
  EXPECT_EQ(re.evictions, se.evictions);
  EXPECT_EQ(re.h2d_bytes, se.h2d_bytes);
  EXPECT_EQ(rk.hit_tokens, sk.hit_tokens);
  EXPECT_EQ(rk.evicted_blocks, sk.evicted_blocks);
  EXPECT_EQ(rk.appended_tokens, sk.appended_tokens);
  EXPECT_GT(rk.hit_tokens, 0);
  EXPECT_GT(rk.evicted_blocks + re.evictions, 0) << "the sequence should make the caches work";
  EXPECT_EQ(real->engine().pool().Snapshot().committed_split,
            (*sim)->engine().pool().Snapshot().committed_split);
}

// Everything a run's statistics say, flattened for comparison.
std::vector<double> Fingerprint(NodeCore& core, const std::vector<std::unique_ptr<TestJob>>& jobs) {
  std::vector<double> f;
  const StatsWindow w = core.CloseWindow();
  const NodeCounters& c = w.requests;
  for (int64_t v : {c.arrivals,
                    c.rejected,
                    c.completions,
                    c.failures,
                    c.deadline_exceeded,
                    c.batches,
                    c.batched_requests,
                    w.emb.lookups,
                    w.emb.hits,
                    w.emb.misses,
                    w.emb.h2d_bytes,
                    w.emb.evictions,
                    w.kv.requests,
                    w.kv.hit_tokens,
                    w.kv.recomputed_tokens,
                    w.kv.evicted_users,
                    w.pool.migration_bytes_done,
                    w.pool.migration_bytes_dropped,
                    w.latency_us.Count(),
                    w.latency_us.Max()}) {
    f.push_back(static_cast<double>(v));
  }
  f.push_back(w.latency_us.Quantile(0.5));
  f.push_back(w.latency_us.Quantile(0.99));
  f.push_back(w.committed_split);
  for (const auto& job : jobs) {
    f.push_back(job->status.has_value() ? job->status->raw_code() : -1);
    f.push_back(job->output.cached_tokens);
    f.push_back(job->output.emb_hits);
    f.push_back(static_cast<double>(job->output.queue_us));
    for (float s : job->scores()) f.push_back(s);
  }
  return f;
}

std::vector<double> RunSequence(uint64_t seed) {
  FakeClock clock(0);
  auto core = MakeCore(4, &clock);
  auto worker = core->NewWorker();
  EXPECT_TRUE(worker.ok());
  std::mt19937_64 rng(seed);
  std::vector<std::unique_ptr<TestJob>> jobs;
  for (int step = 0; step < 60; ++step) {
    const int64_t user = static_cast<int64_t>(rng() % 12);
    jobs.push_back(std::make_unique<TestJob>(user, 80 + static_cast<int>(rng() % 200), 6, rng()));
    if (rng() % 10 == 0) jobs.back()->deadline_us = clock.NowMicros() + 50;
    EXPECT_TRUE(core->Submit(jobs.back().get()).ok());
    clock.AdvanceMicros(static_cast<int64_t>(rng() % 150));
    if (step == 20) core->SetTargetSplit(0.3);
    if (step == 40) core->SetTargetSplit(0.7);
    core->StepResize();
    RunReady(*core, **worker);
  }
  clock.AdvanceMicros(1000);
  RunReady(*core, **worker);
  return Fingerprint(*core, jobs);
}

TEST(NodeCore, TheSameRequestSequenceGivesTheSameStatistics) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  const std::vector<double> first = RunSequence(seed);
  const std::vector<double> second = RunSequence(seed);
  ASSERT_EQ(first.size(), second.size());
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(first[i], second[i]) << "value " << i << ", seed " << seed;
  }
}

}  // namespace
}  // namespace helm::serve

namespace helm::serve {
namespace {

// A settled window whose answers all took `p99_us`.
StatsWindow SettledWindow(double split, int64_t p99_us) {
  StatsWindow w;
  w.committed_split = w.target_split = split;
  w.requests.completions = 500;
  w.latency_us.RecordN(p99_us, 500);
  return w;
}

TEST(NodeCore, TheControlLoopMovesTheSplitUnlessStaticOrFrozen) {
  FakeClock clock(0);
  config::Config config = SmallConfig(1);
  config.control.policy = "heuristic";
  auto core = NodeCore::Create(config, &clock);
  ASSERT_TRUE(core.ok()) << core.status();
  ASSERT_NE((*core)->controller(), nullptr);
  // The heuristic's first probe moves the target by one step.
  EXPECT_NEAR((*core)->Control(SettledWindow(0.5, 10000)), 0.5 + config.control.step, 1e-9);
  EXPECT_NEAR((*core)->engine().pool().Snapshot().target_split, 0.5 + config.control.step, 1e-6);
  // Frozen: nothing moves, whatever the window says.
  (*core)->FreezeControl(true);
  EXPECT_NEAR((*core)->Control(SettledWindow(0.55, 90000)), 0.5 + config.control.step, 1e-9);
  (*core)->FreezeControl(false);
  // Under "static" there is no controller: only SetTargetSplit moves the split.
  config.control.policy = "static";
  auto fixed = NodeCore::Create(config, &clock);
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ((*fixed)->controller(), nullptr);
  (*fixed)->SetTargetSplit(0.3);
  EXPECT_NEAR((*fixed)->Control(SettledWindow(0.3, 10000)), 0.3, 1e-6);
  // The oracle is the simulator's: a node refuses it, naming the key.
  config.control.policy = "oracle";
  auto oracle = NodeCore::Create(config, &clock);
  ASSERT_FALSE(oracle.ok());
  EXPECT_NE(oracle.status().message().find("control.policy"), std::string::npos);
}

TEST(NodeCore, ControlCountsDecisionsAndRecordsEachForTheAuditLog) {
  FakeClock clock(7'000'000);
  config::Config config = SmallConfig(1);
  config.control.policy = "heuristic";
  config.control.interval_ms = 250;
  auto core = NodeCore::Create(config, &clock);
  ASSERT_TRUE(core.ok()) << core.status();
  ControlStatus status = (*core)->control_status();
  EXPECT_EQ(status.policy, "heuristic");
  EXPECT_EQ(status.mode, "heuristic");
  EXPECT_EQ(status.interval_ms, 250);
  EXPECT_EQ(status.decisions, 0);
  EXPECT_FALSE(status.frozen);

  ControlDecision decision;
  const double moved = (*core)->Control(SettledWindow(0.5, 10000), &decision);
  EXPECT_TRUE(decision.decided);
  EXPECT_EQ(decision.time_us, 7'000'000);
  EXPECT_NEAR(decision.old_target, 0.5, 1e-9);
  EXPECT_NEAR(decision.new_target, moved, 1e-12);
  EXPECT_NEAR(decision.new_target, 0.5 + config.control.step, 1e-9);
  EXPECT_EQ(decision.mode, "heuristic");
  EXPECT_EQ((*core)->control_status().decisions, 1);
  // The probe made P99 clearly worse: undone, a reversal, counted in the status.
  (*core)->Control(SettledWindow(moved, 90000), &decision);
  EXPECT_NEAR(decision.old_target, moved, 1e-9);
  EXPECT_NEAR(decision.new_target, 0.5, 1e-9);
  status = (*core)->control_status();
  EXPECT_EQ(status.decisions, 2);
  EXPECT_EQ(status.reversals, 1);

  // Frozen: no decision, nothing counted, the record says so.
  (*core)->FreezeControl(true);
  EXPECT_TRUE((*core)->control_status().frozen);
  (*core)->Control(SettledWindow(0.5, 10000), &decision);
  EXPECT_FALSE(decision.decided);
  EXPECT_EQ((*core)->control_status().decisions, 2);
}

TEST(NodeCore, AnOperatorsSplitFreezesTheControllerUntilResumed) {
  FakeClock clock(0);
  config::Config config = SmallConfig(1);
  config.control.policy = "heuristic";
  auto core = NodeCore::Create(config, &clock);
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_NEAR((*core)->OverrideSplit(0.3), 0.3, 1e-6);
  EXPECT_TRUE((*core)->control_frozen());
  EXPECT_TRUE((*core)->control_status().frozen);
  // Whatever the windows say, the operator's split holds.
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR((*core)->Control(SettledWindow(0.3, 10000 * (i + 1))), 0.3, 1e-6);
  }
  EXPECT_EQ((*core)->control_status().decisions, 0);
  // Resumed: the controller decides from the operator's split.
  (*core)->FreezeControl(false);
  EXPECT_NEAR((*core)->Control(SettledWindow(0.3, 10000)), 0.3 + config.control.step, 1e-6);
  EXPECT_EQ((*core)->control_status().decisions, 1);
  // A plain SetTargetSplit (not an operator's override) leaves the controller running.
  (*core)->SetTargetSplit(0.6);
  EXPECT_FALSE((*core)->control_frozen());
}

TEST(NodeCore, TheStateFeedCarriesTheControllersStatus) {
  FakeClock clock(0);
  config::Config config = SmallConfig(1);
  config.control.policy = "heuristic";
  auto core = NodeCore::Create(config, &clock);
  ASSERT_TRUE(core.ok()) << core.status();
  std::vector<NodeStateUpdate> updates;
  (*core)->Subscribe([&updates](const NodeStateUpdate& u) { updates.push_back(u); });
  (*core)->Control(SettledWindow(0.5, 10000));
  (*core)->FreezeControl(true);
  (*core)->Publish(false);
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(updates[0].control.policy, "heuristic");
  EXPECT_EQ(updates[0].control.decisions, 0);
  EXPECT_FALSE(updates[0].control.frozen);
  EXPECT_EQ(updates[1].control.mode, "heuristic");
  EXPECT_EQ(updates[1].control.decisions, 1);
  EXPECT_TRUE(updates[1].control.frozen);
  // Without a controller the mode is "static" and nothing is ever decided.
  config.control.policy = "static";
  auto fixed = NodeCore::Create(config, &clock);
  ASSERT_TRUE(fixed.ok());
  ControlDecision decision;
  (*fixed)->Control(SettledWindow(0.5, 10000), &decision);
  EXPECT_FALSE(decision.decided);
  EXPECT_EQ((*fixed)->control_status().mode, "static");
  EXPECT_EQ((*fixed)->control_status().decisions, 0);
}

}  // namespace
}  // namespace helm::serve
