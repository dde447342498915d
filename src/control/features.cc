#include "helm/control/features.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

namespace helm::control {
namespace {

float Clamp01(double v, double hi) { return static_cast<float>(std::clamp(v, 0.0, hi) / hi); }

}  // namespace

double FetchNsPerMiss(const serve::StatsWindow& w) {
  return w.emb.misses > 0 ? static_cast<double>(w.emb.fetch_ns) / w.emb.misses : 0.0;
}

double ComputeNsPerRow(const serve::StatsWindow& w) {
  if (w.requests.computed_rows <= 0) return 0;
  return std::max(0.0, w.requests.compute_us * 1e3 - static_cast<double>(w.emb.fetch_ns)) /
         static_cast<double>(w.requests.computed_rows);
}

namespace {

// The `top`-th largest of v by a threshold read off a sample (every 32nd value): the values at or
// above the sample's j-th largest (j chosen so that about three times `top` are) are gathered and
// the answer selected among them. Exact whenever it answers: nullopt when fewer than `top` values
// reach the threshold (a sample that ran high, ~1% of lognormal draws) or too many do (ties).
// helm_bench_control times QuantileOf against nth_element (quantile_p99_vs_nth_element).
std::optional<double> LargestBySample(const std::vector<double>& v, size_t top) {
  constexpr size_t kStride = 32, kMaxJ = 16;
  const size_t m = v.size() / kStride;
  const size_t j = std::min({m, top * 3 / kStride + 2, kMaxJ});
  if (j == 0) return std::nullopt;
  // The sample's j largest, in a min-heap: the threshold is its front.
  std::array<double, kMaxJ> largest;
  size_t held = 0;
  for (size_t i = 0; i < m; ++i) {
    const double x = v[i * kStride];
    if (held < j) {
      largest[held++] = x;
      std::push_heap(largest.begin(), largest.begin() + held, std::greater<>());
    } else if (x > largest[0]) {
      std::pop_heap(largest.begin(), largest.begin() + j, std::greater<>());
      largest[j - 1] = x;
      std::push_heap(largest.begin(), largest.begin() + j, std::greater<>());
    }
  }
  const double threshold = largest[0];
  // Every value at or above the threshold, up to `cap` of them (written always, counted when kept:
  // no branch on the data).
  const size_t cap = 8 * top + 64;
  std::vector<double> above(cap + 1);
  size_t count = 0;
  for (size_t i = 0; i < v.size() && count <= cap; ++i) {
    above[count] = v[i];
    count += v[i] >= threshold;
  }
  if (count < top || count > cap) return std::nullopt;
  // The values below the threshold are below every gathered one: the `top`-th largest of v is the
  // `top`-th largest gathered.
  const auto x = above.begin() + static_cast<std::ptrdiff_t>(count - top);
  std::nth_element(above.begin(), x, above.begin() + static_cast<std::ptrdiff_t>(count));
  return *x;
}

}  // namespace

double QuantileOf(std::vector<double>& v, double q) {
  const size_t n = v.size();
  const size_t k = std::min(n - 1, static_cast<size_t>(std::max(1.0, std::ceil(q * n))) - 1);
  const size_t top = n - k;  // element k is the smallest of the `top` largest
  if (top <= 128 && top * 16 <= n) {
    // A high quantile (the predictive model's P99 of 4,096 answers at each of ~46 splits): by a
    // sampled threshold, else the `top` largest kept in a min-heap at the front, one comparison
    // for most elements. Either is several times faster than nth_element there, and gives the
    // same element.
    if (const std::optional<double> x = LargestBySample(v, top)) return *x;
    const auto heap_end = v.begin() + static_cast<std::ptrdiff_t>(top);
    std::make_heap(v.begin(), heap_end, std::greater<>());
    for (size_t i = top; i < n; ++i) {
      if (v[i] > v.front()) {
        std::pop_heap(v.begin(), heap_end, std::greater<>());
        std::swap(v[top - 1], v[i]);
        std::push_heap(v.begin(), heap_end, std::greater<>());
      }
    }
    return v.front();
  }
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

FeatureExtractor::FeatureExtractor(const FeatureScales& scales) : s_(scales) {}

FeatureExtractor::FeatureExtractor(const FeatureScales& scales, const ControlOptions& options,
                                   double r_min, double r_max)
    : s_(scales), model_(std::in_place, scales, options, r_min, r_max) {}

FeatureExtractor FeatureExtractor::For(int inputs, const FeatureScales& scales,
                                       const ControlOptions& options, double r_min, double r_max) {
  return ReadsModel(inputs) ? FeatureExtractor(scales, options, r_min, r_max)
                            : FeatureExtractor(scales);
}

double FeatureExtractor::EmbGrowthGain(const serve::StatsWindow& w) {
  const double window_ns = std::max(w.seconds(), 1e-6) * 1e9;
  return std::clamp(FetchNsPerMiss(w) * w.emb.ghost_hits / window_ns, 0.0, 1.0);
}

double FeatureExtractor::KvGrowthGain(const serve::StatsWindow& w) {
  const double window_ns = std::max(w.seconds(), 1e-6) * 1e9;
  return std::clamp(w.kv.ghost_hit_tokens * ComputeNsPerRow(w) / window_ns, 0.0, 1.0);
}

Features FeatureExtractor::Extract(const serve::StatsWindow& w) {
  const double seconds = std::max(w.seconds(), 1e-6);
  const double rate = w.requests.arrivals / seconds;
  if (!primed_) {
    short_rate_ = long_rate_ = rate;
    primed_ = true;
  } else {
    short_rate_ += (rate - short_rate_) / s_.short_windows;
    long_rate_ += (rate - long_rate_) / s_.long_windows;
  }
  const double r = w.committed_split;
  const double emb_rows = std::max(1.0, r * s_.pool_bytes / s_.emb_row_bytes);
  const double kv_tokens = std::max(1.0, (1 - r) * s_.pool_bytes / s_.kv_token_bytes);
  const int64_t answers = w.requests.completions + w.requests.failures;
  int64_t over_slo = w.requests.failures;
  over_slo += w.latency_us.Count() - w.latency_us.CountAtOrBelow(static_cast<int64_t>(s_.slo_us));
  Features f{};
  f[0] = static_cast<float>(r);
  f[1] = static_cast<float>(w.target_split - r);
  f[2] = Clamp01(w.pending_migration_bytes / std::max(1.0, s_.pool_bytes), 1.0);
  f[3] = static_cast<float>(w.emb.hit_rate());
  f[4] = Clamp01(static_cast<double>(w.emb.fetch_ns) / 1e9 / seconds, 1.0);
  f[5] = static_cast<float>(w.kv.token_hit_ratio());
  f[6] = static_cast<float>(std::log1p(w.kv.recomputed_tokens / seconds) / 16);
  f[7] = static_cast<float>(std::log1p(short_rate_) / 12);
  f[8] = static_cast<float>(std::log1p(long_rate_) / 12);
  f[9] = static_cast<float>(
      std::clamp((short_rate_ - long_rate_) / std::max(long_rate_, 1.0), -2.0, 2.0) / 2);
  f[10] = Clamp01(w.emb.unique_ids / emb_rows, 4.0);
  f[11] = Clamp01(w.kv.requested_tokens / kv_tokens, 4.0);
  f[12] = Clamp01(w.queue_depth / std::max(1.0, s_.queue_capacity), 1.0);
  f[13] = Clamp01(w.latency_us.Quantile(0.5) / s_.slo_us, 4.0);
  f[14] = Clamp01(w.latency_us.Quantile(0.99) / s_.slo_us, 4.0);
  f[15] = answers > 0 ? static_cast<float>(std::min<double>(1, double(over_slo) / answers)) : 0;
  const double g_emb = EmbGrowthGain(w), g_kv = KvGrowthGain(w);
  f[16] = static_cast<float>(std::sqrt(g_emb));
  f[17] = static_cast<float>(std::sqrt(g_kv));
  f[18] = g_emb + g_kv < 1e-4 ? 0.0f : static_cast<float>((g_emb - g_kv) / (g_emb + g_kv));
  view_.reset();
  if (model_) {
    model_->Observe(w);
    view_ = model_->Predict(w);
    if (view_ && view_->now.p99_us > 0) {
      f[19] = static_cast<float>(std::clamp(view_->best.split - w.target_split, -1.0, 1.0));
      f[20] = static_cast<float>(std::clamp(1 - view_->best.p99_us / view_->now.p99_us, 0.0, 1.0));
    }
  }
  return f;
}

std::optional<double> FeatureExtractor::PredictedP99Ratio(double split) const {
  if (!view_ || view_->curve.empty() || view_->now.p99_us <= 0) return std::nullopt;
  const auto nearest = std::min_element(
      view_->curve.begin(), view_->curve.end(),
      [&](auto& a, auto& b) { return std::abs(a.split - split) < std::abs(b.split - split); });
  return nearest->p99_us / view_->now.p99_us;
}

}  // namespace helm::control
