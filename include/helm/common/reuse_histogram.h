// Reuse times and what they say about caches of other sizes: the predictive split controller's
// model (control/predict.h); serve/reuse_tracker.h measures them.
//
// A reuse time is how much was accessed between two accesses of the same key: ids looked up, for
// the EMB cache; K/V tokens requested, for the KV cache (a user's reuse time is the tokens all
// requests asked for since its previous request). The kinetic model of eviction (AET: Hu et al.,
// "Kinetic Modeling of Data Eviction in Cache", USENIX ATC 2016) turns their distribution into a
// miss-ratio curve: in an LRU-like cache of capacity c, an item stays for the average eviction time
// T(c), the T at which the integral of P(t) from 0 to T reaches c, where P(t) is the share of
// accesses whose reuse time exceeds t; an access hits when its reuse time is below T(c), so the
// miss ratio is P(T(c)). It needs only the histogram, not a stack, so it is cheap to keep live.
#pragma once

#include <array>
#include <cstdint>

namespace helm {

// Reuse times in geometric buckets (4 a doubling), weighted, plus the weight of first accesses
// (cold: an infinite reuse time). Thread-compatible.
class ReuseHistogram {
 public:
  static constexpr int kBucketsPerDoubling = 4;
  static constexpr int kBuckets = 64 * kBucketsPerDoubling;

  void Add(int64_t reuse_time, double weight);
  void AddCold(double weight) { cold_ += weight; }
  void Merge(const ReuseHistogram& other);
  // Multiplies every weight by f (an exponential forgetting of older windows).
  void Scale(double f);
  double total() const;
  double cold() const { return cold_; }

  // AET's average eviction time of a cache of `capacity` (same unit as the reuse times); +inf when
  // the reuses never fill it (every warm access would hit).
  double EvictionTime(double capacity) const;
  // P(t): the share of the weight whose reuse time exceeds t (cold included); 1 when empty.
  double ShareAbove(double t) const;
  // The miss ratio of a cache of `capacity`: ShareAbove(EvictionTime(capacity)).
  double MissRatio(double capacity) const { return ShareAbove(EvictionTime(capacity)); }

  static int Bucket(int64_t reuse_time);
  static int BucketOf(double t);   // the bucket a (fractional) time falls in
  static double BucketLow(int b);  // smallest reuse time in bucket b (bucket 0 holds 0 and 1)

 private:
  std::array<double, kBuckets> w_{};
  double cold_ = 0;
};

}  // namespace helm
