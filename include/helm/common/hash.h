// Small 64-bit hash functions shared by the caches, the router and the workload generators.
// Header-only; every function is pure and cheap (a few multiplies).
#pragma once

#include <cstdint>

namespace helm {

// SplitMix64 step (Steele, Lea, Flood): a well-mixed 64-bit function of `x`, used for seeding
// and for hashing ids.
inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// MurmurHash3's 64-bit finaliser: a bijective mix with full avalanche; Fmix64(0) == 0.
inline uint64_t Fmix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// A non-zero fingerprint of a history's first event (item, action, timestamp). A node's KV cache
// records it for each user's cached history and publishes it in its residency events; the router
// computes it from each request. When a client drops a user's oldest events the fingerprint
// changes, and K/V cached for the old start cannot be reused (the node's prefix hash would miss).
inline uint64_t HistoryStartFingerprint(int64_t item_id, int32_t action, int64_t timestamp_ms) {
  const uint64_t h = SplitMix64(SplitMix64(static_cast<uint64_t>(item_id) ^ 0x9e3779b97f4a7c15ull) ^
                                (static_cast<uint64_t>(static_cast<uint32_t>(action)) << 32) ^
                                static_cast<uint64_t>(timestamp_ms));
  return h | 1;
}

}  // namespace helm
