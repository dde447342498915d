#include "helm/kv/kv_shadow.h"

#include <random>

#include "gtest/gtest.h"
#include "helm/common/hash.h"
#include "helm/kv/kv_cache.h"
#include "kv/kv_test_util.h"

namespace helm::kv {
namespace {

using testutil::UserHistory;

constexpr int kTpb = 4;
constexpr double kAttentionRatio = 32.0 / 1280.0;

struct Case {
  std::string eviction;
  bool allow_trim;
};

// The same serial stream of requests through a real cache and a shadow of its capacity: every
// request reuses the same prefix, and both hold the same number of blocks after it. Users'
// histories grow, are cut by their oldest quarter now and then (the cached prefix no longer
// matches), and some requests send a shorter history than the cache holds.
TEST(KvShadow, ReusesExactlyWhatTheCacheReusesOnASerialStream) {
  for (const Case& c : {Case{"cost_aware", true}, Case{"cost_aware", false}, Case{"lru", false}}) {
    SCOPED_TRACE(c.eviction + (c.allow_trim ? " with trimming" : ""));
    const KvOptions ko = testutil::Eviction(kTpb, c.eviction, c.allow_trim);
    auto pool = *pool::Pool::Create(testutil::SixteenChunks(4));  // 128 blocks of 512 B a chunk
    const testutil::BlockShape shape{.num_layers = 2, .num_heads = 1, .d_qk = 8, .d_v = 8};
    auto cache = *KvCache::Create(testutil::CacheOptions(ko, shape, kAttentionRatio), pool.get());
    ASSERT_EQ(cache->capacity_blocks(), 512);
    KvShadow shadow(ko, kAttentionRatio, cache->capacity_blocks());

    std::mt19937_64 rng(7);
    std::vector<UserHistory> users(60);
    int64_t stamp = 0, reused = 0, trimmed_or_evicted = 0;
    for (int i = 0; i < 4000; ++i) {
      // Skewed popularity: user u with weight 1 / (u + 1).
      const int64_t u = static_cast<int64_t>(std::floor(std::exp(
                            std::uniform_real_distribution<double>(0, std::log(61.0))(rng)))) -
                        1;
      UserHistory& h = users[static_cast<size_t>(u)];
      if (h.size() > 40 && rng() % 20 == 0) {  // the oldest quarter goes: a new start
        UserHistory cut;
        for (int64_t t = h.size() / 4; t < h.size(); ++t) {
          cut.Append(h.items[t], h.actions[t], h.timestamps[t]);
        }
        h = cut;
      }
      const int64_t grow = static_cast<int64_t>(rng() % 24);
      for (int64_t t = 0; t < grow; ++t, ++stamp) h.Append(u * 100000 + stamp, 0, stamp);
      UserHistory sent = h;
      if (rng() % 10 == 0 && sent.size() > 8) {  // a shorter history than the cache may hold
        sent.items.resize(sent.items.size() / 2);
        sent.actions.resize(sent.items.size());
        sent.timestamps.resize(sent.items.size());
      }
      if (sent.size() == 0) continue;

      auto lease = cache->Acquire(u, sent.View());
      ASSERT_TRUE(lease.ok()) << lease.status();
      const int64_t prefix = lease->cached_tokens();
      if (prefix < sent.size() && lease->Reserve(sent.size() - prefix).ok()) {
        ASSERT_TRUE(lease->Commit().ok());
      }
      lease->Release();
      const int64_t shadow_prefix = shadow.Request(
          u, sent.size(),
          HistoryStartFingerprint(sent.items[0], sent.actions[0], sent.timestamps[0]));
      ASSERT_EQ(shadow_prefix, prefix) << "request " << i << " of user " << u;
      ASSERT_EQ(shadow.used_blocks(), cache->used_blocks()) << "request " << i;
      reused += prefix;
      trimmed_or_evicted = cache->stats().evicted_blocks;
    }
    // The stream exercised both reuse and eviction.
    EXPECT_GT(reused, 10000);
    EXPECT_GT(trimmed_or_evicted, 1000);
    EXPECT_EQ(shadow.num_users(), cache->num_users());
  }
}

// A history larger than the shadow is not kept, and the room made for it is lost (as in the cache).
TEST(KvShadow, AHistoryLargerThanTheShadowIsNotKept) {
  KvOptions ko;
  ko.tokens_per_block = kTpb;
  KvShadow shadow(ko, kAttentionRatio, /*capacity_blocks=*/4);
  EXPECT_EQ(shadow.Request(1, 12, 5), 0);
  EXPECT_EQ(shadow.Request(1, 16, 5), 12);
  EXPECT_EQ(shadow.used_blocks(), 4);
  EXPECT_EQ(shadow.Request(1, 16, 5), 16);
  EXPECT_EQ(shadow.Request(1, 16, 6), 0);  // another start
  EXPECT_EQ(shadow.Request(2, 20, 9), 0);  // does not fit, after user 1 was evicted for it
  EXPECT_EQ(shadow.used_blocks(), 0);
  EXPECT_EQ(shadow.num_users(), 0);
  EXPECT_EQ(shadow.Request(1, 16, 6), 0);
}

}  // namespace
}  // namespace helm::kv
