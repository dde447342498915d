#include "helm/control/predict.h"

#include <algorithm>
#include <cmath>
#include <limits>

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

std::vector<SplitPrediction> PredictSplits(const serve::StatsWindow& w, const ReuseHistogram& emb,
                                           const ReuseHistogram& kv, const FeatureScales& s,
                                           const RecomputePrice& price,
                                           absl::Span<const double> splits) {
  std::vector<SplitPrediction> out;
  const size_t n = w.answers.size();
  if (n == 0) return out;
  const double r0 = w.committed_split;
  const double miss_us = FetchNsPerMiss(w) / 1e3;
  // The time the answer's request, and its whole batch, would have spared had the KV cache reused
  // what miniature cache k did (BatchTotals: sum p and sum p (p - 1) / 2), in us, once a
  // decision: own_us[i * caches + k], batch_us[i * caches + k].
  const size_t caches = std::min<size_t>(w.kv_shadow_splits.size(), serve::kMaxKvShadows);
  // A reused token is also an embedding not looked up (the node looks up the suffix's ids and the
  // candidates'): it spares its share of the answer's (the batch's) misses.
  const auto fetch_us_per_token = [&](int32_t misses, int32_t lookups) {
    return lookups > 0 ? miss_us * misses / lookups : 0.0;
  };
  std::vector<double> own_us(n * caches), batch_us(n * caches);
  for (size_t i = 0; i < n; ++i) {
    const serve::AnswerSample& a = w.answers[i];
    const double own_fetch_us = fetch_us_per_token(a.emb_misses, a.emb_lookups);
    const double batch_fetch_us = fetch_us_per_token(a.batch.emb_misses, a.batch.emb_lookups);
    for (size_t k = 0; k < caches; ++k) {
      own_us[i * caches + k] =
          price.PrefixUs(a.reuse.kv_shadow_prefix[k]) + own_fetch_us * a.reuse.kv_shadow_prefix[k];
      batch_us[i * caches + k] = (price.row_us + batch_fetch_us) * a.batch.shadow.tokens[k] +
                                 price.attention_us * a.batch.shadow.pairs[k];
    }
  }
  const auto own_spared_us = [&](size_t i, ShadowPoint p) {
    return Interpolate(p, [&](size_t k) { return own_us[i * caches + k]; });
  };
  const auto batch_spared_us = [&](size_t i, ShadowPoint p) {
    return Interpolate(p, [&](size_t k) { return batch_us[i * caches + k]; });
  };
  // The KV side from the miniature caches' reuse when they ran, else from the reuse times (AET).
  const bool shadows = caches >= 2;
  const ShadowPoint p0 = LocateShadow(w.kv_shadow_splits, r0);
  std::vector<double> own_at_r0(shadows ? n : 0), batch_at_r0(shadows ? n : 0);
  for (size_t i = 0; i < own_at_r0.size(); ++i) {
    own_at_r0[i] = own_spared_us(i, p0);
    batch_at_r0[i] = batch_spared_us(i, p0);
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
  double service_sq0 = 0;
  for (const serve::AnswerSample& a : w.answers) {
    const double service = static_cast<double>(a.latency_us - a.queue_us);
    service_sq0 += service * service;
  }

  std::vector<double> delta(n), batch_delta(n), latency(n);
  for (double r : splits) {
    const double emb_change = miss_ratio(r) - m0;
    const double t = shadows ? 0 : kv.EvictionTime(kv_tokens(r));
    const ShadowPoint p = LocateShadow(w.kv_shadow_splits, r);
    // The time `misses` of `lookups` take more at r: the miss ratio's change, within the lookups.
    const auto emb_us = [&](int32_t misses, int32_t lookups) {
      return (std::clamp(misses + lookups * emb_change, 0.0, static_cast<double>(lookups)) -
              misses) *
             miss_us;
    };
    double delta_sum = 0;
    for (size_t i = 0; i < n; ++i) {
      const serve::AnswerSample& a = w.answers[i];
      double d = emb_us(a.emb_misses, a.emb_lookups);
      if (shadows) {
        d += own_at_r0[i] - own_spared_us(i, p);
      } else if (a.reuse.kv_reuse_tokens >= 0) {
        const double reuse = static_cast<double>(a.reuse.kv_reuse_tokens);
        const int held_now = reuse < t0, held_at_r = reuse < t;
        const double prefix = static_cast<double>(a.reuse.kv_prefix_tokens);
        d += (held_now - held_at_r) *
             (price.PrefixUs(prefix) + fetch_us_per_token(a.emb_misses, a.emb_lookups) * prefix);
      }
      delta[i] = d;
      delta_sum += d;
      if (shadows && a.batch.size > 0) {  // the batch's own change, this answer's included
        batch_delta[i] = emb_us(a.batch.emb_misses, a.batch.emb_lookups) + batch_at_r0[i] -
                         batch_spared_us(i, p);
      } else {  // else its own and the mean batch-mate's (below)
        batch_delta[i] = std::numeric_limits<double>::quiet_NaN();
      }
    }
    // A batch takes its members' time together: an answer's batch-mates' changes are its own too.
    const double mates_delta = batch_mates * delta_sum / static_cast<double>(n);
    const double rho = rho0 + delta_sum * answers_per_sample / capacity_us;
    // Pollaczek-Khinchine: the mean wait is lambda E[S^2] / (2 (1 - rho)), S an answer's service
    // (its batch's) with its change; the arrivals are the window's.
    double service_sq = 0;
    for (size_t i = 0; i < n; ++i) {
      const serve::AnswerSample& a = w.answers[i];
      if (std::isnan(batch_delta[i])) batch_delta[i] = delta[i] + mates_delta;
      const double service =
          std::max(0.0, static_cast<double>(a.latency_us - a.queue_us) + batch_delta[i]);
      service_sq += service * service;
    }
    const double wait_scale = rho0 > 0.01 && service_sq0 > 0
                                  ? (1 - std::min(rho0, 0.99)) / (1 - std::clamp(rho, 0.0, 0.99)) *
                                        service_sq / service_sq0
                                  : 1.0;
    for (size_t i = 0; i < n; ++i) {
      const serve::AnswerSample& a = w.answers[i];
      latency[i] =
          std::max(0.0, a.queue_us * wait_scale + static_cast<double>(a.latency_us - a.queue_us) +
                            batch_delta[i]);
    }
    out.push_back(
        SplitPrediction{.split = r, .p99_us = QuantileOf(latency, 0.99), .utilisation = rho});
  }
  return out;
}

}  // namespace helm::control
