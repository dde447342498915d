// EmbCache as a pool::ChunkClient: chunks added, drained (rows relocated or dropped) and released;
// background prefetch of hot rows into free slots.

#include <algorithm>
#include <atomic>
#include <functional>
#include <vector>

#include "helm/common/logging.h"  // absl::Status in spdlog messages
#include "helm/emb/emb_cache.h"
#include "spdlog/spdlog.h"

namespace helm::emb {
namespace {

// Bounds on what one writer-lock hold of a resize step does (the lookup p99 depends on them):
// about 10 us (p90; p99 13 us) on a 2-core dev VM. Lookups wait at most one section
// (LockForLookup, LockForDrain). Shorter sections shorten that wait and lengthen the resize (each
// section moves fewer rows): twice these bounds made lookups during a resize 1.6x slower at p99
// than idle (3x in some runs) against 1.25x, and the resize 1.7x faster.
constexpr int kDrainSlotsPerLock = 16;
constexpr int64_t kDrainVisitsPerLock = 64;  // slots tried by victim searches
constexpr int64_t kDrainBytesPerLock = int64_t{32} << 10;
constexpr size_t kPrefetchDistance = 8;  // ids ahead whose index slot is prefetched

}  // namespace

// ---- Resize (pool::ChunkClient) ----------------------------------------------------------------

void EmbCache::AddChunk(int32_t chunk) {
  absl::MutexLock lock(&mu_);
  slots_.AddChunk(chunk);
  const int32_t per_chunk = slots_.slots_per_chunk();
  chunk_ids_[chunk].reset(new int64_t[static_cast<size_t>(per_chunk)]);
  std::fill_n(chunk_ids_[chunk].get(), per_chunk, kFreeSlot);
  chunk_pins_[chunk].reset(new int32_t[static_cast<size_t>(per_chunk)]());
  chunk_live_[chunk] = 0;
  victim_chunks_.push_back(chunk);
}

int32_t EmbCache::BeginRelease() {
  absl::MutexLock lock(&mu_);
  int32_t best = -1;
  for (int32_t c = 0; c < pool_->num_chunks(); ++c) {
    if (!slots_.Owns(c) || slots_.Draining(c)) continue;
    if (best < 0 || chunk_live_[c] < chunk_live_[best]) best = c;
  }
  if (best >= 0) {
    slots_.BeginDrain(best);
    drain_cursor_ = 0;
    drain_victim_freq_ = 0;
    victim_chunks_.erase(std::find(victim_chunks_.begin(), victim_chunks_.end(), best));
  }
  return best;
}

void EmbCache::CancelRelease(int32_t chunk) {
  absl::MutexLock lock(&mu_);
  if (!slots_.Owns(chunk) || !slots_.Draining(chunk)) return;
  slots_.CancelDrain(chunk);
  victim_chunks_.push_back(chunk);  // its rows may be evicted again
  drain_cursor_ = 0;
  drain_victim_freq_ = 0;
}

std::vector<int32_t> EmbCache::HeldChunks() const {
  absl::ReaderMutexLock lock(&mu_);
  return slots_.OwnedChunks();
}

pool::DrainResult EmbCache::Drain(int32_t chunk, int64_t max_bytes) {
  pool::DrainResult result;
  struct Move {
    int64_t id;
    uint32_t src;
    uint32_t dst;
  };
  std::vector<Move> moves;
  std::vector<pool::PoolCopy> copies;
  // The budget bounds the work of this call: every row handled (moved or dropped) uses its bytes.
  int64_t budget = max_bytes;
  for (;;) {
    moves.clear();
    copies.clear();
    bool pass_done = false;
    {
      DrainLock lock(this);
      const int32_t per_chunk = slots_.slots_per_chunk();
      if (!slots_.Owns(chunk) || !slots_.Draining(chunk)) {
        result.empty = !slots_.Owns(chunk);
        return result;
      }
      uint64_t min_live = MinLiveSerial();
      // Without new epochs, a stream of overlapping lookups would keep vacated slots in limbo.
      AdvanceEpochLocked();
      ReclaimLimboLocked(min_live);
      int examined = 0;
      int64_t visits = 0;
      int64_t handled = 0;
      while (examined < kDrainSlotsPerLock && visits < kDrainVisitsPerLock &&
             handled + row_bytes_ <= std::min(budget, kDrainBytesPerLock)) {
        if (drain_cursor_ >= per_chunk) {
          drain_cursor_ = 0;
          pass_done = true;
          break;
        }
        if (drain_cursor_ + kPrefetchDistance < static_cast<size_t>(per_chunk)) {
          const int64_t ahead = SlotId(slots_.Slot(chunk, drain_cursor_ + kPrefetchDistance));
          if (ahead >= 0) index_.prefetch(ahead);
        }
        const uint32_t slot = slots_.Slot(chunk, drain_cursor_++);
        ++examined;
        const int64_t id = SlotId(slot);
        if (id < 0) continue;
        auto it = index_.find(id);
        Entry& e = it->second;
        if (e.filling) continue;  // revisited on the next pass
        handled += row_bytes_;
        // Free room takes any row. Displacing another row needs a victim search, worth it only
        // for a row hotter than the victims recent searches met (that level decays slowly, so
        // a mostly-cold chunk is dropped without searching for every row).
        const uint8_t freq = EffectiveFreq(e);
        int64_t dst = slots_.Allocate();
        if (dst < 0 && freq > drain_victim_freq_) {
          const int64_t victim = FindVictimLocked(min_live, &visits);
          if (victim >= 0) {
            auto vit = index_.find(victim);
            const uint8_t victim_freq = EffectiveFreq(vit->second);
            if (victim_freq < freq) {
              dst = vit->second.slot;
              EvictLocked(vit);
            } else {
              drain_victim_freq_ = victim_freq;
            }
          }
        } else if (dst < 0 && drain_victim_freq_ > 0 && ++drain_skips_ % 32 == 0) {
          --drain_victim_freq_;
        }
        if (dst >= 0) {
          SlotId(static_cast<uint32_t>(dst)) = kReservedSlot;
          moves.push_back(Move{id, slot, static_cast<uint32_t>(dst)});
          copies.push_back(pool::PoolCopy{slots_.Offset(slot),
                                          slots_.Offset(static_cast<uint32_t>(dst)), row_bytes_});
        } else {
          // Colder than what it could displace: drop it (the host table keeps the row).
          const uint64_t tag = e.tag;
          --chunk_live_[chunk];
          index_.erase(it);
          if (ghost_sampler_.Contains(id)) ghost_.Add(id, 1);
          RetireSlotLocked(slot, tag, min_live);
          result.dropped_bytes += row_bytes_;
          s_dropped_.fetch_add(1, std::memory_order_relaxed);
        }
      }
      budget -= handled - static_cast<int64_t>(moves.size()) * row_bytes_;  // drops
      if (moves.empty()) {
        if (slots_.Used(chunk) == 0) {
          slots_.RemoveChunk(chunk);
          chunk_ids_[chunk].reset();
          chunk_pins_[chunk].reset();
          chunk_live_[chunk] = 0;
          result.empty = true;
          return result;
        }
        if (pass_done && EscalateLocked(0, &min_live)) {
          // Old results protected whole generations of rows: now only what they returned is.
          ReclaimLimboLocked(min_live);
          continue;
        }
        if (pass_done || budget < row_bytes_) {
          // Out of budget, or everything left is being filled or pinned by live lookups.
          result.blocked = pass_done;
          result.remaining_bytes = int64_t{slots_.Used(chunk)} * row_bytes_;
          return result;
        }
        continue;
      }
    }
    // The copy runs without the lock: destinations are reserved (no lookup sees them) and
    // sources stay put (a draining chunk is never an eviction victim); the commit re-checks
    // each entry anyway and discards a copy whose entry moved on.
    absl::Status copied = storage_->CopyPoolToPool(copies);
    {
      DrainLock lock(this);
      const uint64_t min_live = MinLiveSerial();
      for (const Move& m : moves) {
        auto it = index_.find(m.id);
        if (copied.ok() && it != index_.end() && it->second.slot == m.src && !it->second.filling) {
          Entry& e = it->second;
          const uint64_t tag = e.tag;
          e.slot = m.dst;
          SlotId(m.dst) = m.id;
          --chunk_live_[slots_.Chunk(m.src)];
          ++chunk_live_[slots_.Chunk(m.dst)];
          RetireSlotLocked(m.src, tag, min_live);
          s_relocated_.fetch_add(1, std::memory_order_relaxed);
        } else {
          FreeSlotLocked(m.dst);
        }
      }
      result.remaining_bytes = int64_t{slots_.Used(chunk)} * row_bytes_;
    }
    if (!copied.ok()) {
      spdlog::error("emb resize: relocation copy failed: {}", copied);
      result.blocked = true;
      return result;
    }
    const int64_t bytes = static_cast<int64_t>(moves.size()) * row_bytes_;
    result.copied_bytes += bytes;
    budget -= bytes;
    if (budget < row_bytes_) return result;
  }
}

int64_t EmbCache::Prefetch(int64_t max_bytes) {
  if (max_bytes < row_bytes_) return 0;
  std::vector<pool::HostCopy> copies;
  std::vector<int64_t> ids;
  // Yield to foreground lookups: never wait for the lock.
  if (!mu_.TryLock()) return 0;
  {
    MaybeAgeLocked();  // a writer section like any other: it advances the sketch's halving
    std::vector<std::pair<uint8_t, int64_t>> candidates;
    for (int64_t id : rejected_) {
      if (id >= 0 && !index_.contains(id)) candidates.emplace_back(sketch_.Estimate(id), id);
    }
    std::sort(candidates.begin(), candidates.end(), std::greater<>());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
    const uint8_t now = age_epoch_.load(std::memory_order_relaxed);
    for (const auto& [freq, id] : candidates) {
      if (static_cast<int64_t>(ids.size() + 1) * row_bytes_ > max_bytes) break;
      if (index_.contains(id)) continue;
      const int64_t slot = slots_.Allocate();  // free slots only: prefetch never evicts
      if (slot < 0) break;
      const int64_t offset =
          PlaceFillingLocked(id, static_cast<uint32_t>(slot), Entry{.age = now, .freq = freq});
      copies.push_back(pool::HostCopy{offset, table_ ? table_->Row(id) : nullptr, row_bytes_});
      ids.push_back(id);
    }
    for (int64_t& id : rejected_) {
      if (id >= 0 && index_.contains(id)) id = -1;
    }
  }
  mu_.Unlock();
  if (ids.empty()) return 0;
  if (absl::Status s = storage_->CopyHostToPool(copies); !s.ok()) {
    spdlog::error("emb prefetch: copy failed: {}", s);
    absl::MutexLock lock(&mu_);
    for (int64_t id : ids) {
      auto it = index_.find(id);
      const uint32_t slot = it->second.slot;
      --chunk_live_[slots_.Chunk(slot)];
      index_.erase(it);
      FreeSlotLocked(slot);
    }
    return 0;
  }
  ClearFilling(ids);
  s_prefetched_.fetch_add(static_cast<int64_t>(ids.size()), std::memory_order_relaxed);
  s_h2d_bytes_.fetch_add(static_cast<int64_t>(ids.size()) * row_bytes_, std::memory_order_relaxed);
  return static_cast<int64_t>(ids.size()) * row_bytes_;
}

}  // namespace helm::emb
