// A Bloom filter over int64 ids, used for the EMB hot-set summary that each node publishes and the
// router reads (proto helm.v1.EmbSummary). Every node uses the same size and hash functions, so
// the router can index all nodes' filters by the same bit positions.
//
// Thread-compatible: build on one thread, then share read-only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace helm {

class BloomFilter {
 public:
  // `bits` is rounded up to a power of two (at least 64); `num_hashes` in [1, 16].
  BloomFilter(int64_t bits, int num_hashes, uint64_t seed);

  // Builds a filter from its wire form (helm.v1.EmbSummary.bits, little-endian words).
  static BloomFilter FromBytes(const std::string& bytes, int num_hashes, uint64_t seed);

  void Add(int64_t id);
  bool MayContain(int64_t id) const;
  void Clear();

  int64_t bits() const { return static_cast<int64_t>(words_.size()) * 64; }
  int num_hashes() const { return num_hashes_; }
  uint64_t seed() const { return seed_; }
  bool TestBit(int64_t position) const { return (words_[position >> 6] >> (position & 63)) & 1; }
  std::string ToBytes() const;

  // The bit positions of `id` in a filter of `bits` bits (a power of two): out[0..num_hashes).
  static void Positions(int64_t id, int64_t bits, int num_hashes, uint64_t seed, int64_t* out);

 private:
  std::vector<uint64_t> words_;
  int num_hashes_;
  uint64_t seed_;
};

}  // namespace helm
