#include "helm/common/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"

namespace helm {

LatencyHistogram& LatencyHistogram::operator=(const LatencyHistogram& other) {
  if (this != &other) {
    Reset();
    Merge(other);
  }
  return *this;
}

int64_t LatencyHistogram::BucketIndex(int64_t value) {
  if (value < kSubBuckets) return std::max<int64_t>(value, 0);
  const int exponent = std::min(63 - std::countl_zero(static_cast<uint64_t>(value)), kMaxExponent);
  const int shift = exponent - kSubBucketBits;
  // Bucket group g = shift + 1 holds [2^exponent, 2^(exponent+1)) in kSubBuckets equal parts.
  const int64_t sub = std::min<int64_t>((value >> shift) - kSubBuckets, kSubBuckets - 1);
  return (shift + 1) * kSubBuckets + sub;
}

int64_t LatencyHistogram::BucketLow(int64_t index) {
  if (index < kSubBuckets) return index;
  const int64_t shift = index / kSubBuckets - 1;
  const int64_t sub = index % kSubBuckets;
  return (kSubBuckets + sub) << shift;
}

int64_t LatencyHistogram::BucketHigh(int64_t index) {
  if (index < kSubBuckets) return index;
  const int64_t shift = index / kSubBuckets - 1;
  return BucketLow(index) + ((int64_t{1} << shift) - 1);  // the last bucket ends at INT64_MAX
}

void LatencyHistogram::RecordN(int64_t value, int64_t count) {
  if (count <= 0) return;
  value = std::max<int64_t>(value, 0);
  buckets_[BucketIndex(value)].fetch_add(count, std::memory_order_relaxed);
  count_.fetch_add(count, std::memory_order_relaxed);
  sum_.fetch_add(value * count, std::memory_order_relaxed);
  int64_t seen = min_.load(std::memory_order_relaxed);
  while (value < seen && !min_.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
  seen = max_.load(std::memory_order_relaxed);
  while (value > seen && !max_.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  const int64_t n = other.Count();
  if (n == 0) return;
  for (int64_t i = 0; i < kNumBuckets; ++i) {
    const int64_t c = other.buckets_[i].load(std::memory_order_relaxed);
    if (c != 0) buckets_[i].fetch_add(c, std::memory_order_relaxed);
  }
  count_.fetch_add(n, std::memory_order_relaxed);
  sum_.fetch_add(other.sum_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  const int64_t other_min = other.min_.load(std::memory_order_relaxed);
  int64_t seen = min_.load(std::memory_order_relaxed);
  while (other_min < seen &&
         !min_.compare_exchange_weak(seen, other_min, std::memory_order_relaxed)) {
  }
  const int64_t other_max = other.max_.load(std::memory_order_relaxed);
  seen = max_.load(std::memory_order_relaxed);
  while (other_max > seen &&
         !max_.compare_exchange_weak(seen, other_max, std::memory_order_relaxed)) {
  }
}

void LatencyHistogram::Reset() {
  for (auto& b : buckets_) b.store(0, std::memory_order_relaxed);
  count_.store(0, std::memory_order_relaxed);
  sum_.store(0, std::memory_order_relaxed);
  min_.store(std::numeric_limits<int64_t>::max(), std::memory_order_relaxed);
  max_.store(0, std::memory_order_relaxed);
}

int64_t LatencyHistogram::Min() const { return Count() == 0 ? 0 : min_.load(); }

int64_t LatencyHistogram::FirstUsedBucket() const {
  // While a first recording is under way min_ may still be its reset value: scan from 0 then.
  const int64_t lo = Min();
  return lo <= Max() ? BucketIndex(lo) : 0;
}
int64_t LatencyHistogram::Max() const { return Count() == 0 ? 0 : max_.load(); }

int64_t LatencyHistogram::LastUsedBucket() const { return BucketIndex(Max()); }

double LatencyHistogram::Mean() const {
  const int64_t n = Count();
  return n == 0 ? 0.0 : static_cast<double>(sum_.load()) / static_cast<double>(n);
}

double LatencyHistogram::Quantile(double q) const {
  const int64_t n = Count();
  if (n == 0) return 0.0;
  q = std::clamp(q, 0.0, 1.0);
  // Rank of the wanted recording, 1-based: the smallest value with at least ceil(q*n) at or below.
  const int64_t rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(q * n)));
  const double lo = static_cast<double>(Min());
  const double hi = static_cast<double>(Max());
  // The bucket's midpoint, clamped to the exact extremes, bounds the relative error.
  auto value = [&](int64_t i) {
    return std::clamp(
        0.5 * (static_cast<double>(BucketLow(i)) + static_cast<double>(BucketHigh(i))), lo, hi);
  };
  // Only buckets between the smallest and the largest recording's hold anything. A window's
  // latencies span about a thousand buckets and the split controller reads several quantiles a
  // window, mostly high ones: walk from the nearer end.
  if (rank > n / 2) {
    // The answer is the highest bucket whose suffix (it and all above) holds n - rank + 1 or more.
    const int64_t above = n - rank + 1;
    int64_t seen = 0;
    for (int64_t i = LastUsedBucket(); i >= 0; --i) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen >= above) return value(i);
    }
    return lo;  // fewer in the buckets than counted (a recording under way)
  }
  int64_t seen = 0;
  for (int64_t i = FirstUsedBucket(); i < kNumBuckets; ++i) {
    seen += buckets_[i].load(std::memory_order_relaxed);
    if (seen >= rank) return value(i);
  }
  return hi;
}

int64_t LatencyHistogram::CountAtOrBelow(int64_t value) const {
  if (value < 0) return 0;
  const int64_t n = Count();
  if (n == 0) return 0;
  const int64_t last = BucketIndex(value);
  const int64_t top = LastUsedBucket();
  if (last >= top) return n;  // every recording is at or below it
  const int64_t first = FirstUsedBucket();
  if (last < first) return 0;
  int64_t seen = 0;
  if (top - last < last - first) {  // fewer buckets above: count those
    for (int64_t i = last + 1; i <= top; ++i) seen += buckets_[i].load(std::memory_order_relaxed);
    return std::max<int64_t>(0, n - seen);
  }
  for (int64_t i = first; i <= last; ++i) seen += buckets_[i].load(std::memory_order_relaxed);
  return seen;
}

std::string LatencyHistogram::Summary(const std::string& unit) const {
  return absl::StrFormat("n=%d p50=%.0f%s p90=%.0f%s p99=%.0f%s p99.9=%.0f%s max=%d%s", Count(),
                         Quantile(0.5), unit, Quantile(0.9), unit, Quantile(0.99), unit,
                         Quantile(0.999), unit, Max(), unit);
}

}  // namespace helm
