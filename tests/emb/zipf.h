// A Zipf sampler for tests and benchmarks: P(rank k) ~ 1 / k^s over [0, n), inverse-CDF by binary
// search on a precomputed table. Deterministic given the caller's engine.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace helm::testing {

class Zipf {
 public:
  Zipf(int64_t n, double s) : cdf_(static_cast<size_t>(n)) {
    double sum = 0;
    for (int64_t k = 0; k < n; ++k) {
      sum += 1.0 / std::pow(static_cast<double>(k + 1), s);
      cdf_[static_cast<size_t>(k)] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  template <typename Rng>
  int64_t operator()(Rng& rng) const {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    return static_cast<int64_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

}  // namespace helm::testing
