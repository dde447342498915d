#include "helm/common/bloom.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "helm/common/hash.h"

namespace helm {

BloomFilter::BloomFilter(int64_t bits, int num_hashes, uint64_t seed)
    : words_(std::bit_ceil(static_cast<uint64_t>(std::max<int64_t>(bits, 64))) / 64, 0),
      num_hashes_(std::clamp(num_hashes, 1, 16)),
      seed_(seed) {}

BloomFilter BloomFilter::FromBytes(const std::string& bytes, int num_hashes, uint64_t seed) {
  BloomFilter filter(static_cast<int64_t>(bytes.size()) * 8, num_hashes, seed);
  // A size that is not a whole power of two of words keeps the prefix that fits.
  std::memcpy(filter.words_.data(), bytes.data(),
              std::min(bytes.size(), filter.words_.size() * sizeof(uint64_t)));
  return filter;
}

void BloomFilter::Positions(int64_t id, int64_t bits, int num_hashes, uint64_t seed, int64_t* out) {
  // Double hashing (Kirsch-Mitzenmacher): positions h1 + i * h2.
  const uint64_t h = SplitMix64(static_cast<uint64_t>(id) ^ seed);
  const uint64_t h1 = h;
  const uint64_t h2 = SplitMix64(h) | 1;
  const uint64_t mask = static_cast<uint64_t>(bits) - 1;
  for (int i = 0; i < num_hashes; ++i) out[i] = static_cast<int64_t>((h1 + i * h2) & mask);
}

void BloomFilter::Add(int64_t id) {
  int64_t positions[16];
  Positions(id, bits(), num_hashes_, seed_, positions);
  for (int i = 0; i < num_hashes_; ++i)
    words_[positions[i] >> 6] |= uint64_t{1} << (positions[i] & 63);
}

bool BloomFilter::MayContain(int64_t id) const {
  int64_t positions[16];
  Positions(id, bits(), num_hashes_, seed_, positions);
  for (int i = 0; i < num_hashes_; ++i) {
    if (!TestBit(positions[i])) return false;
  }
  return true;
}

void BloomFilter::Clear() { std::fill(words_.begin(), words_.end(), 0); }

std::string BloomFilter::ToBytes() const {
  return std::string(reinterpret_cast<const char*>(words_.data()),
                     words_.size() * sizeof(uint64_t));
}

}  // namespace helm
