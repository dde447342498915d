// The embedding hot cache (DESIGN.md §3): hot rows of the host item table kept in slots of the
// EMB chunks of the unified pool, with frequency-aware admission and eviction.
//
// Lookup. A batch of item ids (int64, may repeat) yields one int64 *location* per id:
//   loc >= 0   byte offset of the row inside the pool arena (a hit, or a miss that was admitted
//              and copied host->pool during this lookup);
//   loc <  0   row -(loc + 1) of the result's staging buffer (a miss that was not admitted, copied
//              host->staging; same memory space as the arena).
// Rows are `dim` values of emb.dtype. The result (EmbLookup) pins every pool slot it returned
// until it is destroyed or reused: a pinned slot is never overwritten, evicted into reuse or
// relocated away (an entry may leave the index meanwhile, but its bytes stay until the last
// result that returned them is gone). Ids outside [0, num_items) are InvalidArgument.
//
// Policy. TinyLFU admission in front of a sampled-LFU eviction: the frequency of non-resident ids
// lives in a count-min sketch (FrequencySketch: 8-bit counters, conservative update), the frequency
// of resident rows in their index entry (the sketch receives it back on eviction). A miss is
// admitted into a free slot, or in place of the victim (the least frequent of 8 random resident
// rows) only when its estimated frequency beats the victim's. All counters halve every
// sketch_reset_factor x capacity accesses, which ages out rows that were hot once (recency): the
// resident rows' lazily (each entry remembers its period), the sketch's a slice per writer
// section (halving megabytes of counters at once would stall lookups for hundreds of
// microseconds). A burst of one-off ids therefore does not flush the hot set. emb.admission =
// "always" admits every miss (the eviction alone).
//
// Pinning is epoch-style. The cache keeps an epoch that only advances under its writer lock; a
// lookup registers the epoch current when it starts and stamps the entries it hits with the
// epoch of its read phase (all concurrent readers see the same one, so plain stores suffice and
// the hit path needs no atomic read-modify-write). A slot may be reused only when no live lookup
// registered at or before its last stamp. A result held for long would thus protect every row
// touched after it; when that leaves no eviction victim (or blocks a resize), the cache turns
// the older live results into explicit per-slot pins (what they returned, nothing more).
//
// Resize. As a pool::ChunkClient the cache gives up its chunk with the fewest resident rows: hot
// rows move (device-local copy) into free slots or in place of colder rows elsewhere, the rest
// are dropped (the host table keeps the truth). An aborted release (CancelRelease) keeps every row
// still in the chunk resident where it is. Optional prefetch fills free slots with the
// recently rejected ids of highest estimated frequency, only when it can take the lock without
// waiting.
//
// Sampling (the simulator only: EmbOptions::sample_rate < 1 on payload-free storage). The cache
// runs as a miniature of itself (id_sampler.h): only the ids in the sample are looked up, each in
// a slot of row_bytes() = a row's bytes / sample_rate, so the pool's chunks hold sample_rate of
// their rows and resize, refill and prefetch bytes keep their full-size meaning. Misses are
// estimated as the sample's misses / sample_rate, and every other id looked up counts as a hit:
// with a skewed popularity the sample's share of the lookups swings with whether it happens to
// hold a few of the hottest ids, and those ids hit (the adjustment of SHARDS-adj, Waldspurger et
// al., FAST 2015), so the sample's own hit ratio would be off by their weight. A lookup's misses()
// are its sample's / sample_rate, at most its ids (the excess carries over to the next lookups);
// stats() counts every id looked up, the estimated misses, and every other count of the sample
// scaled by 1 / sample_rate (byte counts are full-size already). Ids outside the sample get
// location 0 (no bytes are read) and are never resident; unique_ids() and staged_rows() of a
// lookup count the sample's.
//
// Time: the cache reads time only from the pool's injected clock (Pool::clock()), to bound its
// lock spins; nothing it decides depends on time.
//
// Thread-safety: Lookup, the ChunkClient methods and the readers may run concurrently from any
// threads. Hits share a reader lock; misses, eviction and each bounded piece of a resize step take
// the writer lock briefly (copies run outside it). The cache must outlive its results and must be
// destroyed before the pool.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "helm/common/clock.h"
#include "helm/common/ghost_list.h"
#include "helm/emb/frequency_sketch.h"
#include "helm/emb/host_table.h"
#include "helm/emb/id_sampler.h"
#include "helm/emb/options.h"
#include "helm/pool/chunk_slots.h"
#include "helm/pool/pool.h"

namespace helm::emb {

// Cumulative counters (relaxed atomics): take two snapshots and subtract for a window.
struct EmbStats {
  int64_t batches = 0;
  int64_t lookups = 0;            // ids looked up (repeats included)
  int64_t unique_ids = 0;         // distinct ids per batch, summed over batches
  int64_t hits = 0;               // ids served from a row that was already resident
  int64_t misses = 0;             // the rest (admitted or staged)
  int64_t admitted = 0;           // misses copied into the pool
  int64_t admission_rejects = 0;  // misses that lost against the eviction victim
  int64_t staged_rows = 0;        // rows copied host->staging
  int64_t h2d_bytes = 0;          // host->pool plus host->staging bytes
  // Time the lookups spent fetching their misses (the host gather and the copies, steady clock):
  // what a miss costs the critical path, whatever bounds it (the link, or the host's gather).
  int64_t fetch_ns = 0;
  // Misses of rows still in the ghost list of recently evicted rows (pool.ghost_share of the
  // pool): the misses an EMB share larger by ghost_share would have turned into hits.
  int64_t ghost_hits = 0;
  int64_t evictions = 0;       // rows evicted to admit others
  int64_t relocated_rows = 0;  // rows moved while emptying a chunk
  int64_t dropped_rows = 0;    // rows dropped while emptying a chunk
  int64_t prefetched_rows = 0;

  EmbStats operator-(const EmbStats& o) const;
  double hit_rate() const { return lookups > 0 ? static_cast<double>(hits) / lookups : 0.0; }
};

class EmbCache;

// The result of one batch lookup. Move-only; pins what it returned until destroyed, Release()d or
// reused by another Lookup. Cheap to reuse: its buffers keep their capacity.
class EmbLookup {
 public:
  EmbLookup() = default;
  ~EmbLookup() { Release(); }
  EmbLookup(EmbLookup&& other) noexcept;
  EmbLookup& operator=(EmbLookup&& other) noexcept;
  EmbLookup(const EmbLookup&) = delete;
  EmbLookup& operator=(const EmbLookup&) = delete;

  // One location per looked-up id, in order (see the header comment).
  absl::Span<const int64_t> locations() const { return locations_; }
  // The staging buffer the negative locations index (nullptr when nothing was staged, and on the
  // payload-free backend). Rows are packed: row r starts at r * row_bytes.
  void* staging_data() const;
  // The buffer itself (for Storage::CopyStagingToHost in tests); null when nothing was staged.
  pool::StagingBuffer* staging_buffer() const { return staging_.get(); }
  int64_t staged_rows() const { return staged_rows_; }
  int64_t hits() const { return hits_; }
  int64_t misses() const { return misses_; }
  int64_t unique_ids() const { return unique_; }
  // Unpins everything now (idempotent).
  void Release();

 private:
  friend class EmbCache;
  EmbCache* cache_ = nullptr;  // set while pins are held
  uint64_t serial_ = 0;
  std::vector<int64_t> locations_;
  std::unique_ptr<pool::StagingBuffer> staging_;
  int64_t staged_rows_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
  int64_t unique_ = 0;
  // Scratch reused across lookups.
  std::vector<void*> found_;  // the read phase's index entries (EmbCache::Entry*)
  std::vector<int32_t> miss_positions_;
  std::vector<pool::HostCopy> fill_copies_;
  std::vector<int64_t> filled_ids_;
  std::vector<pool::HostCopy> stage_copies_;
  absl::flat_hash_map<int64_t, int64_t> staged_index_;
  absl::flat_hash_map<int64_t, int64_t> admitted_index_;  // admitted in this lookup -> offset
  // A sampling cache's sample of the ids, their positions, and its locations for them (which its
  // live-lookup record points at until Release).
  std::vector<int64_t> sample_ids_;
  std::vector<int32_t> sample_positions_;
  std::vector<int64_t> sample_locations_;
};

class EmbCache final : public pool::ChunkClient {
 public:
  // Creates the cache and attaches it to `pool` (which must outlive it). `table` is the host
  // table; when null it is made from `options` (HostTable::Create), except on a payload-free pool,
  // which needs none. InvalidArgument for bad options, a row larger than a chunk, or a table that
  // does not match options.num_items / dim / dtype.
  static absl::StatusOr<std::unique_ptr<EmbCache>> Create(
      const EmbOptions& options, pool::Pool* pool,
      std::shared_ptr<const HostTable> table = nullptr);
  ~EmbCache() override;

  // Looks up `ids` into `out` (whose previous pins are released first). InvalidArgument naming the
  // first id outside [0, num_items) (then nothing is looked up); Internal on a copy failure.
  absl::Status Lookup(absl::Span<const int64_t> ids, EmbLookup* out);
  absl::StatusOr<EmbLookup> Lookup(absl::Span<const int64_t> ids);

  // The host row of `id` (for tests and the reference path). InvalidArgument for a bad id;
  // FailedPrecondition on the payload-free backend (no table).
  absl::StatusOr<const uint8_t*> HostRow(int64_t id) const;
  const HostTable* table() const { return table_.get(); }

  // Calls `fn` for every id that has a slot (rows still being filled included), a chunk at a
  // time; `fn` runs without any lock held. Not an atomic snapshot: a row admitted, evicted or
  // relocated meanwhile may be missed or seen twice. The node builds its Bloom-filter summary with
  // this every few hundred milliseconds.
  void ForEachResidentId(absl::FunctionRef<void(int64_t)> fn) const;
  std::vector<int64_t> ResidentIds() const;
  bool IsResident(int64_t id) const;
  // The admission filter's count for `id` (count-min estimate, 0..255; it counts misses, and a
  // resident row's frequency once the row is evicted). For diagnostics and tests.
  uint8_t FrequencyEstimate(int64_t id) const;

  int64_t num_items() const { return options_.num_items; }
  int32_t dim() const { return options_.dim; }
  Dtype dtype() const { return dtype_; }
  // A slot's bytes: a row's, or a row's / sample_rate in a sampling cache.
  int64_t row_bytes() const { return row_bytes_; }
  // A slot's bytes for `options` (row_bytes() of a cache made with them).
  static int64_t SlotBytes(const EmbOptions& options, Dtype dtype);
  // Which ids the cache looks up (all unless EmbOptions::sample_rate < 1).
  const IdSampler& sampler() const { return sampler_; }
  int64_t resident_rows() const;
  // Rows the cache can hold now (slots in its non-draining chunks).
  int64_t capacity_rows() const;
  EmbStats stats() const;
  pool::Storage* storage() const { return storage_; }

  // Index, slot and chunk bookkeeping agree (tests).
  absl::Status CheckInvariants() const;
  // Every resident row's bytes in the pool equal its host row (tests; a no-op without payload).
  absl::Status VerifyResidentRows() const;

  // pool::ChunkClient
  void AddChunk(int32_t chunk) override;
  int32_t BeginRelease() override;
  // Takes the chunk back: its remaining rows stay resident and its free slots allocatable.
  void CancelRelease(int32_t chunk) override;
  pool::DrainResult Drain(int32_t chunk, int64_t max_bytes) override;
  std::vector<int32_t> HeldChunks() const override;
  int64_t Prefetch(int64_t max_bytes) override;

 private:
  // An index entry (16 bytes, so that key and entry share 24 bytes). `tag` is the latest epoch
  // in which a lookup returned this slot. The small fields are updated with relaxed atomics under
  // the reader lock (approximate under races, which only blurs statistics and frequencies).
  // `mark` holds the low bits of the last lookup's serial, so that a repeat inside one batch is
  // recognised (for unique-id counts); `filling` is set while the row's bytes are being copied in.
  // ClearFilling clears `filling` under the reader lock, so a reader under the reader lock loads
  // it atomically (acquire); a plain read is safe only under the writer lock.
  struct Entry {
    uint64_t tag = 0;
    uint32_t slot = 0;
    uint8_t age = 0;  // aging period `freq` was last brought up to date in (mod 256)
    uint8_t freq = 0;
    uint8_t mark = 0;
    uint8_t filling = 0;
  };
  static_assert(sizeof(Entry) == 16);
  using Index = absl::flat_hash_map<int64_t, Entry>;
  static constexpr int64_t kFreeSlot = -1;
  static constexpr int64_t kReservedSlot = -2;  // destination of a relocation in flight
  static constexpr int64_t kLimboSlot = -3;     // vacated, waiting for older lookups to end

  friend class EmbLookup;

  EmbCache(const EmbOptions& options, Dtype dtype, pool::Pool* pool,
           std::shared_ptr<const HostTable> table);

  // Lookup of ids already checked against the table, into `out` already released.
  absl::Status LookupValid(absl::Span<const int64_t> ids, EmbLookup* out);
  // Lookup of the sample of ids already checked, and the whole batch's estimates (emb_sampling.cc).
  absl::Status LookupSampled(absl::Span<const int64_t> ids, EmbLookup* out);
  // Scales a sampling cache's counts up to the whole id space (emb_sampling.cc).
  void ScaleSampledCounts(EmbStats* s) const;

  // Registers a lookup; returns its serial and sets *epoch to the epoch it registered at.
  uint64_t Register(uint64_t* epoch);
  // Records a finished lookup's locations (read if it is ever escalated to explicit pins).
  void MarkComplete(uint64_t serial, const int64_t* locations, size_t count);
  void Unregister(uint64_t serial);
  // Oldest epoch a live lookup still relies on (escalated ones hold explicit pins instead).
  uint64_t MinLiveSerial();
  // Takes mu_ for a lookup (shared for the read phase, exclusive for misses). While a resize
  // drain holds it for one of its short sections the lookup spins (TryLock) instead of sleeping:
  // waking a sleeping thread can take far longer than the section (hundreds of microseconds on a
  // VM). Blocks normally after kLookupSpinUs on the pool's clock. The caller unlocks.
  void LockForLookup(bool exclusive) const ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // LockForLookup's two modes, annotated for the thread-safety analysis.
  void LockForLookupShared() const ABSL_SHARED_LOCK_FUNCTION(mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    LockForLookup(/*exclusive=*/false);
  }
  void LockForLookupExclusive() const
      ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    LockForLookup(/*exclusive=*/true);
  }
  // Takes mu_ exclusively for one section of a drain. First waits (bounded) until no lookup waits
  // for mu_, so a drain of many short sections cannot keep lookups out; then spins on TryLock
  // (bounded) rather than queueing as a waiting writer, which would turn new readers away and put
  // both sides to sleep behind each other (each wake-up can take milliseconds on a VM). Blocks
  // normally after kDrainSpinUs on the pool's clock. The caller unlocks.
  void LockForDrain() const ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Holds mu_ (taken with LockForDrain) for a scope.
  class ABSL_SCOPED_LOCKABLE DrainLock {
   public:
    explicit DrainLock(const EmbCache* cache) ABSL_EXCLUSIVE_LOCK_FUNCTION(cache->mu_)
        : cache_(cache) {
      cache_->LockForDrain();
    }
    ~DrainLock() ABSL_UNLOCK_FUNCTION() { cache_->mu_.Unlock(); }
    DrainLock(const DrainLock&) = delete;
    DrainLock& operator=(const DrainLock&) = delete;

   private:
    const EmbCache* const cache_;
  };
  // Waits (at most kMaxYieldToLookupsUs on the pool's clock) while any lookup waits for mu_.
  void YieldToLookups() const;
  // Starts a new epoch. REQUIRES: the writer lock (readers see one epoch per read section).
  void AdvanceEpochLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    epoch_.store(epoch_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // Turns every complete live lookup other than `self` into explicit slot pins and advances
  // *min_live accordingly. Returns whether any lookup was escalated.
  bool EscalateLocked(uint64_t self, uint64_t* min_live) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int32_t& Pins(uint32_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return chunk_pins_[slots_.Chunk(slot)][slots_.IndexInChunk(slot)];
  }
  void ReturnStaging(std::unique_ptr<pool::StagingBuffer> staging);
  absl::StatusOr<std::unique_ptr<pool::StagingBuffer>> TakeStaging(int64_t bytes);

  // Starts a new aging period when one is due, and halves the next slice of sketch counters while
  // a period's halving is under way (called from every writer section of a lookup).
  void MaybeAgeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t EffectiveFreq(const Entry& e) const;

  int64_t& SlotId(uint32_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return chunk_ids_[slots_.Chunk(slot)][slots_.IndexInChunk(slot)];
  }
  int64_t SlotIdConst(uint32_t slot) const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return chunk_ids_[slots_.Chunk(slot)][slots_.IndexInChunk(slot)];
  }
  // A slot for a new row: a free one, else the eviction victim's (one that no live lookup
  // registered at or before `min_live` returned), provided the candidate's frequency beats the
  // victim's when `use_admission`. -1 (and *rejected) when there is none. *victim_hint (-1 to
  // search) carries a victim that beat a candidate to the next call in the same writer section:
  // it stays valid there (resident, unread by live lookups) until it is evicted.
  int64_t TakeSlotLocked(uint8_t candidate_freq, bool use_admission, uint64_t self,
                         uint64_t* min_live, int64_t* victim_hint, bool* rejected)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The eviction victim's id (sampled LFU), or -1; adds the slots it tried to *visits.
  int64_t FindVictimLocked(uint64_t min_live, int64_t* visits) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictLocked(Index::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Vacates a slot whose bytes a live lookup may still read (last stamped `tag`).
  void RetireSlotLocked(uint32_t slot, uint64_t tag, uint64_t min_live)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReclaimLimboLocked(uint64_t min_live) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeSlotLocked(uint32_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes `id` resident in `slot` as `entry` (its slot and filling flag set here), still filling;
  // returns the slot's pool offset, where the caller copies the row.
  int64_t PlaceFillingLocked(int64_t id, uint32_t slot, Entry entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    entry.slot = slot;
    entry.filling = 1;
    index_.emplace(id, entry);
    SlotId(slot) = id;
    ++chunk_live_[slots_.Chunk(slot)];
    return slots_.Offset(slot);
  }
  // Publishes admitted rows as filled (takes mu_ shared, spinning like a lookup's read phase).
  void ClearFilling(absl::Span<const int64_t> ids);

  const EmbOptions options_;
  const Dtype dtype_;
  const int64_t row_bytes_;
  pool::Pool* const pool_;
  Clock* const clock_;  // the pool's; bounds the lock spins
  pool::Storage* const storage_;
  const bool payload_;
  const bool use_admission_;
  const std::shared_ptr<const HostTable> table_;
  const IdSampler sampler_;

  mutable absl::Mutex mu_;
  mutable std::atomic<int> lookups_waiting_{0};  // lookups in LockForLookup
  Index index_ ABSL_GUARDED_BY(mu_);
  pool::ChunkSlots slots_ ABSL_GUARDED_BY(mu_);
  // Per owned chunk: the id held by each slot (or kFreeSlot / kReservedSlot / kLimboSlot).
  std::vector<std::unique_ptr<int64_t[]>> chunk_ids_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> chunk_live_ ABSL_GUARDED_BY(mu_);  // resident rows per chunk
  // Per owned chunk: explicit pins of escalated lookups per slot.
  std::vector<std::unique_ptr<int32_t[]>> chunk_pins_ ABSL_GUARDED_BY(mu_);
  struct Limbo {
    uint32_t slot;
    uint64_t tag;
  };
  std::vector<Limbo> limbo_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> victim_chunks_ ABSL_GUARDED_BY(mu_);  // owned, not draining
  uint64_t victim_rng_ ABSL_GUARDED_BY(mu_) = 0x9e3779b97f4a7c15ull;
  int32_t drain_cursor_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t drain_victim_freq_ ABSL_GUARDED_BY(mu_) = 0;  // victims' frequency level seen lately
  uint32_t drain_skips_ ABSL_GUARDED_BY(mu_) = 0;
  FrequencySketch sketch_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint8_t> age_epoch_{0};
  std::atomic<int64_t> accesses_since_age_{0};
  std::vector<int64_t> rejected_ ABSL_GUARDED_BY(mu_);  // recent rejected ids (prefetch)
  size_t rejected_pos_ ABSL_GUARDED_BY(mu_) = 0;
  // Rows evicted or dropped lately, of ghost_sampler_'s ids (EmbStats::ghost_hits).
  GhostList ghost_ ABSL_GUARDED_BY(mu_);
  IdSampler ghost_sampler_;

  // Live lookups, by serial; the epoch advances only under the writer lock.
  std::atomic<uint64_t> next_serial_{1};
  std::atomic<uint64_t> epoch_{1};
  struct LiveLookup {
    uint64_t epoch = 0;                  // registered at
    const int64_t* locations = nullptr;  // set once the lookup completed
    size_t count = 0;
    bool escalated = false;
    std::vector<uint32_t> pinned;  // slots pinned explicitly when escalated
  };
  absl::Mutex live_mu_ ABSL_ACQUIRED_AFTER(mu_);
  absl::btree_map<uint64_t, LiveLookup> live_ ABSL_GUARDED_BY(live_mu_);

  // A sampling cache's estimated misses that no lookup could take yet (its ids were too few).
  absl::Mutex estimate_mu_;
  double miss_carry_ ABSL_GUARDED_BY(estimate_mu_) = 0;

  absl::Mutex staging_mu_;
  std::vector<std::unique_ptr<pool::StagingBuffer>> spare_staging_ ABSL_GUARDED_BY(staging_mu_);

  std::atomic<int64_t> s_batches_{0}, s_lookups_{0}, s_unique_{0}, s_hits_{0}, s_misses_{0},
      s_admitted_{0}, s_rejects_{0}, s_staged_{0}, s_h2d_bytes_{0}, s_fetch_ns_{0}, s_evictions_{0},
      s_relocated_{0}, s_dropped_{0}, s_prefetched_{0}, s_ghost_hits_{0};
  std::atomic<int64_t> s_all_lookups_{0};  // a sampling cache's ids looked up, sampled or not
};

}  // namespace helm::emb
