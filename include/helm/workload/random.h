// Random number generation for workloads: a small, fast, seedable generator and the samplers the
// workload generator needs (uniform, exponential, normal, Poisson, Zipf), implemented here rather
// than with <random>'s distributions so that a seed gives the same stream on every platform and
// standard library. Thread-compatible: each thread owns its generators and samplers.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "helm/common/hash.h"

namespace helm::workload {

// xoshiro256** (Blackman & Vigna): 2^256 - 1 period, a few ns per draw.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t x = seed;
    for (uint64_t& word : s_) {
      x = SplitMix64(x);
      word = x;
    }
  }

  uint64_t NextU64() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }
  // Uniform in (0, 1]: safe to take the logarithm of.
  double UniformPositive() { return 1.0 - Uniform(); }
  // Uniform integer in [0, n); REQUIRES: n > 0. Lemire's multiply-shift (bias < n / 2^64).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(NextU64()) * n) >> 64);
  }
  bool Bernoulli(double p) { return Uniform() < p; }
  // Exponential with the given mean.
  double Exponential(double mean) { return -mean * std::log(UniformPositive()); }
  // Standard normal (Box-Muller; one value per call, the sine branch is discarded for simplicity).
  double Normal() {
    return std::sqrt(-2.0 * std::log(UniformPositive())) * std::cos(6.283185307179586 * Uniform());
  }
  // Poisson with the given mean (inversion; O(mean) draws, intended for means up to ~1000).
  int64_t Poisson(double mean);

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// Samples ranks in [0, n) with P(rank r) proportional to (r + 1)^-exponent.
//
// Catalogs up to kMaxTableRanks use Walker/Vose alias tables (O(1) per draw, 8 bytes per rank,
// built in O(n)); larger ones use rejection-inversion (Hoermann & Derflinger 1996: O(1) expected
// per draw, no table), so a 32M-item catalog needs no memory.
class ZipfSampler {
 public:
  static constexpr int64_t kMaxTableRanks = int64_t{1} << 21;

  // REQUIRES: n >= 1, exponent > 0.
  ZipfSampler(int64_t n, double exponent);

  int64_t Sample(Rng& rng) const {
    if (!table_.empty()) {
      const uint64_t bits = rng.NextU64();
      return FromSlot(bits, SlotOf(bits));
    }
    return SampleRejectionInversion(rng);
  }

  // Writes `count` draws to out[0, count): the same values, from the same stream, as `count`
  // calls of Sample. An alias table's slots are prefetched a block ahead of their use, so that
  // their cache misses (one per draw in a table of megabytes) overlap instead of queueing.
  void SampleMany(Rng& rng, int64_t* out, int64_t count) const;

  int64_t n() const { return n_; }
  double exponent() const { return exponent_; }
  // Exact probability mass of ranks [0, k) (for tests and reports); O(k) terms plus an integral
  // estimate of the rest when n is large.
  double HeadShare(int64_t k) const;

 private:
  // An alias-table draw takes one 64-bit value: the high bits pick the slot, the low 32 bits are
  // the coin that keeps its rank or takes its alias.
  uint64_t SlotOf(uint64_t bits) const {
    return static_cast<uint64_t>(
        (static_cast<unsigned __int128>(bits) * static_cast<uint64_t>(n_)) >> 64);
  }
  int64_t FromSlot(uint64_t bits, uint64_t i) const {
    const Slot& slot = table_[i];
    return (bits & 0xffffffffULL) < slot.threshold ? static_cast<int64_t>(i) : slot.alias;
  }
  int64_t SampleRejectionInversion(Rng& rng) const;
  double H(double x) const;
  double HIntegral(double x) const;
  double HIntegralInverse(double x) const;

  int64_t n_;
  double exponent_;
  // Alias table (small catalogs): keep rank i with probability threshold / 2^32, else take
  // `alias`. One 8-byte slot per rank, so a draw touches one cache line.
  struct Slot {
    uint32_t threshold;
    int32_t alias;
  };
  std::vector<Slot> table_;
  // Rejection-inversion constants (large catalogs).
  double h_integral_x1_ = 0;
  double h_integral_n_ = 0;
  double s_ = 0;
};

// A bijection of [0, n): x -> (a * x + b) mod n with gcd(a, n) = 1, chosen from a seed. Maps
// popularity ranks to ids so that the popular ids are spread over the catalog. O(1), no table;
// catalogs below 2^32 take a division-free (Barrett) path, a few ns per call.
class Permutation {
 public:
  Permutation(int64_t n, uint64_t seed);
  // REQUIRES: 0 <= x < n.
  int64_t operator()(int64_t x) const {
    const uint64_t un = static_cast<uint64_t>(n_);
    if (barrett_ != 0) {
      // a, x < n <= 2^32, so a * x + b < 2^64; the estimated quotient is low by at most 2.
      const uint64_t v = a_ * static_cast<uint64_t>(x) + b_;
      const uint64_t q =
          static_cast<uint64_t>((static_cast<unsigned __int128>(v) * barrett_) >> 64);
      uint64_t r = v - q * un;
      while (r >= un) r -= un;
      return static_cast<int64_t>(r);
    }
    return static_cast<int64_t>(
        (static_cast<unsigned __int128>(a_) * static_cast<uint64_t>(x) + b_) % un);
  }
  int64_t n() const { return n_; }

 private:
  int64_t n_;
  uint64_t a_;
  uint64_t b_;
  uint64_t barrett_ = 0;  // floor((2^64 - 1) / n) when n <= 2^32, else 0
};

}  // namespace helm::workload
