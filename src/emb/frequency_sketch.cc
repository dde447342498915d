#include "helm/emb/frequency_sketch.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "helm/common/hash.h"

namespace helm::emb {

FrequencySketch::FrequencySketch(int64_t min_counters) {
  size_ = std::bit_ceil(
      static_cast<uint64_t>(std::max<int64_t>(min_counters, int64_t{4} * kBlockBytes)));
  storage_ = std::make_unique<uint8_t[]>(size_ + kBlockBytes);
  const uintptr_t base = reinterpret_cast<uintptr_t>(storage_.get());
  counters_ = storage_.get() + ((kBlockBytes - base % kBlockBytes) % kBlockBytes);
  std::memset(counters_, 0, size_);
  block_mask_ = size_ / kBlockBytes - 1;
  halved_ = size_;
}

void FrequencySketch::Locate(int64_t id, size_t index[kDepth]) const {
  const uint64_t h1 = Fmix64(static_cast<uint64_t>(id));
  const uint64_t h2 = Fmix64(h1 ^ 0x9e3779b97f4a7c15ull);
  const size_t block = static_cast<size_t>(h1 & block_mask_) * kBlockBytes;
  constexpr size_t kQuarter = kBlockBytes / kDepth;
  for (int r = 0; r < kDepth; ++r) {
    index[r] = block + r * kQuarter + static_cast<size_t>((h2 >> (8 * r)) % kQuarter);
  }
}

void FrequencySketch::Prefetch(int64_t id) const {
  const uint64_t h1 = Fmix64(static_cast<uint64_t>(id));
  __builtin_prefetch(counters_ + static_cast<size_t>(h1 & block_mask_) * kBlockBytes, 1);
}

uint8_t FrequencySketch::Estimate(int64_t id) const {
  size_t index[kDepth];
  Locate(id, index);
  uint8_t est = 255;
  for (int r = 0; r < kDepth; ++r) est = std::min(est, counters_[index[r]]);
  return est;
}

void FrequencySketch::Increment(int64_t id, int amount) {
  size_t index[kDepth];
  Locate(id, index);
  uint8_t est = 255;
  for (int r = 0; r < kDepth; ++r) est = std::min(est, counters_[index[r]]);
  const uint8_t target = static_cast<uint8_t>(std::min(255, est + amount));
  for (int r = 0; r < kDepth; ++r) {
    if (counters_[index[r]] < target) counters_[index[r]] = target;
  }
}

void FrequencySketch::StartHalving() {
  HalveSlice(size_ - halved_);
  halved_ = 0;
}

void FrequencySketch::HalveSlice(size_t max_counters) {
  const size_t end = std::min(size_, halved_ + max_counters);
  uint8_t* counters = counters_;
  for (size_t i = halved_; i < end; ++i) counters[i] >>= 1;  // locals only: this vectorises
  halved_ = end;
}

}  // namespace helm::emb
