// The node's reuse-time tracker: a user's K/V reuse time is the tokens other requests asked for
// since its last one, weighted by the history it had; EMB ids are sampled and weighted back up.
#include "helm/serve/reuse_tracker.h"

#include <vector>

#include "gtest/gtest.h"

namespace helm::serve {
namespace {

TEST(ReuseTracker, AUsersReuseTimeIsTheTokensRequestedSinceItsLastRequest) {
  ReuseTracker t(1.0, /*salt=*/0);
  const RequestReuse a = t.Observe(/*user_id=*/1, 100, 0, {});
  EXPECT_EQ(a.kv_reuse_tokens, -1) << "first request: cold";
  t.Observe(2, 50, 0, {});
  t.Observe(3, 30, 0, {});
  const RequestReuse again = t.Observe(1, 110, 0, {});
  EXPECT_EQ(again.kv_reuse_tokens, 80);
  EXPECT_EQ(again.kv_prefix_tokens, 100);
  const RequestReuse shorter = t.Observe(2, 20, 0, {});  // a history that shrank: only 20 reusable
  EXPECT_EQ(shorter.kv_reuse_tokens, 30 + 110);
  EXPECT_EQ(shorter.kv_prefix_tokens, 20);
  ReuseHistogram emb, kv;
  t.Take(&emb, &kv);
  // Cold: 100 + 50 + 30 first tokens and user 1's 10 new ones; warm: 100 at 80, 20 at 140.
  EXPECT_DOUBLE_EQ(kv.cold(), 190);
  EXPECT_DOUBLE_EQ(kv.total(), 310);
  EXPECT_NEAR(kv.ShareAbove(100), (190.0 + 20) / 310, 1e-12);
  // Take starts afresh, but users are remembered.
  EXPECT_EQ(t.Observe(3, 30, 0, {}).kv_reuse_tokens, 110 + 20);
  t.Take(&emb, &kv);
  EXPECT_DOUBLE_EQ(kv.total(), 30);
  EXPECT_DOUBLE_EQ(kv.cold(), 0);
}

TEST(ReuseTracker, IdReuseTimesCountEveryIdLookedUp) {
  ReuseTracker all(1.0, 0);
  const std::vector<int64_t> first = {1, 2, 3}, second = {3, 4, 1};
  all.Observe(7, 0, 0, first);
  all.Observe(8, 0, 0, second);
  ReuseHistogram emb, kv;
  all.Take(&emb, &kv);
  // 1, 2, 3, 4 cold; 3 again after 3 lookups, 1 after 5.
  EXPECT_DOUBLE_EQ(emb.cold(), 4);
  EXPECT_DOUBLE_EQ(emb.total(), 6);
  EXPECT_NEAR(emb.ShareAbove(4), 5.0 / 6, 1e-12);

  // A sixteenth of the ids, weighted 16: about the same totals over many ids.
  ReuseTracker sampled(1.0 / 16, 0);
  std::vector<int64_t> ids;
  for (int64_t id = 0; id < 20'000; ++id) ids.push_back(id);
  sampled.Observe(1, 0, 0, ids);
  sampled.Observe(2, 0, 0, ids);
  sampled.Take(&emb, &kv);
  EXPECT_NEAR(emb.total(), 40'000, 40'000 * 0.1);
  EXPECT_NEAR(emb.cold() / emb.total(), 0.5, 1e-12);
  // Every reuse is 20000 lookups long.
  EXPECT_DOUBLE_EQ(emb.ShareAbove(19'000), 1.0);
  EXPECT_NEAR(emb.ShareAbove(25'000), 0.5, 1e-12);
}

TEST(ReuseTracker, AHistoryThatStartsElsewhereReusesNothing) {
  ReuseTracker t(1.0, 0);
  t.Observe(1, 100, /*history_start=*/7, {});
  const RequestReuse cut = t.Observe(1, 80, /*history_start=*/8, {});  // the oldest events dropped
  EXPECT_EQ(cut.kv_prefix_tokens, 0);
  EXPECT_EQ(t.Observe(1, 90, 8, {}).kv_prefix_tokens, 80);
}

// Each miniature KV cache reports the prefix it reused, once the log is replayed: a cache of 2
// blocks of 16 tokens keeps one user of 20 tokens, one of 8 blocks keeps both. A batch's sums are
// its requests'. What a replay found is kept for one more replay, not two.
TEST(ReuseTracker, EachMiniatureKvCacheReportsTheRequestsReuseOnceReplayed) {
  ReuseTracker t(1.0, 0);
  kv::KvOptions options;
  options.tokens_per_block = 16;
  const std::vector<int64_t> blocks = {2, 8};
  t.ShadowKv(options, /*attention_ratio=*/0.01, blocks);
  t.Observe(1, 20, 1, {}, /*batch=*/0);
  t.Observe(2, 20, 2, {}, /*batch=*/0);
  RequestReuse again = t.Observe(1, 30, 1, {}, /*batch=*/1);
  RequestReuse mate = t.Observe(2, 40, 2, {}, /*batch=*/1);
  BatchShadowSums sums;
  EXPECT_FALSE(t.FillShadowReuse(&again, &sums)) << "not replayed yet";
  t.Replay();
  ASSERT_TRUE(t.FillShadowReuse(&again, &sums));
  EXPECT_EQ(again.kv_shadow_prefix[0], 0);
  EXPECT_EQ(again.kv_shadow_prefix[1], 20);
  EXPECT_EQ(again.kv_shadow_prefix[2], 0) << "no third cache";
  ASSERT_TRUE(t.FillShadowReuse(&mate, &sums));
  EXPECT_EQ(mate.kv_shadow_prefix[1], 20);
  EXPECT_FLOAT_EQ(sums.tokens[1], 40);
  EXPECT_FLOAT_EQ(sums.pairs[1], 2 * 20 * 19 / 2);
  EXPECT_FLOAT_EQ(sums.tokens[0], mate.kv_shadow_prefix[0]);
  t.Replay();
  EXPECT_TRUE(t.FillShadowReuse(&again, &sums)) << "kept for the next window's answers";
  t.Replay();
  EXPECT_FALSE(t.FillShadowReuse(&again, &sums));
}

}  // namespace
}  // namespace helm::serve
