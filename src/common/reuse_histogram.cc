#include "helm/common/reuse_histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace helm {

// ---- ReuseHistogram ----------------------------------------------------------------------------

int ReuseHistogram::Bucket(int64_t reuse_time) { return BucketOf(static_cast<double>(reuse_time)); }

int ReuseHistogram::BucketOf(double t) {
  if (t < 1) return 0;
  return std::clamp(static_cast<int>(std::floor(kBucketsPerDoubling * std::log2(t))), 0,
                    kBuckets - 1);
}

double ReuseHistogram::BucketLow(int b) {
  return b == 0 ? 0.0 : std::exp2(static_cast<double>(b) / kBucketsPerDoubling);
}

void ReuseHistogram::Add(int64_t reuse_time, double weight) {
  w_[static_cast<size_t>(Bucket(reuse_time))] += weight;
}

void ReuseHistogram::Merge(const ReuseHistogram& other) {
  for (int b = 0; b < kBuckets; ++b) w_[b] += other.w_[b];
  cold_ += other.cold_;
}

void ReuseHistogram::Scale(double f) {
  for (double& w : w_) w *= f;
  cold_ *= f;
}

double ReuseHistogram::total() const {
  double t = cold_;
  for (double w : w_) t += w;
  return t;
}

// Within a bucket the reuse times are taken as spread evenly: P(t) falls linearly across it.
double ReuseHistogram::EvictionTime(double capacity) const {
  const double total = this->total();
  if (total <= 0) return capacity;  // nothing seen: every access is new, T grows as c
  double above = total;             // weight with reuse time >= the bucket's low edge
  double integral = 0;
  for (int b = 0; b < kBuckets; ++b) {
    const double lo = BucketLow(b), width = BucketLow(b + 1) - lo;
    const double mean_p = (above - w_[b] / 2) / total;
    if (mean_p > 0 && integral + mean_p * width >= capacity) {
      return lo + (capacity - integral) / mean_p;
    }
    integral += mean_p * width;
    above -= w_[b];
  }
  // Past the last bucket only cold accesses remain: P is constant.
  const double cold_p = cold_ / total;
  if (cold_p <= 0) return std::numeric_limits<double>::infinity();
  return BucketLow(kBuckets) + (capacity - integral) / cold_p;
}

double ReuseHistogram::ShareAbove(double t) const {
  const double total = this->total();
  if (total <= 0) return 1.0;
  if (std::isinf(t)) return cold_ / total;
  double above = cold_;
  const int b = BucketOf(t);
  for (int k = b + 1; k < kBuckets; ++k) above += w_[k];
  const double lo = BucketLow(b), hi = BucketLow(b + 1);
  above += w_[b] * std::clamp((hi - t) / (hi - lo), 0.0, 1.0);
  return above / total;
}

}  // namespace helm
