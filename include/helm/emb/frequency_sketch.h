// The EMB cache's admission filter (DESIGN.md §3): a count-min sketch of 8-bit counters with
// conservative update, aged by halving every counter once a period, a slice at a time.
//
// Layout: the counters are cut into 64-byte blocks (one cache line); an id's 4 counters lie in one
// block, one in each 16-counter quarter of it, as in Caffeine's FrequencySketch. An estimate or an
// increment then costs one cache miss instead of four (the cache's miss path increments and
// estimates once per missed id, on tables far larger than any CPU cache), at the price of a
// little more collision bias than 4 independent rows.
//
// Thread-compatible: the cache calls Estimate under its reader lock and the rest under its writer
// lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace helm::emb {

class FrequencySketch {
 public:
  static constexpr int kDepth = 4;  // counters per id

  // At least `min_counters` counters (rounded up to a power of two, at least 4 blocks).
  explicit FrequencySketch(int64_t min_counters);

  // The count-min estimate of `id` (0..255).
  uint8_t Estimate(int64_t id) const;
  // Raises the id's counters that sit at its minimum to min(255, minimum + amount) (conservative
  // update: rare ids that share a counter with a hot one stay low).
  void Increment(int64_t id, int amount);

  // Starts loading the id's block into the CPU cache (a batch's misses prefetch theirs first, so
  // that their cache misses overlap).
  void Prefetch(int64_t id) const;

  // Aging. StartHalving finishes the previous period's halving, then starts one; HalveSlice halves
  // the next `max_counters` counters of the period under way (none when it is done). Until the
  // last slice, estimates of ids whose counters are not halved yet run up to 2x high.
  void StartHalving();
  void HalveSlice(size_t max_counters);
  bool halving() const { return halved_ < size_; }

  size_t size() const { return size_; }

 private:
  static constexpr size_t kBlockBytes = 64;
  // The id's block's first counter and its counter offsets within the block's quarters.
  void Locate(int64_t id, size_t index[kDepth]) const;

  std::unique_ptr<uint8_t[]> storage_;  // size_ + kBlockBytes, so that counters_ is line-aligned
  uint8_t* counters_ = nullptr;
  size_t size_ = 0;
  uint64_t block_mask_ = 0;
  size_t halved_ = 0;  // counters below this index are halved for the current period
};

}  // namespace helm::emb
