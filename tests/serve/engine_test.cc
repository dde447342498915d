// The engine end to end in one process (no network): KV reuse across a user's requests gives the
// scores of a cold full recompute, and moving the pool split (relocating cached K/V and EMB rows)
// leaves scores unchanged.
#include "helm/serve/engine.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace helm::serve {
namespace {

config::Config SmallConfig() {
  config::Config config;
  config.pool.bytes = int64_t{8} << 20;
  config.pool.chunk_bytes = int64_t{256} << 10;
  config.pool.backend = "cpu";
  config.pool.initial_split = 0.5;
  config.pool.r_min = 0.1;
  config.pool.r_max = 0.9;
  config.emb.num_items = 20000;
  config.model.kernels = "cpu";
  config.node.max_history = 1024;
  return config;
}

// A request's columns, and the RankInput view of them.
struct Request {
  int64_t user_id = 0;
  std::vector<int64_t> items;
  std::vector<int32_t> actions;
  std::vector<int64_t> timestamps_ms;
  std::vector<int64_t> candidates;
  RankInput input() const {
    RankInput in;
    in.user_id = user_id;
    in.history_item_ids = items;
    in.history_actions = actions;
    in.history_timestamps_ms = timestamps_ms;
    in.candidate_item_ids = candidates;
    in.top_k = 0;  // all candidates, in request order
    return in;
  }
};

// A user's history of `length` events, deterministic for (user, i): a longer call extends a
// shorter one.
Request MakeRequest(int64_t user, int length, int candidates) {
  Request request;
  request.user_id = user;
  for (int i = 0; i < length; ++i) {
    request.items.push_back((user * 7919 + i * 104729) % 20000);
    request.actions.push_back(static_cast<int32_t>((user + i) % 8));
    request.timestamps_ms.push_back(1'700'000'000'000 + user * 1000 + int64_t{i} * 45'000);
  }
  for (int c = 0; c < candidates; ++c) request.candidates.push_back((user * 31 + c * 613) % 20000);
  return request;
}

struct Ranked {
  std::vector<float> scores;
  RankOutput stats;
};

Ranked Rank(const Engine& engine, Worker& worker, const Request& request) {
  Ranked out;
  const absl::Status status = engine.Rank(worker, request.input(), &out.stats);
  EXPECT_TRUE(status.ok()) << status;
  for (const ScoredItem& item : out.stats.items) out.scores.push_back(item.score);
  return out;
}

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const float tolerance = 1e-5f * std::max(1.0f, std::abs(want[i]));
    EXPECT_NEAR(got[i], want[i], tolerance) << "candidate " << i;
  }
}

TEST(Engine, AWorkersWarmUpForwardTouchesNoCacheAndChangesNoScore) {
  config::Config config = SmallConfig();
  config.node.warmup_history = 0;  // this engine's workers start cold
  auto cold = Engine::Create(config);
  ASSERT_TRUE(cold.ok()) << cold.status();
  auto cold_worker = (*cold)->NewWorker();
  ASSERT_TRUE(cold_worker.ok()) << cold_worker.status();
  config.node.warmup_history = 700;
  config.node.warmup_candidates = 300;
  auto warm = Engine::Create(config);
  ASSERT_TRUE(warm.ok()) << warm.status();
  const emb::EmbStats emb_before = (*warm)->emb().stats();
  const kv::KvStats kv_before = (*warm)->kv().stats();
  auto warm_worker = (*warm)->NewWorker();
  ASSERT_TRUE(warm_worker.ok()) << warm_worker.status();
  // Nothing a request can see moved: no lookups, no leases, nothing resident.
  EXPECT_EQ((*warm)->emb().stats().lookups, emb_before.lookups);
  EXPECT_EQ((*warm)->emb().resident_rows(), 0);
  EXPECT_EQ((*warm)->kv().stats().requests, kv_before.requests);
  EXPECT_EQ((*warm)->kv().stats().appended_tokens, 0);
  // The same request scores the same on the warmed worker as on a cold one.
  const Request request = MakeRequest(3, 200, 40);
  const Ranked a = Rank(**cold, **cold_worker, request);
  const Ranked b = Rank(**warm, **warm_worker, request);
  ExpectClose(b.scores, a.scores);
  EXPECT_EQ(b.stats.cached_tokens, 0);
  // A warm-up larger than the node takes is capped, not refused.
  config.node.warmup_history = 1 << 20;
  auto capped = Engine::Create(config);
  ASSERT_TRUE(capped.ok()) << capped.status();
  EXPECT_TRUE((*capped)->NewWorker().ok());
}

TEST(Engine, ColdPartlyCachedAndFullyCachedUsersScoreAlike) {
  auto cold_engine = Engine::Create(SmallConfig());
  ASSERT_TRUE(cold_engine.ok()) << cold_engine.status();
  auto cold_worker = (*cold_engine)->NewWorker();
  ASSERT_TRUE(cold_worker.ok());

  auto engine = Engine::Create(SmallConfig());
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto worker = (*engine)->NewWorker();
  ASSERT_TRUE(worker.ok());

  for (int64_t user : {3, 11}) {
    // Split points inside a block and on a block boundary (tokens_per_block 16).
    for (const auto& [first, second] : {std::pair{101, 333}, std::pair{160, 192}}) {
      const int64_t u = user * 100 + first;
      const Ranked full = Rank(**cold_engine, **cold_worker, MakeRequest(u, second, 40));
      ASSERT_EQ(full.stats.cached_tokens, 0);
      ASSERT_EQ(full.stats.computed_tokens, second);

      const Ranked prefix = Rank(**engine, **worker, MakeRequest(u, first, 40));
      EXPECT_EQ(prefix.stats.cached_tokens, 0);
      const Ranked partly = Rank(**engine, **worker, MakeRequest(u, second, 40));
      EXPECT_GT(partly.stats.cached_tokens, 0);
      EXPECT_LE(partly.stats.cached_tokens, first);
      EXPECT_EQ(partly.stats.cached_tokens + partly.stats.computed_tokens, second);
      ExpectClose(partly.scores, full.scores);

      const Ranked fully = Rank(**engine, **worker, MakeRequest(u, second, 40));
      EXPECT_EQ(fully.stats.cached_tokens, second);
      EXPECT_EQ(fully.stats.computed_tokens, 0);
      ExpectClose(fully.scores, full.scores);
    }
  }
}

TEST(Engine, ChangedHistoryIsAMissNotAWrongReuse) {
  auto engine = Engine::Create(SmallConfig());
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto worker = (*engine)->NewWorker();
  ASSERT_TRUE(worker.ok());
  Request request = MakeRequest(5, 200, 20);
  Rank(**engine, **worker, request);
  request.items[3] = (request.items[3] + 1) % 20000;  // rewrite the past
  const Ranked changed = Rank(**engine, **worker, request);
  EXPECT_EQ(changed.stats.cached_tokens, 0);

  auto fresh = Engine::Create(SmallConfig());
  ASSERT_TRUE(fresh.ok());
  auto fresh_worker = (*fresh)->NewWorker();
  ASSERT_TRUE(fresh_worker.ok());
  ExpectClose(changed.scores, Rank(**fresh, **fresh_worker, request).scores);
}

TEST(Engine, MovingTheSplitLeavesScoresUnchanged) {
  auto engine = Engine::Create(SmallConfig());
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto worker = (*engine)->NewWorker();
  ASSERT_TRUE(worker.ok());
  pool::Pool& pool = (*engine)->pool();

  std::vector<Request> requests;
  std::vector<std::vector<float>> before;
  for (int64_t user = 0; user < 12; ++user) {
    requests.push_back(MakeRequest(user, 150 + 37 * static_cast<int>(user), 32));
    before.push_back(Rank(**engine, **worker, requests.back()).scores);
  }
  // Shrink the KV side (relocating surviving blocks), then shrink the EMB side.
  for (double target : {0.8, 0.2}) {
    pool.SetTarget(target);
    for (int step = 0; step < 10000 && !pool.Step().idle; ++step) {
    }
    ASSERT_NEAR(pool.Snapshot().committed_split, target, 0.05);
    ASSERT_TRUE(pool.CheckInvariants().ok());
    for (size_t i = 0; i < requests.size(); ++i) {
      const Ranked after = Rank(**engine, **worker, requests[i]);
      EXPECT_EQ(after.stats.cached_tokens + after.stats.computed_tokens,
                static_cast<int32_t>(requests[i].items.size()));
      ExpectClose(after.scores, before[i]);
    }
  }
  EXPECT_GT(pool.stats().migration_bytes_done + pool.stats().migration_bytes_dropped, 0);
}

}  // namespace
}  // namespace helm::serve
