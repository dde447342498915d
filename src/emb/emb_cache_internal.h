// Helpers that emb_cache.cc (creation, lookups, readers) and emb_eviction.cc (slots, aging,
// victims) share. The other EmbCache translation units: emb_pins.cc (live lookups), emb_lock.cc
// (the lock between lookups and drains), emb_resize.cc (chunks added and drained, prefetch).
// emb_shadow.cc shares the eviction's constants. Private to src/emb.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "helm/emb/frequency_sketch.h"

namespace helm::emb::internal {

// Atomic access to a plain field that lookups read under a shared lock while a writer may set it.
template <typename T>
std::atomic_ref<T> Atomic(T& field) {
  return std::atomic_ref<T>(field);
}

// The policy's rules, the cache's and its miniature's (emb_shadow.h) alike.

// Resident rows compared per eviction (sampled LFU).
inline constexpr int kVictimSamples = 8;

// A frequency after `periods` halvings (aging).
inline uint8_t Decay(uint8_t freq, uint8_t periods) {
  return periods >= 8 ? 0 : static_cast<uint8_t>(freq >> periods);
}

// A frequency one use later (8-bit, saturating).
inline uint8_t Bumped(uint8_t freq) { return freq == 255 ? freq : static_cast<uint8_t>(freq + 1); }

// Accesses between two agings of a cache of `capacity` rows: sketch_reset_factor x capacity.
inline int64_t AgePeriod(int32_t reset_factor, int64_t capacity) {
  return std::max<int64_t>(1, int64_t{reset_factor} * std::max<int64_t>(capacity, 1));
}

// An evicted row's frequency goes back to the sketch (which sees misses, not hits), so that a
// quick return is judged on its whole history.
inline void ReturnFrequency(FrequencySketch& sketch, int64_t id, uint8_t freq) {
  const uint8_t est = sketch.Estimate(id);
  if (freq > est) sketch.Increment(id, freq - est);
}

}  // namespace helm::emb::internal
