// EmbCache: slots, frequency aging, and the sampled-LFU victim search with TinyLFU admission.

#include <algorithm>
#include <cstdint>

#include "emb_cache_internal.h"
#include "helm/emb/emb_cache.h"

namespace helm::emb {
namespace {

constexpr size_t kSketchHalvingSlice = 64 << 10;  // sketch counters halved per writer section
constexpr int kVictimAttempts = 32;               // random slots tried per eviction at most

}  // namespace

using internal::AgePeriod;
using internal::Atomic;
using internal::Decay;
using internal::kVictimSamples;
using internal::ReturnFrequency;

void EmbCache::MaybeAgeLocked() {
  const int64_t period = AgePeriod(options_.sketch_reset_factor, slots_.capacity());
  if (accesses_since_age_.load(std::memory_order_relaxed) >= period) {
    accesses_since_age_.fetch_sub(period, std::memory_order_relaxed);
    // The last period's halving, when too few writer sections came to finish it, ends now.
    sketch_.StartHalving();
    // Resident frequencies halve lazily: each entry remembers the period it was last updated in.
    age_epoch_.fetch_add(1, std::memory_order_relaxed);
  }
  // One slice (a few microseconds) per section. Until the last slice, estimates of ids whose
  // counters are not halved yet run up to 2x high: admission is briefly a little more lenient.
  sketch_.HalveSlice(kSketchHalvingSlice);
}

uint8_t EmbCache::EffectiveFreq(const Entry& e) const {
  const uint8_t now = age_epoch_.load(std::memory_order_relaxed);
  return Decay(Atomic(const_cast<uint8_t&>(e.freq)).load(std::memory_order_relaxed),
               static_cast<uint8_t>(
                   now - Atomic(const_cast<uint8_t&>(e.age)).load(std::memory_order_relaxed)));
}

// ---- Slots and eviction ------------------------------------------------------------------------

void EmbCache::FreeSlotLocked(uint32_t slot) {
  SlotId(slot) = kFreeSlot;
  slots_.Free(slot);
}

void EmbCache::RetireSlotLocked(uint32_t slot, uint64_t tag, uint64_t min_live) {
  if (tag < min_live && Pins(slot) == 0) {
    FreeSlotLocked(slot);
  } else {
    SlotId(slot) = kLimboSlot;
    limbo_.push_back(Limbo{slot, tag});
  }
}

void EmbCache::ReclaimLimboLocked(uint64_t min_live) {
  for (size_t i = 0; i < limbo_.size();) {
    if (limbo_[i].tag < min_live && Pins(limbo_[i].slot) == 0) {
      FreeSlotLocked(limbo_[i].slot);
      limbo_[i] = limbo_.back();
      limbo_.pop_back();
    } else {
      ++i;
    }
  }
}

int64_t EmbCache::FindVictimLocked(uint64_t min_live, int64_t* visits) {
  // Sampled LFU: of a few random resident rows that no live lookup may read, the least frequent
  // (frequencies decay by aging, which supplies recency) goes. Bounded work per eviction, and no
  // CLOCK sweep that would have to pass every recently hit row.
  const int32_t per_chunk = slots_.slots_per_chunk();
  const size_t chunks = victim_chunks_.size();
  if (chunks == 0) return -1;
  int64_t best = -1;
  int best_freq = 256;
  int samples = 0;
  int attempts = 0;
  // Rounds of kVictimSamples random slots: first every slot's id, then every id's index entry is
  // requested for the whole round, so that its cache misses overlap instead of following one
  // another (this search runs inside writer-lock sections).
  uint32_t slots[kVictimSamples];
  int64_t ids[kVictimSamples];
  while (attempts < kVictimAttempts && samples < kVictimSamples) {
    const int round = std::min(kVictimSamples, kVictimAttempts - attempts);
    for (int r = 0; r < round; ++r) {
      victim_rng_ ^= victim_rng_ << 13;
      victim_rng_ ^= victim_rng_ >> 7;
      victim_rng_ ^= victim_rng_ << 17;
      const int32_t chunk = victim_chunks_[(victim_rng_ >> 32) % chunks];
      slots[r] = slots_.Slot(chunk, static_cast<int32_t>((victim_rng_ & 0xffffffffu) % per_chunk));
      __builtin_prefetch(&SlotId(slots[r]));
    }
    for (int r = 0; r < round; ++r) {
      ids[r] = SlotId(slots[r]);
      if (ids[r] >= 0) index_.prefetch(ids[r]);
    }
    for (int r = 0; r < round && samples < kVictimSamples; ++r) {
      ++attempts;
      if (ids[r] < 0) continue;
      Entry& e = index_.find(ids[r])->second;
      // Being filled, or possibly read by a live lookup.
      if (e.filling || e.tag >= min_live || Pins(slots[r]) > 0) continue;
      ++samples;
      const uint8_t freq = EffectiveFreq(e);
      if (freq < best_freq) {
        best = ids[r];
        best_freq = freq;
      }
    }
  }
  if (visits != nullptr) *visits += attempts;
  return best;
}

void EmbCache::EvictLocked(Index::iterator it) {
  const int64_t id = it->first;
  const Entry& e = it->second;
  ReturnFrequency(sketch_, id, EffectiveFreq(e));
  --chunk_live_[slots_.Chunk(e.slot)];
  index_.erase(it);
  if (ghost_sampler_.Contains(id)) ghost_.Add(id, 1);
  s_evictions_.fetch_add(1, std::memory_order_relaxed);
}

int64_t EmbCache::TakeSlotLocked(uint8_t candidate_freq, bool use_admission, uint64_t self,
                                 uint64_t* min_live, int64_t* victim_hint, bool* rejected) {
  *rejected = false;
  const int64_t free_slot = slots_.Allocate();
  if (free_slot >= 0) return free_slot;
  int64_t victim = *victim_hint;
  if (victim < 0) {
    victim = FindVictimLocked(*min_live, nullptr);
    if (victim < 0 && EscalateLocked(self, min_live)) victim = FindVictimLocked(*min_live, nullptr);
  }
  if (victim < 0) {
    *rejected = true;
    return -1;
  }
  auto it = index_.find(victim);
  if (use_admission && candidate_freq <= EffectiveFreq(it->second)) {
    // The victim stays the one to beat for the section's next misses (TinyLFU compares each
    // candidate against the eviction policy's one victim), sparing a search per rejection.
    *victim_hint = victim;
    *rejected = true;
    return -1;
  }
  *victim_hint = -1;
  const uint32_t slot = it->second.slot;
  EvictLocked(it);
  // No live lookup reads the victim (FindVictimLocked checked its tag and pins): reuse it now.
  SlotId(slot) = kReservedSlot;
  return slot;
}

}  // namespace helm::emb
