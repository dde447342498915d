// Helpers that emb_cache.cc (creation, lookups, readers) and emb_eviction.cc (slots, aging,
// victims) share. The other EmbCache translation units: emb_pins.cc (live lookups), emb_lock.cc
// (the lock between lookups and drains), emb_resize.cc (chunks added and drained, prefetch).
// emb_shadow.cc shares the eviction's constants. Private to src/emb.
#pragma once

#include <atomic>
#include <cstdint>

namespace helm::emb::internal {

// Atomic access to a plain field that lookups read under a shared lock while a writer may set it.
template <typename T>
std::atomic_ref<T> Atomic(T& field) {
  return std::atomic_ref<T>(field);
}

// Resident rows compared per eviction (the cache's sampled LFU, and its miniature's: emb_shadow.h).
inline constexpr int kVictimSamples = 8;

// A frequency after `periods` halvings (aging).
inline uint8_t Decay(uint8_t freq, uint8_t periods) {
  return periods >= 8 ? 0 : static_cast<uint8_t>(freq >> periods);
}

}  // namespace helm::emb::internal
