#include "helm/control/predict.h"

#include <algorithm>
#include <cmath>

#include "helm/control/features.h"

namespace helm::control {
namespace {

// Where split r falls among the miniature caches' splits (KV or EMB): the lower cache and the
// weight of the upper one (clamped to the outermost caches).
struct ShadowPoint {
  size_t lower = 0;
  double upper_weight = 0;
};

ShadowPoint LocateShadow(absl::Span<const double> shadow_splits, double r) {
  const size_t n = shadow_splits.size();
  if (n < 2 || r <= shadow_splits.front()) return {};
  if (r >= shadow_splits.back()) return {.lower = n - 2, .upper_weight = 1};
  const size_t upper = static_cast<size_t>(
      std::upper_bound(shadow_splits.begin(), shadow_splits.end(), r) - shadow_splits.begin());
  const double lo = shadow_splits[upper - 1], hi = shadow_splits[upper];
  return {.lower = upper - 1, .upper_weight = (r - lo) / (hi - lo)};
}

// f(i) of the miniature cache i, interpolated to split p.
template <class F>
double Interpolate(ShadowPoint p, F f) {
  return (1 - p.upper_weight) * f(p.lower) + p.upper_weight * f(p.lower + 1);
}

}  // namespace

RecomputePrice PriceByRatio(const serve::StatsWindow& w, double attention_ratio) {
  const double work = static_cast<double>(w.requests.computed_rows) +
                      attention_ratio * static_cast<double>(w.requests.computed_attention);
  if (work <= 0) return {};
  const double unit_us =
      std::max(0.0, w.requests.compute_us - static_cast<double>(w.emb.fetch_ns) / 1e3) / work;
  return {.row_us = unit_us, .attention_us = attention_ratio * unit_us};
}

namespace {

// The sum of v, four running sums at a time (the loop is the model's longest dependency chain).
double Sum(absl::Span<const double> v) {
  double acc[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= v.size(); i += 4) {
    for (int j = 0; j < 4; ++j) acc[j] += v[i + j];
  }
  for (; i < v.size(); ++i) acc[0] += v[i];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

}  // namespace

std::vector<SplitPrediction> PredictSplits(const serve::StatsWindow& w, const ReuseHistogram& emb,
                                           const ReuseHistogram& kv, const FeatureScales& s,
                                           const RecomputePrice& price,
                                           absl::Span<const double> splits,
                                           PredictBuffers* buffers) {
  std::vector<SplitPrediction> out;
  const size_t n = w.answers.size();
  if (n == 0) return out;
  const double r0 = w.committed_split;
  const double miss_us = FetchNsPerMiss(w) / 1e3;
  const size_t caches = std::min<size_t>(w.kv_shadow_splits.size(), serve::kMaxKvShadows);
  // The KV side from the miniature caches' reuse when they ran, else from the reuse times (AET).
  const bool shadows = caches >= 2;
  // A reused token is also an embedding not looked up (the node looks up the suffix's ids and the
  // candidates'): it spares its share of the answer's (the batch's) misses.
  const auto fetch_us_per_token = [&](int32_t misses, int32_t lookups) {
    return lookups > 0 ? miss_us * misses / lookups : 0.0;
  };
  PredictBuffers local;
  PredictBuffers& c = buffers != nullptr ? *buffers : local;
  // Every element below is written before it is read: no need to clear what a reused buffer held.
  for (std::vector<double>* v :
       {&c.misses, &c.lookups, &c.batch_misses, &c.batch_lookups, &c.service, &c.queue,
        &c.aet_reuse, &c.aet_us, &c.own_fetch_us, &c.batch_fetch_us, &c.own_at_r0, &c.batch_at_r0,
        &c.square, &c.delta, &c.batch_delta, &c.latency}) {
    v->resize(n);
  }
  c.has_batch.resize(n);
  c.own.resize(n * caches);
  c.batch.resize(n * caches);
  std::vector<double>&own_fetch_us = c.own_fetch_us, &batch_fetch_us = c.batch_fetch_us;
  for (size_t i = 0; i < n; ++i) {
    const serve::AnswerSample& a = w.answers[i];
    c.misses[i] = a.emb_misses;
    c.lookups[i] = a.emb_lookups;
    c.batch_misses[i] = a.batch.emb_misses;
    c.batch_lookups[i] = a.batch.emb_lookups;
    c.service[i] = static_cast<double>(a.latency_us - a.queue_us);
    c.queue[i] = static_cast<double>(a.queue_us);
    c.has_batch[i] = shadows && a.batch.size > 0;
    own_fetch_us[i] = fetch_us_per_token(a.emb_misses, a.emb_lookups);
    batch_fetch_us[i] = fetch_us_per_token(a.batch.emb_misses, a.batch.emb_lookups);
    // Without them: the user's previous history, held while its reuse time is below the KV cache's
    // eviction time, spares its recompute (none when the user had not been seen).
    const double prefix = static_cast<double>(a.reuse.kv_prefix_tokens);
    c.aet_reuse[i] = static_cast<double>(a.reuse.kv_reuse_tokens);
    c.aet_us[i] =
        a.reuse.kv_reuse_tokens >= 0 ? price.PrefixUs(prefix) + own_fetch_us[i] * prefix : 0.0;
  }
  // The time the answer's request, and its whole batch, would have spared had the KV cache reused
  // what miniature cache k did (BatchTotals: sum p and sum p (p - 1) / 2), in us. A block of
  // answers at a time, cache by cache, so that the writes run along each cache's column.
  constexpr size_t kBlock = 64;
  for (size_t first = 0; first < n; first += kBlock) {
    const size_t last = std::min(n, first + kBlock);
    for (size_t k = 0; k < caches; ++k) {
      for (size_t i = first; i < last; ++i) {
        const serve::AnswerSample& a = w.answers[i];
        const double p = a.reuse.kv_shadow_prefix[k];
        c.own[k * n + i] = price.PrefixUs(p) + own_fetch_us[i] * p;
        c.batch[k * n + i] = (price.row_us + batch_fetch_us[i]) * a.batch.shadow.tokens[k] +
                             price.attention_us * a.batch.shadow.pairs[k];
      }
    }
  }
  // What miniature cache interpolation p spares each answer (its own, its batch's).
  const auto spared = [&](const std::vector<double>& by_cache, ShadowPoint p, size_t i) {
    return Interpolate(p, [&](size_t k) { return by_cache[k * n + i]; });
  };
  const ShadowPoint p0 = LocateShadow(w.kv_shadow_splits, r0);
  std::vector<double>&own_at_r0 = c.own_at_r0, &batch_at_r0 = c.batch_at_r0;
  for (size_t i = 0; shadows && i < n; ++i) {
    own_at_r0[i] = spared(c.own, p0, i);
    batch_at_r0[i] = spared(c.batch, p0, i);
  }
  const auto emb_rows = [&](double r) { return r * s.pool_bytes / s.emb_row_bytes; };
  const auto kv_tokens = [&](double r) { return (1 - r) * s.pool_bytes / s.kv_token_bytes; };
  // The EMB miss ratio from the miniature EMB caches when they ran, else from the reuse times.
  const bool emb_shadows = w.emb_shadow_miss_ratios.size() >= 2 &&
                           w.emb_shadow_miss_ratios.size() == w.emb_shadow_splits.size();
  const auto miss_ratio = [&](double r) {
    if (!emb_shadows) return emb.MissRatio(emb_rows(r));
    return Interpolate(LocateShadow(w.emb_shadow_splits, r),
                       [&](size_t k) { return w.emb_shadow_miss_ratios[k]; });
  };
  const double m0 = miss_ratio(r0);
  const double t0 = shadows ? 0 : kv.EvictionTime(kv_tokens(r0));
  const double window_us = std::max(w.seconds(), 1e-6) * 1e6;
  const double capacity_us = window_us * std::max(1.0, s.workers);
  const double rho0 = static_cast<double>(w.requests.compute_us) / capacity_us;
  // Every answer of the window, of which the sample is a share.
  const double answers_per_sample =
      static_cast<double>(std::max<int64_t>(w.requests.completions, static_cast<int64_t>(n))) /
      static_cast<double>(n);
  // The mean number of other requests in an answer's batch.
  const double batch_mates =
      w.requests.batches > 0
          ? std::max(0.0, static_cast<double>(w.requests.batched_requests) / w.requests.batches - 1)
          : 0.0;
  std::vector<double>& square = c.square;
  for (size_t i = 0; i < n; ++i) square[i] = c.service[i] * c.service[i];
  const double service_sq0 = Sum(square);

  std::vector<double>&delta = c.delta, &batch_delta = c.batch_delta, &latency = c.latency;
  for (double r : splits) {
    const double emb_change = miss_ratio(r) - m0;
    const ShadowPoint p = LocateShadow(w.kv_shadow_splits, r);
    // The time `misses` of `lookups` take more at r: the miss ratio's change, within the lookups.
    const auto emb_us = [&](double misses, double lookups) {
      return (std::min(std::max(misses + lookups * emb_change, 0.0), lookups) - misses) * miss_us;
    };
    if (shadows) {
      // The miniature caches either side of r.
      const double *own_lo = &c.own[p.lower * n], *own_hi = own_lo + n;
      const double *batch_lo = &c.batch[p.lower * n], *batch_hi = batch_lo + n;
      const double *misses = c.misses.data(), *lookups = c.lookups.data();
      const double *batch_misses = c.batch_misses.data(), *batch_lookups = c.batch_lookups.data();
      const double *own0 = own_at_r0.data(), *batch0 = batch_at_r0.data();
      double *d = delta.data(), *bd = batch_delta.data();
      const double lo_w = 1 - p.upper_weight, hi_w = p.upper_weight;
      // Two loops, not one: the compiler checks a loop's arrays for overlap before it vectorises,
      // and gives up at more than ten checks.
      for (size_t i = 0; i < n; ++i) {
        d[i] = emb_us(misses[i], lookups[i]) + (own0[i] - (lo_w * own_lo[i] + hi_w * own_hi[i]));
      }
      // The batch's own change, this answer's included (else its own and the mean batch-mate's,
      // below).
      for (size_t i = 0; i < n; ++i) {
        bd[i] = emb_us(batch_misses[i], batch_lookups[i]) + batch0[i] -
                (lo_w * batch_lo[i] + hi_w * batch_hi[i]);
      }
    } else {
      const double t = kv.EvictionTime(kv_tokens(r));
      for (size_t i = 0; i < n; ++i) {
        const double held_now = c.aet_reuse[i] < t0, held_at_r = c.aet_reuse[i] < t;
        delta[i] = emb_us(c.misses[i], c.lookups[i]) + (held_now - held_at_r) * c.aet_us[i];
      }
    }
    const double delta_sum = Sum(delta);
    // A batch takes its members' time together: an answer's batch-mates' changes are its own too.
    const double mates_delta = batch_mates * delta_sum / static_cast<double>(n);
    const double rho = rho0 + delta_sum * answers_per_sample / capacity_us;
    // Pollaczek-Khinchine: the mean wait is lambda E[S^2] / (2 (1 - rho)), S an answer's service
    // (its batch's) with its change; the arrivals are the window's.
    const uint8_t* has_batch = c.has_batch.data();
    const double *d = delta.data(), *service0 = c.service.data();
    double *bd = batch_delta.data(), *sq = square.data();
    for (size_t i = 0; i < n; ++i) {
      const double batch = bd[i], own_and_mates = d[i] + mates_delta;  // both read: no branch
      bd[i] = has_batch[i] ? batch : own_and_mates;
    }
    for (size_t i = 0; i < n; ++i) {
      const double service = std::max(0.0, service0[i] + bd[i]);
      sq[i] = service * service;
    }
    const double service_sq = Sum(square);
    const double wait_scale = rho0 > 0.01 && service_sq0 > 0
                                  ? (1 - std::min(rho0, 0.99)) / (1 - std::clamp(rho, 0.0, 0.99)) *
                                        service_sq / service_sq0
                                  : 1.0;
    for (size_t i = 0; i < n; ++i) {
      latency[i] = std::max(0.0, c.queue[i] * wait_scale + c.service[i] + batch_delta[i]);
    }
    out.push_back(
        SplitPrediction{.split = r, .p99_us = QuantileOf(latency, 0.99), .utilisation = rho});
  }
  return out;
}

}  // namespace helm::control
