// The predictive controller's model (predict.h) and the controller: a window replayed at other
// splits from its answers and both caches' reuse times, and moves toward the best predicted split.
#include "helm/control/predict.h"

#include <algorithm>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "control/window_support.h"
#include "gtest/gtest.h"
#include "helm/control/features.h"
#include "helm/control/helm_controller.h"
#include "helm/control/policy.h"
#include "helm/control/split_controller.h"

namespace helm::control {
namespace {

// A pool of 1M "bytes" where an EMB row and a K/V token take one byte each: at split r the EMB
// cache holds r x 1M rows and the KV cache (1 - r) x 1M tokens. One worker.
FeatureScales UnitScales() {
  FeatureScales s;
  s.pool_bytes = 1e6;
  s.emb_row_bytes = 1;
  s.kv_token_bytes = 1;
  s.workers = 1;
  return s;
}

// A window at split 0.9 with two kinds of answer. 980 search answers: 5 ms (1 in the queue), 2
// EMB misses of 4 lookups each (about the LRU miss ratio the EMB reuse times below give at 0.9). 20
// feed answers: 50 ms (1 in the queue), each recomputing a 4000-token history its user asked for
// again after 300k other tokens: a KV cache of 300k tokens or more would have held it. EMB reuse
// times spread evenly up to 2M lookups (LRU's miss ratio falls as the cache grows); K/V reuse times
// all 300k. A miss costs 0.1 ms, a computed row 5 us: the worker was busy for 0.596 of the window.
// The window's time per row alone (no attention term).
RecomputePrice Price(const serve::StatsWindow& w) { return PriceByRatio(w, 0); }

struct Scenario {
  serve::StatsWindow window;
  ReuseHistogram emb, kv;
};

Scenario FeedBehindACliff() {
  Scenario s;
  serve::StatsWindow& w = s.window;
  w = SteadyWindow(0.9, 0, 0);
  w.requests.arrivals = w.requests.completions = 1000;
  w.emb.misses = 2 * 980;
  w.emb.fetch_ns = w.emb.misses * 100'000;  // 0.1 ms a miss
  w.requests.computed_rows = 20 * 4000;
  w.requests.compute_us = w.emb.fetch_ns / 1000 + w.requests.computed_rows * 5;  // 5 us a row
  for (int i = 0; i < 1000; ++i) {
    const bool feed = i % 50 == 0;
    serve::AnswerSample a{.latency_us = feed ? 50'000 : 5000, .queue_us = 1000};
    if (feed) {
      a.history_tokens = 4000;
      a.reuse = {.kv_reuse_tokens = 300'000, .kv_prefix_tokens = 4000};
    } else {
      a.emb_lookups = 4;
      a.emb_misses = 2;
    }
    w.latency_us.Record(a.latency_us);
    w.answers.push_back(a);
  }
  for (int t = 1; t <= 1000; ++t) s.emb.Add(t * 2000, 1);
  s.kv.Add(300'000, 1);
  return s;
}

// The scenario's window at each split, on UnitScales at the window's own time per row.
std::vector<SplitPrediction> Predict(const Scenario& s, const std::vector<double>& splits) {
  return PredictSplits(s.window, s.emb, s.kv, UnitScales(), Price(s.window), splits);
}

// QuantileOf is element ceil(q n) - 1 of the sorted values, whichever way it selects it (for high
// quantiles of many values a threshold from a sample, which many ties defeat, else a heap of the
// largest; nth_element otherwise), ties and all.
TEST(QuantileOf, IsTheElementOfItsRankInSortedOrder) {
  std::mt19937_64 rng(::testing::UnitTest::GetInstance()->random_seed());
  for (const size_t n : {1, 2, 7, 100, 1000, 4096, 5000}) {
    for (const double q : {0.0, 0.5, 0.9, 0.99, 0.999, 1.0}) {
      for (const int distinct : {3, 1 << 30}) {  // many ties, or almost none
        std::uniform_int_distribution<int> value(0, distinct);
        std::vector<double> v(n);
        for (double& x : v) x = value(rng);
        std::vector<double> sorted = v;
        std::sort(sorted.begin(), sorted.end());
        const size_t rank =
            std::min(n - 1, static_cast<size_t>(std::max(1.0, std::ceil(q * n))) - 1);
        EXPECT_EQ(QuantileOf(v, q), sorted[rank]) << "n " << n << " q " << q;
        std::sort(v.begin(), v.end());
        EXPECT_EQ(v, sorted) << "reordered, nothing lost";
      }
    }
  }
}

TEST(PredictSplits, TheCurrentSplitIsTheWindowAsItWasAndACliffIsSeenAcross) {
  const Scenario s = FeedBehindACliff();
  const std::vector<double> splits = {0.9, 0.8, 0.6, 0.5};
  const std::vector<SplitPrediction> p = Predict(s, splits);
  ASSERT_EQ(p.size(), 4u);
  // At its own split nothing changes: the sample's P99 (50 ms) and the worker's utilisation.
  EXPECT_DOUBLE_EQ(p[0].p99_us, 50'000);
  EXPECT_NEAR(p[0].utilisation, s.window.requests.compute_us / 1e6, 1e-12);
  // 0.8 and 0.6: K/V of 200k and 400k tokens. Below 300k the feed's histories still do not fit, so
  // the P99 stays the feed's; the EMB misses grow and so does the worker's utilisation.
  EXPECT_GE(p[1].p99_us, 50'000);
  EXPECT_GT(p[1].utilisation, p[0].utilisation);
  // At 400k and more they fit: 4000 tokens x 5 us = 20 ms off each feed answer. The search answers
  // wait and fetch more, but the P99 falls to about 30 ms.
  EXPECT_LT(p[2].p99_us, 35'000);
  EXPECT_GT(p[2].p99_us, 29'000);
  EXPECT_LT(p[3].p99_us, 35'000);
  EXPECT_TRUE(PredictSplits(serve::StatsWindow(), s.emb, s.kv, UnitScales(), {}, splits).empty());

  // In batches of four, an answer also takes its three batch-mates' changes: where the feed's
  // recomputes are spared, every answer is faster, and at the current split nothing changes.
  Scenario batched = FeedBehindACliff();
  batched.window.requests.batches = 250;
  batched.window.requests.batched_requests = 1000;
  const std::vector<SplitPrediction> b = PredictSplits(batched.window, batched.emb, batched.kv,
                                                       UnitScales(), Price(batched.window), splits);
  EXPECT_DOUBLE_EQ(b[0].p99_us, p[0].p99_us);
  EXPECT_LT(b[2].p99_us, p[2].p99_us);
}

// With miniature KV caches, the KV side is theirs, interpolated between their splits: here the
// caches at 0.5 held the feed's histories and those at 0.7 and 0.9 did not, while the reuse times
// alone say every history is held at every split.
TEST(PredictSplits, TheMiniatureKvCachesSayWhatEachAnswerWouldReuse) {
  Scenario s = FeedBehindACliff();
  s.kv = ReuseHistogram();
  s.kv.Add(10, 1);
  s.window.kv_shadow_splits = {0.5, 0.7, 0.9};
  for (serve::AnswerSample& a : s.window.answers) {
    if (a.history_tokens > 0) a.reuse.kv_shadow_prefix = {4000, 0, 0};
  }
  const std::vector<double> splits = {0.9, 0.8, 0.6, 0.5, 0.3};
  const std::vector<SplitPrediction> p = Predict(s, splits);
  ASSERT_EQ(p.size(), 5u);
  EXPECT_DOUBLE_EQ(p[0].p99_us, 50'000);
  EXPECT_GE(p[1].p99_us, 50'000);
  // 0.6: half way to the cache that held them, 2000 tokens (10 ms) spared; 0.5 and below: 20 ms.
  EXPECT_NEAR(p[2].p99_us, 40'000, 3'000);
  EXPECT_NEAR(p[3].p99_us, 30'000, 3'000);
  EXPECT_NEAR(p[4].p99_us, 30'000, 5'000);
}

// A recomputed prefix is priced by its work: its token at position t costs 1 + ratio x t units,
// at the window's time per unit (PriceByRatio). With ratio 0.001 the feed's 4000-token recomputes
// are 20 x 11998 units for the window's 400 ms of rows, so the first 2000 tokens (3999 units) are
// worth 6.7 ms, not the 10 ms that 2000 rows at the window's 5 us a row would say.
TEST(PredictSplits, ARecomputedPrefixIsPricedByItsAttentionWork) {
  Scenario s = FeedBehindACliff();
  s.window.requests.computed_attention = 20 * (4000 * 3999 / 2);
  s.window.kv_shadow_splits = {0.5, 0.9};
  for (serve::AnswerSample& a : s.window.answers) {
    if (a.history_tokens > 0) a.reuse.kv_shadow_prefix = {2000, 0};
  }
  FeatureScales scales = UnitScales();
  scales.attention_ratio = 0.001;
  const std::vector<double> splits = {0.9, 0.5};
  const std::vector<SplitPrediction> p =
      PredictSplits(s.window, s.emb, s.kv, scales, PriceByRatio(s.window, 0.001), splits);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_DOUBLE_EQ(p[0].p99_us, 50'000);
  EXPECT_NEAR(p[1].p99_us, 50'000 - 6'667, 1'500);
}

// A batch takes its members' time together: a feed answer whose own history no cache would hold
// still waits for its batch-mate's, which the cache at 0.5 would.
TEST(PredictSplits, AnAnswerTakesItsBatchsChange) {
  Scenario s = FeedBehindACliff();
  s.window.kv_shadow_splits = {0.5, 0.9};
  for (serve::AnswerSample& a : s.window.answers) {
    a.batch.size = 1;
    if (a.history_tokens > 0) {
      a.batch.size = 2;
      a.batch.shadow.tokens = {4000, 0};
      a.batch.shadow.pairs = {4000.0f * 3999 / 2, 0};
    }
  }
  const std::vector<double> splits = {0.9, 0.5};
  const std::vector<SplitPrediction> p = Predict(s, splits);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_DOUBLE_EQ(p[0].p99_us, 50'000);
  EXPECT_NEAR(p[1].p99_us, 30'000, 2'000);
  // Without the batches' totals, only its own: nothing changes for the feed.
  for (serve::AnswerSample& a : s.window.answers) a.batch = serve::BatchTotals();
  EXPECT_GE(Predict(s, splits)[1].p99_us, 50'000);
}

// A caller's buffers carry nothing from one window to the next: windows of other sizes, with and
// without miniature caches and batches, predicted one after the other in the same buffers give
// exactly what each gives in arrays of its own.
TEST(PredictSplits, ReusedBuffersCarryNothingOver) {
  Scenario batched = FeedBehindACliff();
  batched.window.kv_shadow_splits = {0.5, 0.7, 0.9};
  for (serve::AnswerSample& a : batched.window.answers) {
    a.batch.size = 1;
    if (a.history_tokens > 0) {
      a.reuse.kv_shadow_prefix = {4000, 0, 0};
      a.batch.size = 2;
      a.batch.shadow.tokens = {4000, 0, 0};
      a.batch.shadow.pairs = {4000.0f * 3999 / 2, 0, 0};
    }
  }
  Scenario plain = FeedBehindACliff();
  plain.window.answers.resize(500);
  const std::vector<double> splits = {0.9, 0.8, 0.6, 0.5, 0.3};
  PredictBuffers buffers;
  for (const Scenario* s : {&batched, &plain, &batched, &plain}) {
    const RecomputePrice price = Price(s->window);
    const std::vector<SplitPrediction> fresh =
        PredictSplits(s->window, s->emb, s->kv, UnitScales(), price, splits);
    const std::vector<SplitPrediction> reused =
        PredictSplits(s->window, s->emb, s->kv, UnitScales(), price, splits, &buffers);
    ASSERT_EQ(reused.size(), fresh.size());
    for (size_t i = 0; i < fresh.size(); ++i) {
      EXPECT_EQ(reused[i].p99_us, fresh[i].p99_us) << "split " << splits[i];
      EXPECT_EQ(reused[i].utilisation, fresh[i].utilisation) << "split " << splits[i];
    }
  }
  // The two windows predict differently, so a buffer that leaked would show.
  EXPECT_NE(
      PredictSplits(batched.window, batched.emb, batched.kv, UnitScales(), Price(batched.window),
                    splits)[3]
          .p99_us,
      PredictSplits(plain.window, plain.emb, plain.kv, UnitScales(), Price(plain.window), splits)[3]
          .p99_us);
}

// Where the EMB curve says almost nothing misses at the current split, a smaller cache adds at most
// an answer's lookups as misses: the change of the miss ratio counts, not a ratio of two miss
// ratios (which here would multiply every miss by ten million).
TEST(PredictSplits, AnAnswerMissesAtMostItsLookups) {
  Scenario s = FeedBehindACliff();
  s.emb = ReuseHistogram();
  s.emb.Add(1000, 1);
  s.emb.AddCold(1e-7);
  for (serve::AnswerSample& a : s.window.answers) a.reuse.kv_reuse_tokens = -1;  // no K/V reuse
  const std::vector<double> splits = {0.9, 0.0005};
  const std::vector<SplitPrediction> p = Predict(s, splits);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_DOUBLE_EQ(p[0].p99_us, 50'000);
  // Every search answer misses its other 2 lookups (0.2 ms more), the feed's P99 barely moves.
  EXPECT_GT(p[1].p99_us, 50'000);
  EXPECT_LT(p[1].p99_us, 60'000);
}

// A reused token is an embedding not looked up: it spares its share of the answer's misses, at
// the window's fetch time per miss.
TEST(PredictSplits, AReusedTokenSparesItsShareOfTheAnswersMisses) {
  Scenario s = FeedBehindACliff();
  s.emb = ReuseHistogram();
  s.emb.AddCold(1);  // the same miss ratio at every size: no EMB change of its own
  s.window.kv_shadow_splits = {0.5, 0.9};
  for (serve::AnswerSample& a : s.window.answers) {
    a.queue_us = 0;  // no queueing: the latency is the service time and its change
    if (a.history_tokens > 0) a.reuse.kv_shadow_prefix = {4000, 0};
  }
  const std::vector<double> splits = {0.9, 0.5};
  const auto at_half = [&] { return Predict(s, splits)[1].p99_us; };
  // 4000 tokens at 5 us a row.
  EXPECT_NEAR(at_half(), 50'000 - 20'000, 1e-6);
  for (serve::AnswerSample& a : s.window.answers) {
    if (a.history_tokens > 0) {
      a.emb_lookups = 4000;
      a.emb_misses = 40;
    }
  }
  // And 1% of those 4000 lookups missed, at 0.1 ms a miss.
  EXPECT_NEAR(at_half(), 50'000 - 20'000 - 4'000, 1e-6);
}

// The wait scales as an M/G/1 queue's mean wait, lambda E[S^2] / (2 (1 - rho)): sparing the
// longest services shortens it by more than their share of the mean. 980 answers served in 1 ms
// and 20 in 50 ms, all after 20 ms in the queue, over a 4 s window on one worker (rho 0.495); at
// 0.5 the 20 long ones reuse 8000 tokens (40 ms at 5 us a row).
TEST(PredictSplits, SparingTheLongestServicesShortensTheWaitByTheirSecondMoment) {
  serve::StatsWindow w = SteadyWindow(0.9, 1000, 0);
  w.end_us = 4'000'000;
  w.requests.compute_us = 980 * 1000 + 20 * 50'000;
  w.requests.computed_rows = w.requests.compute_us / 5;
  w.kv_shadow_splits = {0.5, 0.9};
  for (int i = 0; i < 1000; ++i) {
    const bool long_one = i % 50 == 0;
    serve::AnswerSample a{.latency_us = 20'000 + (long_one ? 50'000 : 1000), .queue_us = 20'000};
    if (long_one) a.reuse.kv_shadow_prefix = {8000, 0};
    w.answers.push_back(a);
  }
  const std::vector<double> splits = {0.9, 0.5};
  const std::vector<SplitPrediction> p =
      PredictSplits(w, ReuseHistogram(), ReuseHistogram(), UnitScales(), Price(w), splits);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_DOUBLE_EQ(p[0].p99_us, 70'000);
  // rho 0.495 -> 0.295; E[S^2] from (980 x 1 + 20 x 2500) to (980 x 1 + 20 x 100) ms^2.
  const double scale = (1 - 0.495) / (1 - 0.295) * (980.0 + 20 * 100) / (980.0 + 20 * 2500);
  EXPECT_NEAR(p[1].p99_us, 20'000 * scale + 10'000, 1e-6);
  // The mean service alone (rho / (1 - rho) x E[S]) would have said 20 ms x 0.254 + 10 ms.
  EXPECT_LT(p[1].p99_us, 20'000 * 0.2 + 10'000);
}

// A window at split 0.5 of 1000 search answers, 5 ms each (none of it in the queue), each
// missing 20 of its 40 EMB lookups at 0.1 ms a miss; the miniature EMB caches at 0.05 and 0.95
// missed `m005` and `m095` of the window's lookups.
serve::StatsWindow SearchWindow(double m005, double m095) {
  serve::StatsWindow w = SteadyWindow(0.5, 1000, 5000);
  w.emb.lookups = 40 * 1000;
  w.emb.misses = 20 * 1000;
  w.emb.fetch_ns = w.emb.misses * 100'000;
  w.requests.compute_us = w.emb.fetch_ns / 1000;
  w.answers.assign(
      1000,
      serve::AnswerSample{.latency_us = 5000, .queue_us = 0, .emb_lookups = 40, .emb_misses = 20});
  w.emb_shadow_splits = {0.05, 0.95};
  w.emb_shadow_miss_ratios = {m005, m095};
  return w;
}

// With miniature EMB caches their miss ratios, interpolated by split, say how the window's misses
// change; the reuse-time curve is not read.
TEST(PredictSplits, TheMiniatureEmbCachesSayHowTheMissesChange) {
  const serve::StatsWindow w = SearchWindow(0.6, 0.2);  // 0.4 at 0.5
  ReuseHistogram emb;  // every id's reuse time says no size would hit
  emb.AddCold(1);
  const std::vector<double> splits = {0.5, 0.95, 0.05, 0.275};
  const std::vector<SplitPrediction> p =
      PredictSplits(w, emb, ReuseHistogram(), UnitScales(), Price(w), splits);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_DOUBLE_EQ(p[0].p99_us, 5000);
  // 0.95: 40 x (0.2 - 0.4) = 8 misses fewer, 0.8 ms; 0.05: 8 more; 0.275: 4 more.
  EXPECT_NEAR(p[1].p99_us, 4200, 1e-6);
  EXPECT_NEAR(p[2].p99_us, 5800, 1e-6);
  EXPECT_NEAR(p[3].p99_us, 5400, 1e-6);
}

TEST(PredictiveController, MovesTowardTheBestPredictedSplitAndHoldsWithin) {
  ControlOptions o;
  o.policy = "predictive";
  pool::PoolOptions pool;
  pool.r_min = 0.05;
  pool.r_max = 0.95;
  const FeatureScales scales = UnitScales();
  auto c = CreateSplitController(o, pool, &scales);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->name(), "predictive");
  Scenario s = FeedBehindACliff();
  s.window.emb_reuse = s.emb;
  s.window.kv_reuse = s.kv;
  // The best split is across the cliff, more than max_move away: one max_move a window.
  EXPECT_NEAR((*c)->Decide(s.window), 0.9 - o.max_move, 1e-9);
  auto* predictive = static_cast<PredictiveController*>(c->get());
  EXPECT_LT(predictive->best_split(), 0.75);
  EXPECT_NE((*c)->LastDecisionJson().find("\"best_split\""), std::string::npos);
  // The audit also shows what the miniature caches read, [split, share] pairs.
  auto read = CreateSplitController(o, pool, &scales);
  ASSERT_TRUE(read.ok());
  serve::StatsWindow searched = SearchWindow(0.6, 0.2);
  searched.kv_shadow_splits = {0.05, 0.95};
  for (serve::AnswerSample& a : searched.answers) {
    a.history_tokens = 100;
    a.reuse.kv_shadow_prefix = {50, 0};
  }
  (*read)->Decide(searched);
  const std::string json = (*read)->LastDecisionJson();
  EXPECT_NE(json.find("\"kv_copies_hit\":[[0.0500,0.5000],[0.9500,0.0000]]"), std::string::npos)
      << json;
  EXPECT_NE(json.find("\"emb_copies_miss\":[[0.0500,0.6000],[0.9500,0.2000]]"), std::string::npos)
      << json;

  // Where every split predicts the same (no reuse at all), it holds.
  auto flat = CreateSplitController(o, pool, &scales);
  ASSERT_TRUE(flat.ok());
  serve::StatsWindow w = SteadyWindow(0.5, 1000, 5000);
  w.answers.assign(1000, serve::AnswerSample{.latency_us = 5000, .queue_us = 1000});
  EXPECT_DOUBLE_EQ((*flat)->Decide(w), 0.5);
  // And with too few answers it decides nothing.
  w.answers.resize(10);
  w.emb_reuse = s.emb;
  w.kv_reuse = s.kv;
  EXPECT_DOUBLE_EQ((*flat)->Decide(w), 0.5);
}

// Features 19-20 (features.h) are the predictive model's view: its best split less the target and
// its predicted gain there, as the predictive controller sees them; 0 without the model, while a
// move is in flight, and on a window with too few answers.
TEST(FeatureExtractor, TheModelsFeaturesAreThePredictiveControllersView) {
  ControlOptions o;
  o.policy = "predictive";
  const FeatureScales scales = UnitScales();
  Scenario s = FeedBehindACliff();
  s.window.emb_reuse = s.emb;
  s.window.kv_reuse = s.kv;
  PredictiveController predictive(o, scales, 0.05, 0.95);
  predictive.Decide(s.window);
  const std::vector<double> grid_and_now = {predictive.best_split(), s.window.committed_split};
  const std::vector<SplitPrediction> p = Predict(s, grid_and_now);

  FeatureExtractor with_model = FeatureExtractor::For(kNumFeatures, scales, o, 0.05, 0.95);
  const Features f = with_model.Extract(s.window);
  EXPECT_NEAR(f[19], predictive.best_split() - s.window.target_split, 1e-6);
  EXPECT_LT(f[19], -0.15) << "across the cliff, toward the KV end";
  EXPECT_NEAR(f[20], 1 - p[0].p99_us / p[1].p99_us, 1e-6);
  EXPECT_GT(f[20], 0.1);

  FeatureExtractor without = FeatureExtractor::For(kFirstModelFeature, scales, o, 0.05, 0.95);
  const Features g = without.Extract(s.window);
  EXPECT_EQ(g[19], 0.0f);
  EXPECT_EQ(g[20], 0.0f);
  for (int i = 0; i < kFirstModelFeature; ++i) EXPECT_EQ(f[i], g[i]) << "feature " << i;

  serve::StatsWindow moving = s.window;
  moving.target_split = 0.5;  // a move in flight
  EXPECT_EQ(with_model.Extract(moving)[19], 0.0f);
  serve::StatsWindow thin = s.window;
  thin.answers.resize(o.min_window_answers - 1);
  EXPECT_EQ(with_model.Extract(thin)[20], 0.0f);
}

// PredictedP99Ratio: the model's P99 at the nearest split of its grid over its P99 now, from the
// last window extracted; none without the model or when it did not predict.
TEST(FeatureExtractor, SaysWhatTheModelPredictsAtAnotherSplit) {
  ControlOptions o;
  const FeatureScales scales = UnitScales();
  Scenario s = FeedBehindACliff();
  s.window.emb_reuse = s.emb;
  s.window.kv_reuse = s.kv;
  FeatureExtractor with_model = FeatureExtractor::For(kNumFeatures, scales, o, 0.05, 0.95);
  EXPECT_FALSE(with_model.PredictedP99Ratio(0.5).has_value()) << "nothing extracted yet";
  const Features f = with_model.Extract(s.window);
  const double best = s.window.target_split + f[19];
  ASSERT_TRUE(with_model.PredictedP99Ratio(best).has_value());
  EXPECT_NEAR(*with_model.PredictedP99Ratio(best), 1 - f[20], 1e-6);
  EXPECT_LT(*with_model.PredictedP99Ratio(0.5), 0.9) << "across the cliff: the feed's K/V held";
  EXPECT_NEAR(*with_model.PredictedP99Ratio(0.9), 1.0, 0.02) << "the current split";
  serve::StatsWindow moving = s.window;
  moving.target_split = 0.5;  // a move in flight: no prediction
  with_model.Extract(moving);
  EXPECT_FALSE(with_model.PredictedP99Ratio(0.5).has_value());
  FeatureExtractor without = FeatureExtractor::For(kFirstModelFeature, scales, o, 0.05, 0.95);
  without.Extract(s.window);
  EXPECT_FALSE(without.PredictedP99Ratio(0.5).has_value());
}

// Recovery's rollback blames a move for a P99 that rose after it. With a base that reads the model
// (control.rollback_model_veto), the move is kept where the model predicts the split it would
// return to (0.9, the feed's K/V recomputed) no better than the current one (0.6, held).
TEST(HelmController, TheModelVetoesARollbackToASplitItPredictsWorse) {
  for (const bool veto : {true, false}) {
    ControlOptions o;
    o.policy = "helm";
    o.adapter = false;
    o.rollback_model_veto = veto;
    Mlp::Layer hold;  // one action, 0: the base holds
    hold.in = kNumFeatures;
    hold.out = 1;
    hold.weight.assign(kNumFeatures, 0.0f);
    hold.bias = {0.0f};
    HelmController helm(Policy{Mlp({hold}), {0.0}}, UnitScales(), o, 0.05, 0.95);
    Scenario s = FeedBehindACliff();
    s.window.emb_reuse = s.emb;
    s.window.kv_reuse = s.kv;
    for (int i = 0; i < 20; ++i) ASSERT_DOUBLE_EQ(helm.Decide(s.window), 0.9);
    // Moved to 0.6 (by an operator, say); P99 climbs window after window.
    serve::StatsWindow w = s.window;
    w.committed_split = w.target_split = 0.6;
    double target = 0.6;
    for (int i = 1; i <= o.rollback_windows; ++i) {
      w.latency_us.Reset();
      for (serve::AnswerSample& a : w.answers) {
        a.latency_us = a.latency_us * 6 / 5;
        w.latency_us.Record(a.latency_us);
      }
      target = helm.Decide(w);
    }
    EXPECT_EQ(helm.recovery()->rollbacks(), 1) << "veto " << veto;
    EXPECT_EQ(helm.last_decision().rollback_vetoed, veto);
    if (veto) {
      EXPECT_DOUBLE_EQ(target, 0.6);
      EXPECT_EQ(helm.mode(), "base");
      EXPECT_DOUBLE_EQ(helm.recovery()->stable_split(), 0.6);
    } else {
      EXPECT_NEAR(target, 0.6 + o.max_move, 1e-9) << "on the way back to 0.9";
      EXPECT_EQ(helm.mode(), "rollback");
    }
  }
}

// A node keeps the reuse tracker and miniature caches only for a controller that reads them.
TEST(NeedsReuseTracking, ThePredictiveControllerAndAPolicyReadingTheModel) {
  ControlOptions o;
  for (const char* policy : {"static", "heuristic", "marginal"}) {
    o.policy = policy;
    EXPECT_FALSE(NeedsReuseTracking(o)) << policy;
  }
  o.policy = "predictive";
  EXPECT_TRUE(NeedsReuseTracking(o));
  o.policy = "helm";
  o.policy_path = "builtin:helm-base-v2";  // features 0-18
  EXPECT_FALSE(NeedsReuseTracking(o));
  const std::string path = ::testing::TempDir() + "/reads_model.json";
  {
    std::ofstream f(path);
    f << PolicyToJson(Policy{Mlp::Random({kNumFeatures, 8, 3}, 1), {-0.1, 0, 0.1}});
  }
  o.policy_path = path;
  EXPECT_TRUE(NeedsReuseTracking(o));
  o.policy_path = ::testing::TempDir() + "/no_such_policy.json";
  EXPECT_FALSE(NeedsReuseTracking(o)) << "CreateSplitController reports the file";
}

}  // namespace
}  // namespace helm::control
