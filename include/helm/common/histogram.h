// A latency histogram with bounded relative error (log-linear buckets, HdrHistogram-style).
//
// Values are non-negative integers in any unit (the caller's: usually microseconds). Values below
// 2^kSubBucketBits are recorded exactly; above, each power-of-two range is cut into
// 2^kSubBucketBits equal sub-buckets, so a reported percentile is within 1 / 2^(kSubBucketBits+1)
// (0.4%) of a value that was recorded at that rank. Histograms are mergeable (the bucket layout is
// fixed).
//
// Thread-safety: Record and Merge may run concurrently with each other and with readers (relaxed
// atomics); a reader running concurrently with writers sees some prefix of the recordings.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace helm {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 7;
  static constexpr int64_t kSubBuckets = int64_t{1} << kSubBucketBits;
  // Values up to 2^62 are representable; larger ones are clamped into the last bucket.
  static constexpr int kMaxExponent = 62;
  static constexpr int64_t kNumBuckets = (kMaxExponent - kSubBucketBits + 2) * kSubBuckets;

  LatencyHistogram() { Reset(); }
  LatencyHistogram(const LatencyHistogram& other) {
    Reset();
    Merge(other);
  }
  LatencyHistogram& operator=(const LatencyHistogram& other);

  // Records one value; negative values are recorded as 0.
  void Record(int64_t value) { RecordN(value, 1); }
  void RecordN(int64_t value, int64_t count);
  // Adds every recording of `other` to this histogram.
  void Merge(const LatencyHistogram& other);
  void Reset();

  int64_t Count() const { return count_.load(std::memory_order_relaxed); }
  int64_t Min() const;  // 0 when empty
  int64_t Max() const;  // 0 when empty
  double Mean() const;  // 0 when empty
  // The value at quantile q in [0, 1] (e.g. 0.99), within the relative error above; 0 when empty.
  double Quantile(double q) const;
  // Recordings in buckets at or below `value`'s bucket (within the relative error above).
  int64_t CountAtOrBelow(int64_t value) const;

  // "n=… p50=… p90=… p99=… p99.9=… max=…" with `unit` appended to each value.
  std::string Summary(const std::string& unit) const;

  // Bucket layout, exposed for tests and for exporters.
  static int64_t BucketIndex(int64_t value);
  static int64_t BucketLow(int64_t index);   // smallest value in the bucket
  static int64_t BucketHigh(int64_t index);  // largest value in the bucket

 private:
  // The bucket of the smallest recording (no bucket below it holds anything).
  int64_t FirstUsedBucket() const;
  // The bucket of the largest recording (no bucket above it holds anything).
  int64_t LastUsedBucket() const;

  std::array<std::atomic<int64_t>, kNumBuckets> buckets_;
  std::atomic<int64_t> count_;
  std::atomic<int64_t> sum_;
  std::atomic<int64_t> min_;
  std::atomic<int64_t> max_;
};

}  // namespace helm
