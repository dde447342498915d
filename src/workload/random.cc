#include "helm/workload/random.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <numeric>

namespace helm::workload {
namespace {

// log1p(x) / x and expm1(x) / x, accurate near 0 (the rejection-inversion helpers).
double Helper1(double x) {
  return std::abs(x) > 1e-8 ? std::log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}
double Helper2(double x) {
  return std::abs(x) > 1e-8 ? std::expm1(x) / x
                            : 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
}

}  // namespace

int64_t Rng::Poisson(double mean) {
  if (!(mean > 0)) return 0;
  // Inversion by sequential search, in chunks of mean 500 so exp(-mean) never underflows.
  int64_t total = 0;
  while (mean > 500.0) {
    total += Poisson(500.0);
    mean -= 500.0;
  }
  const double limit = std::exp(-mean);
  double product = Uniform();
  int64_t k = 0;
  while (product > limit) {
    product *= Uniform();
    ++k;
  }
  return total + k;
}

ZipfSampler::ZipfSampler(int64_t n, double exponent) : n_(n), exponent_(exponent) {
  assert(n >= 1 && exponent > 0);
  if (n <= kMaxTableRanks) {
    // Vose's alias method: O(n) build; probabilities kept to 32 bits.
    std::vector<double> p(static_cast<size_t>(n));
    double sum = 0;
    for (int64_t r = 0; r < n; ++r) {
      p[r] = std::pow(static_cast<double>(r + 1), -exponent);
      sum += p[r];
    }
    std::vector<double> prob(static_cast<size_t>(n), 1.0);
    std::vector<int32_t> alias(static_cast<size_t>(n));
    std::iota(alias.begin(), alias.end(), 0);
    std::vector<int32_t> small;
    std::vector<int32_t> large;
    for (int64_t r = 0; r < n; ++r) {
      p[r] *= static_cast<double>(n) / sum;
      (p[r] < 1.0 ? small : large).push_back(static_cast<int32_t>(r));
    }
    while (!small.empty() && !large.empty()) {
      const int32_t s = small.back();
      small.pop_back();
      const int32_t l = large.back();
      prob[s] = p[s];
      alias[s] = l;
      p[l] = (p[l] + p[s]) - 1.0;
      if (p[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    // Leftovers keep probability 1 (they are 1 up to rounding).
    table_.resize(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) {
      // A coin of 32 bits: threshold 2^32 cannot be stored, but probability 1 only needs every
      // 32-bit value to be below it, and alias == r makes the other branch harmless.
      const double scaled = std::floor(prob[r] * 4294967296.0);
      table_[r].threshold =
          scaled >= 4294967295.0 ? 0xffffffffU : static_cast<uint32_t>(std::max(0.0, scaled));
      table_[r].alias = prob[r] >= 1.0 ? static_cast<int32_t>(r) : alias[r];
    }
    return;
  }
  h_integral_x1_ = HIntegral(1.5) - 1.0;
  h_integral_n_ = HIntegral(static_cast<double>(n) + 0.5);
  s_ = 2.0 - HIntegralInverse(HIntegral(2.5) - H(2.0));
}

void ZipfSampler::SampleMany(Rng& rng, int64_t* out, int64_t count) const {
  if (table_.empty()) {
    for (int64_t j = 0; j < count; ++j) out[j] = SampleRejectionInversion(rng);
    return;
  }
  static constexpr int64_t kBlock = 32;
  uint64_t bits[kBlock];
  uint64_t slots[kBlock];
  for (int64_t begin = 0; begin < count; begin += kBlock) {
    const int64_t block = std::min(kBlock, count - begin);
    for (int64_t j = 0; j < block; ++j) {
      bits[j] = rng.NextU64();
      slots[j] = SlotOf(bits[j]);
      __builtin_prefetch(&table_[slots[j]]);
    }
    for (int64_t j = 0; j < block; ++j) out[begin + j] = FromSlot(bits[j], slots[j]);
  }
}

double ZipfSampler::H(double x) const { return std::exp(-exponent_ * std::log(x)); }

double ZipfSampler::HIntegral(double x) const {
  const double log_x = std::log(x);
  return Helper2((1.0 - exponent_) * log_x) * log_x;
}

double ZipfSampler::HIntegralInverse(double x) const {
  double t = x * (1.0 - exponent_);
  if (t < -1.0) t = -1.0;
  return std::exp(Helper1(t) * x);
}

int64_t ZipfSampler::SampleRejectionInversion(Rng& rng) const {
  // Ranks 1..n in the paper's notation; returned 0-based.
  while (true) {
    const double u = h_integral_n_ + rng.Uniform() * (h_integral_x1_ - h_integral_n_);
    const double x = HIntegralInverse(u);
    int64_t k = static_cast<int64_t>(x + 0.5);
    k = std::clamp<int64_t>(k, 1, n_);
    if (static_cast<double>(k) - x <= s_ ||
        u >= HIntegral(static_cast<double>(k) + 0.5) - H(static_cast<double>(k))) {
      return k - 1;
    }
  }
}

double ZipfSampler::HeadShare(int64_t k) const {
  k = std::clamp<int64_t>(k, 0, n_);
  // Sum exactly up to a bound, then approximate the remaining terms by the integral of x^-s
  // by the midpoint rule, whose error that far out is below 1e-10.
  static constexpr int64_t kExactTerms = int64_t{1} << 16;
  auto partial = [this](int64_t m) {
    double sum = 0;
    const int64_t exact = std::min(m, kExactTerms);
    for (int64_t r = 1; r <= exact; ++r) sum += std::pow(static_cast<double>(r), -exponent_);
    if (m > exact) {
      const double a = static_cast<double>(exact) + 0.5;
      const double b = static_cast<double>(m) + 0.5;
      sum += exponent_ == 1.0 ? std::log(b / a)
                              : (std::pow(b, 1.0 - exponent_) - std::pow(a, 1.0 - exponent_)) /
                                    (1.0 - exponent_);
    }
    return sum;
  };
  return partial(k) / partial(n_);
}

Permutation::Permutation(int64_t n, uint64_t seed) : n_(std::max<int64_t>(n, 1)) {
  const uint64_t un = static_cast<uint64_t>(n_);
  // A multiplier near n / golden ratio spreads consecutive ranks far apart; step until coprime.
  uint64_t a = static_cast<uint64_t>(static_cast<double>(un) * 0.6180339887498949) +
               SplitMix64(seed) % std::max<uint64_t>(un / 16, 1);
  a = un == 1 ? 1 : std::max<uint64_t>(a % un, 1);
  while (std::gcd(a, un) != 1) a = a + 1 < un ? a + 1 : 1;
  a_ = a;
  b_ = SplitMix64(seed ^ 0x5bd1e995ULL) % un;
  if (un <= (uint64_t{1} << 32)) barrett_ = ~uint64_t{0} / un;
}

}  // namespace helm::workload
