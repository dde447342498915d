// EmbCache: the lock between lookups (shared) and resize sections (exclusive), with bounded spins.

#include <atomic>
#include <cstdint>

#include "helm/emb/emb_cache.h"

namespace helm::emb {
namespace {

// How long a lookup spins for the lock before it blocks, how long a drain holds back its next
// section while lookups wait for the lock, and how long it then spins for the lock itself, read
// on the pool's clock. On a clock that does not advance a spin lasts until the lock frees (never
// longer: holders never wait for spinners); single-threaded runs never spin.
constexpr int64_t kLookupSpinUs = 500;
constexpr int64_t kMaxYieldToLookupsUs = 2000;
constexpr int64_t kDrainSpinUs = 2000;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

void EmbCache::LockForLookup(bool exclusive) const {
  auto try_lock = [&] { return exclusive ? mu_.TryLock() : mu_.ReaderTryLock(); };
  lookups_waiting_.fetch_add(1, std::memory_order_relaxed);
  if (!try_lock()) {
    const int64_t give_up_us = clock_->NowMicros() + kLookupSpinUs;
    for (;;) {
      CpuRelax();
      if (try_lock()) break;
      if (clock_->NowMicros() >= give_up_us) {
        exclusive ? mu_.Lock() : mu_.ReaderLock();
        break;
      }
    }
  }
  lookups_waiting_.fetch_sub(1, std::memory_order_relaxed);
}

void EmbCache::LockForDrain() const {
  YieldToLookups();
  if (mu_.TryLock()) return;
  const int64_t give_up_us = clock_->NowMicros() + kDrainSpinUs;
  for (;;) {
    CpuRelax();
    // A lookup that started waiting meanwhile goes first.
    if (lookups_waiting_.load(std::memory_order_relaxed) > 0) YieldToLookups();
    if (mu_.TryLock()) return;
    if (clock_->NowMicros() >= give_up_us) {
      mu_.Lock();
      return;
    }
  }
}

void EmbCache::YieldToLookups() const {
  if (lookups_waiting_.load(std::memory_order_relaxed) == 0) return;
  const int64_t give_up_us = clock_->NowMicros() + kMaxYieldToLookupsUs;
  while (lookups_waiting_.load(std::memory_order_relaxed) > 0 && clock_->NowMicros() < give_up_us) {
    CpuRelax();
  }
}

}  // namespace helm::emb
