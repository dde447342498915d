// Spatial sampling of item ids for the simulator's miniature EMB caches.
//
// A cache simulated on a hashed sample of its keys, with its capacity scaled by the same rate,
// has nearly the miss-ratio curve of the full cache (Waldspurger et al., "Efficient MRC
// Construction with SHARDS", FAST 2015, and "Cache Modeling and Optimization using Miniature
// Simulations", USENIX ATC 2017): an id is in the sample, or not, on every access, so the sample
// sees whole reuse histories, and the popularity skew with them. The simulator's EMB cache can
// run on such a sample (simulator.emb_sample_rate, emb_cache.h), which spares it the bookkeeping
// of the ids outside it.
//
// Header-only; pure and cheap (one multiply-xorshift hash and a compare per id).
#pragma once

#include <cmath>
#include <cstdint>

#include "helm/common/hash.h"

namespace helm::emb {

class IdSampler {
 public:
  // Every id (rate >= 1), or about `rate` of them, chosen by `salt`.
  // REQUIRES: rate > 0.
  explicit IdSampler(double rate = 1.0, uint64_t salt = 0)
      : all_(rate >= 1.0),
        rate_(all_ ? 1.0 : rate),
        salt_(SplitMix64(salt)),
        threshold_(all_ ? ~uint64_t{0} : static_cast<uint64_t>(std::ldexp(rate, 64))) {}

  bool all() const { return all_; }
  double rate() const { return rate_; }
  bool Contains(int64_t id) const {
    return all_ || Fmix64(static_cast<uint64_t>(id) ^ salt_) < threshold_;
  }

 private:
  bool all_;
  double rate_;
  uint64_t salt_;
  uint64_t threshold_;
};

}  // namespace helm::emb
