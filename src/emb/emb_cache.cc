#include "helm/emb/emb_cache.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "helm/common/hash.h"
#include "helm/common/logging.h"
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
// How long a lookup spins for the lock before it blocks, how long a drain holds back its next
// section while lookups wait for the lock, and how long it then spins for the lock itself, read
// on the pool's clock. On a clock that does not advance a spin lasts until the lock frees (never
// longer: holders never wait for spinners); single-threaded runs never spin.
constexpr int64_t kLookupSpinUs = 500;
constexpr int64_t kMaxYieldToLookupsUs = 2000;
constexpr int64_t kDrainSpinUs = 2000;
constexpr size_t kRejectedRing = 1024;
constexpr size_t kSpareStagingBuffers = 8;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
constexpr int64_t kMinStagingBytes = int64_t{64} << 10;
constexpr size_t kSketchHalvingSlice = 64 << 10;  // sketch counters halved per writer section
constexpr int kVictimSamples = 8;                 // candidate rows compared per eviction
constexpr int kVictimAttempts = 32;               // random slots tried per eviction at most
constexpr size_t kPrefetchDistance = 8;           // ids ahead whose index slot is prefetched

template <typename T>
std::atomic_ref<T> Atomic(T& field) {
  return std::atomic_ref<T>(field);
}

uint8_t Decay(uint8_t freq, uint8_t periods) {
  return periods >= 8 ? 0 : static_cast<uint8_t>(freq >> periods);
}

}  // namespace

EmbStats EmbStats::operator-(const EmbStats& o) const {
  EmbStats d;
  d.batches = batches - o.batches;
  d.lookups = lookups - o.lookups;
  d.unique_ids = unique_ids - o.unique_ids;
  d.hits = hits - o.hits;
  d.misses = misses - o.misses;
  d.admitted = admitted - o.admitted;
  d.admission_rejects = admission_rejects - o.admission_rejects;
  d.staged_rows = staged_rows - o.staged_rows;
  d.h2d_bytes = h2d_bytes - o.h2d_bytes;
  d.evictions = evictions - o.evictions;
  d.relocated_rows = relocated_rows - o.relocated_rows;
  d.dropped_rows = dropped_rows - o.dropped_rows;
  d.prefetched_rows = prefetched_rows - o.prefetched_rows;
  return d;
}

// ---- EmbLookup ---------------------------------------------------------------------------------

EmbLookup::EmbLookup(EmbLookup&& other) noexcept { *this = std::move(other); }

EmbLookup& EmbLookup::operator=(EmbLookup&& other) noexcept {
  if (this == &other) return *this;
  Release();
  cache_ = std::exchange(other.cache_, nullptr);
  serial_ = other.serial_;
  locations_ = std::move(other.locations_);
  staging_ = std::move(other.staging_);
  staged_rows_ = std::exchange(other.staged_rows_, 0);
  hits_ = std::exchange(other.hits_, 0);
  misses_ = std::exchange(other.misses_, 0);
  unique_ = std::exchange(other.unique_, 0);
  miss_positions_ = std::move(other.miss_positions_);
  fill_copies_ = std::move(other.fill_copies_);
  filled_ids_ = std::move(other.filled_ids_);
  stage_copies_ = std::move(other.stage_copies_);
  staged_index_ = std::move(other.staged_index_);
  return *this;
}

void* EmbLookup::staging_data() const { return staging_ ? staging_->data() : nullptr; }

void EmbLookup::Release() {
  if (cache_ == nullptr) return;
  cache_->Unregister(serial_);
  if (staging_ != nullptr) cache_->ReturnStaging(std::move(staging_));
  cache_ = nullptr;
  locations_.clear();
  staged_rows_ = hits_ = misses_ = unique_ = 0;
}

// ---- Creation ----------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<EmbCache>> EmbCache::Create(const EmbOptions& options,
                                                           pool::Pool* pool,
                                                           std::shared_ptr<const HostTable> table) {
  if (pool == nullptr) return absl::InvalidArgumentError("emb cache: pool must not be null");
  absl::StatusOr<Dtype> dtype = ParseDtype(options.dtype);
  if (!dtype.ok())
    return absl::InvalidArgumentError(absl::StrCat("emb.", dtype.status().message()));
  if (options.num_items <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("emb.num_items: must be >= 1, got ", options.num_items));
  }
  if (options.dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("emb.dim: must be >= 1, got ", options.dim));
  }
  if (options.admission != "tinylfu" && options.admission != "always") {
    return absl::InvalidArgumentError(absl::StrCat(
        "emb.admission: must be one of {tinylfu, always}, got '", options.admission, "'"));
  }
  const int64_t row_bytes = int64_t{options.dim} * DtypeBytes(*dtype);
  if (row_bytes > pool->chunk_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("emb.dim: a row (", row_bytes,
                                                   " bytes) must fit in pool.chunk_bytes (",
                                                   pool->chunk_bytes(), ")"));
  }
  const int64_t per_chunk = pool->chunk_bytes() / row_bytes;
  const int64_t stride = int64_t{1} << std::bit_width(static_cast<uint64_t>(per_chunk - 1));
  if (stride * pool->num_chunks() >= (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(
        absl::StrCat("emb.dim: ", per_chunk, " rows per chunk x ", pool->num_chunks(),
                     " chunks exceed 2^31 slots; use larger rows or fewer chunks"));
  }
  const bool payload = pool->storage()->has_payload();
  if (table == nullptr && payload) {
    absl::StatusOr<std::unique_ptr<HostTable>> made = HostTable::Create(options);
    if (!made.ok()) return made.status();
    table = std::move(*made);
  }
  if (table != nullptr && (table->num_items() != options.num_items || table->dim() != options.dim ||
                           table->dtype() != *dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("emb cache: table is ", table->num_items(), " x ", table->dim(), " ",
                     DtypeName(table->dtype()), " but options say ", options.num_items, " x ",
                     options.dim, " ", options.dtype));
  }
  std::unique_ptr<EmbCache> cache(new EmbCache(options, *dtype, pool, std::move(table)));
  if (absl::Status s = pool->Attach(pool::ChunkOwner::kEmb, cache.get()); !s.ok()) return s;
  return cache;
}

EmbCache::EmbCache(const EmbOptions& options, Dtype dtype, pool::Pool* pool,
                   std::shared_ptr<const HostTable> table)
    : options_(options),
      dtype_(dtype),
      row_bytes_(int64_t{options.dim} * DtypeBytes(dtype)),
      pool_(pool),
      clock_(pool->clock()),
      storage_(pool->storage()),
      payload_(pool->storage()->has_payload()),
      use_admission_(options.admission == "tinylfu"),
      table_(std::move(table)),
      slots_(pool->num_chunks(), pool->chunk_bytes(), row_bytes_),
      // Sized for the largest capacity a resize may reach.
      sketch_(int64_t{options.sketch_width_per_row} *
              std::max<int64_t>(
                  1, static_cast<int64_t>(pool->options().r_max * pool->num_chunks() + 1) *
                         slots_.slots_per_chunk())) {
  absl::MutexLock lock(&mu_);
  chunk_ids_.resize(static_cast<size_t>(pool->num_chunks()));
  chunk_pins_.resize(static_cast<size_t>(pool->num_chunks()));
  chunk_live_.assign(static_cast<size_t>(pool->num_chunks()), 0);
  rejected_.assign(kRejectedRing, -1);
}

EmbCache::~EmbCache() { pool_->Detach(pool::ChunkOwner::kEmb); }

// ---- Live lookups (pins) -----------------------------------------------------------------------

uint64_t EmbCache::Register(uint64_t* epoch) {
  absl::MutexLock lock(&live_mu_);
  const uint64_t serial = next_serial_.fetch_add(1, std::memory_order_relaxed);
  LiveLookup l;
  l.epoch = epoch_.load(std::memory_order_relaxed);
  *epoch = l.epoch;
  live_.emplace(serial, std::move(l));
  return serial;
}

void EmbCache::MarkComplete(uint64_t serial, const int64_t* locations, size_t count) {
  absl::MutexLock lock(&live_mu_);
  LiveLookup& l = live_[serial];
  l.locations = locations;
  l.count = count;
}

void EmbCache::Unregister(uint64_t serial) {
  std::vector<uint32_t> pinned;
  {
    absl::MutexLock lock(&live_mu_);
    auto it = live_.find(serial);
    if (it == live_.end()) return;
    pinned = std::move(it->second.pinned);
    live_.erase(it);
  }
  if (pinned.empty()) return;
  // Escalated: its slots stay pinned until here (a pinned slot is never freed, so its chunk is
  // still owned).
  absl::MutexLock lock(&mu_);
  for (uint32_t slot : pinned) --Pins(slot);
}

uint64_t EmbCache::MinLiveSerial() {
  absl::MutexLock lock(&live_mu_);
  // Serials and registration epochs grow together: the first live one has the oldest epoch.
  for (const auto& [serial, l] : live_) {
    if (!l.escalated) return l.epoch;
  }
  return std::numeric_limits<uint64_t>::max();
}

bool EmbCache::EscalateLocked(uint64_t self, uint64_t* min_live) {
  bool any = false;
  {
    absl::MutexLock lock(&live_mu_);
    for (auto& [serial, l] : live_) {
      if (serial == self || l.escalated || l.locations == nullptr) continue;
      for (size_t i = 0; i < l.count; ++i) {
        const int64_t loc = l.locations[i];
        if (loc < 0) continue;
        const uint32_t slot =
            slots_.Slot(static_cast<int32_t>(loc / pool_->chunk_bytes()),
                        static_cast<int32_t>((loc % pool_->chunk_bytes()) / row_bytes_));
        ++Pins(slot);
        l.pinned.push_back(slot);
      }
      l.escalated = true;
      any = true;
    }
  }
  if (any) *min_live = MinLiveSerial();
  return any;
}

absl::StatusOr<std::unique_ptr<pool::StagingBuffer>> EmbCache::TakeStaging(int64_t bytes) {
  {
    absl::MutexLock lock(&staging_mu_);
    for (size_t i = 0; i < spare_staging_.size(); ++i) {
      if (spare_staging_[i]->capacity_bytes() >= bytes) {
        std::unique_ptr<pool::StagingBuffer> b = std::move(spare_staging_[i]);
        spare_staging_.erase(spare_staging_.begin() + static_cast<ptrdiff_t>(i));
        return b;
      }
    }
  }
  return storage_->NewStagingBuffer(static_cast<int64_t>(
      std::bit_ceil(static_cast<uint64_t>(std::max(bytes, kMinStagingBytes)))));
}

void EmbCache::ReturnStaging(std::unique_ptr<pool::StagingBuffer> staging) {
  absl::MutexLock lock(&staging_mu_);
  if (spare_staging_.size() < kSpareStagingBuffers) {
    spare_staging_.push_back(std::move(staging));
  } else {
    // Keep the larger buffers: replace the smallest spare if this one is bigger.
    auto smallest = std::min_element(
        spare_staging_.begin(), spare_staging_.end(),
        [](const auto& a, const auto& b) { return a->capacity_bytes() < b->capacity_bytes(); });
    if ((*smallest)->capacity_bytes() < staging->capacity_bytes()) *smallest = std::move(staging);
  }
}

void EmbCache::MaybeAgeLocked() {
  const int64_t period = std::max<int64_t>(
      1, int64_t{options_.sketch_reset_factor} * std::max<int64_t>(slots_.capacity(), 1));
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
  // The sketch does not see hits; hand it the evicted row's frequency so that a quick return
  // is judged on its whole history.
  const uint8_t freq = EffectiveFreq(e);
  const uint8_t est = sketch_.Estimate(id);
  if (freq > est) sketch_.Increment(id, freq - est);
  --chunk_live_[slots_.Chunk(e.slot)];
  index_.erase(it);
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

// ---- Lookup ------------------------------------------------------------------------------------

absl::StatusOr<EmbLookup> EmbCache::Lookup(absl::Span<const int64_t> ids) {
  EmbLookup out;
  if (absl::Status s = Lookup(ids, &out); !s.ok()) return s;
  return out;
}

absl::Status EmbCache::Lookup(absl::Span<const int64_t> ids, EmbLookup* out) {
  out->Release();
  const int64_t num_items = options_.num_items;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= num_items) {
      return absl::InvalidArgumentError(absl::StrCat("emb lookup: id ", ids[i], " at position ", i,
                                                     " is outside the table [0, ", num_items, ")"));
    }
  }
  const size_t n = ids.size();
  out->locations_.resize(n);
  out->found_.resize(n);
  out->miss_positions_.clear();
  out->fill_copies_.clear();
  out->filled_ids_.clear();
  out->stage_copies_.clear();
  out->staged_index_.clear();
  out->admitted_index_.clear();
  out->cache_ = this;
  uint64_t reg_epoch = 0;
  const uint64_t serial = Register(&reg_epoch);
  out->serial_ = serial;
  // Non-zero low bits of the serial: the mark this lookup leaves on entries (see Entry).
  const uint8_t mark = static_cast<uint8_t>(serial) | 1;
  int64_t* loc = out->locations_.data();
  int64_t hits = 0, unique = 0;
  const uint8_t now = age_epoch_.load(std::memory_order_relaxed);

  {
    LockForLookupShared();
    const uint64_t read_epoch = epoch_.load(std::memory_order_relaxed);
    // Two passes: the first only finds every id's entry (a tight loop of independent loads, so
    // the core keeps many index misses in flight); the second, on lines now in cache, checks and
    // stamps the entries.
    void** found = out->found_.data();
    // The index is far larger than the CPU's caches: ask for entries a few ids ahead, so that
    // more of their misses are in flight than the core's own look-ahead keeps.
    constexpr size_t kAhead = 8;
    for (size_t i = 0; i < std::min(n, kAhead); ++i) index_.prefetch(ids[i]);
    for (size_t i = 0; i < n; ++i) {
      if (i + kAhead < n) index_.prefetch(ids[i + kAhead]);
      auto it = index_.find(ids[i]);
      found[i] = it == index_.end() ? nullptr : &it->second;
    }
    for (size_t i = 0; i < n; ++i) {
      if (found[i] == nullptr) {
        out->miss_positions_.push_back(static_cast<int32_t>(i));
        continue;
      }
      Entry& e = *static_cast<Entry*>(found[i]);
      if (Atomic(e.filling).load(std::memory_order_acquire) != 0) {
        out->miss_positions_.push_back(static_cast<int32_t>(i));
        continue;
      }
      // Stamp with the read section's epoch: every concurrent reader writes the same value.
      if (Atomic(e.tag).load(std::memory_order_relaxed) < read_epoch) {
        Atomic(e.tag).store(read_epoch, std::memory_order_relaxed);
      }
      if (Atomic(e.mark).load(std::memory_order_relaxed) != mark) {
        Atomic(e.mark).store(mark, std::memory_order_relaxed);
        ++unique;
      }
      const uint8_t age = Atomic(e.age).load(std::memory_order_relaxed);
      uint8_t f = Atomic(e.freq).load(std::memory_order_relaxed);
      if (age != now) {
        f = Decay(f, static_cast<uint8_t>(now - age));
        Atomic(e.age).store(now, std::memory_order_relaxed);
      }
      if (f != 255) Atomic(e.freq).store(static_cast<uint8_t>(f + 1), std::memory_order_relaxed);
      loc[i] = slots_.Offset(e.slot);
      ++hits;
    }
    mu_.ReaderUnlock();
  }
  accesses_since_age_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);

  int64_t admitted = 0, rejects = 0, staged = 0;
  if (!out->miss_positions_.empty()) {
    LockForLookupExclusive();
    MaybeAgeLocked();
    const uint8_t now_w = age_epoch_.load(std::memory_order_relaxed);
    // Lookups that register during this section read only after it: a bound taken now stays
    // safe for the whole section. A new epoch lets later stamps tell newer lookups apart.
    uint64_t min_live = MinLiveSerial();
    AdvanceEpochLocked();
    ReclaimLimboLocked(min_live);
    int64_t victim_hint = -1;  // see TakeSlotLocked
    // Every miss increments and reads its sketch counters: start all their loads at once.
    for (int32_t pos : out->miss_positions_) sketch_.Prefetch(ids[pos]);
    for (int32_t pos : out->miss_positions_) {
      const int64_t id = ids[pos];
      if (auto ait = out->admitted_index_.find(id); ait != out->admitted_index_.end()) {
        // Admitted earlier in this lookup: the fill below covers every occurrence.
        loc[pos] = ait->second;
        continue;
      }
      auto it = index_.find(id);
      if (it != index_.end()) {
        Entry& e = it->second;
        if (!e.filling) {
          // Became resident since the read phase (another lookup admitted it). Read now, it is
          // no victim any more.
          if (id == victim_hint) victim_hint = -1;
          if (e.mark != mark) ++unique;
          e.tag = std::max(e.tag, reg_epoch);
          e.freq = static_cast<uint8_t>(
              std::min(255, Decay(e.freq, static_cast<uint8_t>(now_w - e.age)) + 1));
          e.age = now_w;
          e.mark = mark;
          loc[pos] = slots_.Offset(e.slot);
          ++hits;
          continue;
        }
        // Being filled by another lookup: serve it from staging.
      } else {
        sketch_.Increment(id, 1);
        if (!out->staged_index_.contains(id)) {
          const uint8_t est = sketch_.Estimate(id);
          bool rejected = false;
          const int64_t slot =
              TakeSlotLocked(est, use_admission_, serial, &min_live, &victim_hint, &rejected);
          if (slot >= 0) {
            Entry e;
            e.tag = reg_epoch;
            e.slot = static_cast<uint32_t>(slot);
            e.age = now_w;
            e.freq = est;
            e.mark = mark;
            e.filling = 1;
            index_.emplace(id, e);
            SlotId(static_cast<uint32_t>(slot)) = id;
            ++chunk_live_[slots_.Chunk(static_cast<uint32_t>(slot))];
            const int64_t offset = slots_.Offset(static_cast<uint32_t>(slot));
            out->fill_copies_.push_back(
                pool::HostCopy{offset, table_ ? table_->Row(id) : nullptr, row_bytes_});
            out->filled_ids_.push_back(id);
            out->admitted_index_.emplace(id, offset);
            loc[pos] = offset;
            ++admitted;
            ++unique;
            continue;
          }
          if (rejected) {
            ++rejects;
            rejected_[rejected_pos_] = id;
            rejected_pos_ = (rejected_pos_ + 1) % rejected_.size();
          }
        }
      }
      auto [sit, inserted] = out->staged_index_.try_emplace(id, staged);
      if (inserted) {
        out->stage_copies_.push_back(
            pool::HostCopy{staged * row_bytes_, table_ ? table_->Row(id) : nullptr, row_bytes_});
        ++staged;
        ++unique;
      }
      loc[pos] = -(sit->second + 1);
    }
    mu_.Unlock();
  }
  const int64_t misses = static_cast<int64_t>(n) - hits;

  absl::Status status;
  if (staged > 0) {
    absl::StatusOr<std::unique_ptr<pool::StagingBuffer>> buffer = TakeStaging(staged * row_bytes_);
    if (buffer.ok()) {
      out->staging_ = *std::move(buffer);
      status = storage_->CopyHostToStaging(out->staging_.get(), out->stage_copies_);
    } else {
      status = buffer.status();
    }
  }
  if (!out->fill_copies_.empty()) {
    absl::Status fill = storage_->CopyHostToPool(out->fill_copies_);
    if (!fill.ok()) {
      // Nobody else was handed these slots (they were filling): undo the admissions.
      absl::MutexLock lock(&mu_);
      for (int64_t id : out->filled_ids_) {
        auto it = index_.find(id);
        const uint32_t slot = it->second.slot;
        --chunk_live_[slots_.Chunk(slot)];
        index_.erase(it);
        FreeSlotLocked(slot);
      }
      status.Update(fill);
    } else {
      ClearFilling(out->filled_ids_);
    }
  }

  s_batches_.fetch_add(1, std::memory_order_relaxed);
  s_lookups_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
  s_unique_.fetch_add(unique, std::memory_order_relaxed);
  s_hits_.fetch_add(hits, std::memory_order_relaxed);
  s_misses_.fetch_add(misses, std::memory_order_relaxed);
  s_admitted_.fetch_add(admitted, std::memory_order_relaxed);
  s_rejects_.fetch_add(rejects, std::memory_order_relaxed);
  s_staged_.fetch_add(staged, std::memory_order_relaxed);
  s_h2d_bytes_.fetch_add((admitted + staged) * row_bytes_, std::memory_order_relaxed);

  if (!status.ok()) {
    out->Release();
    spdlog::error("emb lookup: copy failed: {}", status);
    return absl::InternalError(absl::StrCat("emb lookup: ", status.message()));
  }
  out->hits_ = hits;
  out->misses_ = misses;
  out->unique_ = unique;
  out->staged_rows_ = staged;
  MarkComplete(serial, out->locations_.data(), n);
  return absl::OkStatus();
}

void EmbCache::ClearFilling(absl::Span<const int64_t> ids) {
  LockForLookupShared();
  for (int64_t id : ids) {
    auto it = index_.find(id);
    if (it != index_.end()) Atomic(it->second.filling).store(0, std::memory_order_release);
  }
  mu_.ReaderUnlock();
}

// ---- Readers -----------------------------------------------------------------------------------

absl::StatusOr<const uint8_t*> EmbCache::HostRow(int64_t id) const {
  if (id < 0 || id >= options_.num_items) {
    return absl::InvalidArgumentError(
        absl::StrCat("emb: id ", id, " is outside the table [0, ", options_.num_items, ")"));
  }
  if (table_ == nullptr) {
    return absl::FailedPreconditionError("emb: the payload-free backend keeps no host table");
  }
  return table_->Row(id);
}

void EmbCache::ForEachResidentId(absl::FunctionRef<void(int64_t)> fn) const {
  // A chunk at a time: its slots' ids are copied under the reader lock (microseconds) and `fn`
  // runs outside it. Holding the lock over the whole index (~10-25 ms for 512K rows with a Bloom
  // insert each) stalled every lookup with a miss, and every resize step, for that long.
  std::vector<int64_t> ids;
  for (int32_t c = 0; c < pool_->num_chunks(); ++c) {
    ids.clear();
    {
      absl::ReaderMutexLock lock(&mu_);
      if (!slots_.Owns(c) || chunk_ids_[c] == nullptr) continue;
      const int32_t per_chunk = slots_.slots_per_chunk();
      const int64_t* slot_ids = chunk_ids_[c].get();
      for (int32_t j = 0; j < per_chunk; ++j) {
        if (slot_ids[j] >= 0) ids.push_back(slot_ids[j]);
      }
    }
    for (int64_t id : ids) fn(id);
  }
}

std::vector<int64_t> EmbCache::ResidentIds() const {
  std::vector<int64_t> ids;
  ForEachResidentId([&](int64_t id) { ids.push_back(id); });
  return ids;
}

bool EmbCache::IsResident(int64_t id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = index_.find(id);
  return it != index_.end() &&
         Atomic(const_cast<uint8_t&>(it->second.filling)).load(std::memory_order_acquire) == 0;
}

uint8_t EmbCache::FrequencyEstimate(int64_t id) const {
  absl::ReaderMutexLock lock(&mu_);
  return sketch_.Estimate(id);
}

int64_t EmbCache::resident_rows() const {
  absl::ReaderMutexLock lock(&mu_);
  return static_cast<int64_t>(index_.size());
}

int64_t EmbCache::capacity_rows() const {
  absl::ReaderMutexLock lock(&mu_);
  return slots_.capacity();
}

EmbStats EmbCache::stats() const {
  EmbStats s;
  s.batches = s_batches_.load(std::memory_order_relaxed);
  s.lookups = s_lookups_.load(std::memory_order_relaxed);
  s.unique_ids = s_unique_.load(std::memory_order_relaxed);
  s.hits = s_hits_.load(std::memory_order_relaxed);
  s.misses = s_misses_.load(std::memory_order_relaxed);
  s.admitted = s_admitted_.load(std::memory_order_relaxed);
  s.admission_rejects = s_rejects_.load(std::memory_order_relaxed);
  s.staged_rows = s_staged_.load(std::memory_order_relaxed);
  s.h2d_bytes = s_h2d_bytes_.load(std::memory_order_relaxed);
  s.evictions = s_evictions_.load(std::memory_order_relaxed);
  s.relocated_rows = s_relocated_.load(std::memory_order_relaxed);
  s.dropped_rows = s_dropped_.load(std::memory_order_relaxed);
  s.prefetched_rows = s_prefetched_.load(std::memory_order_relaxed);
  return s;
}

absl::Status EmbCache::CheckInvariants() const {
  absl::ReaderMutexLock lock(&mu_);
  if (absl::Status s = slots_.CheckConsistent(); !s.ok()) return s;
  const int32_t per_chunk = slots_.slots_per_chunk();
  int64_t live_total = 0;
  for (int32_t c = 0; c < pool_->num_chunks(); ++c) {
    if (!slots_.Owns(c)) {
      if (chunk_ids_[c] != nullptr || chunk_pins_[c] != nullptr || chunk_live_[c] != 0) {
        return absl::InternalError(absl::StrCat("emb: unowned chunk ", c, " holds rows"));
      }
      continue;
    }
    int32_t live = 0;
    for (int32_t j = 0; j < per_chunk; ++j) {
      const uint32_t slot = slots_.Slot(c, j);
      const int64_t id = SlotIdConst(slot);
      if (chunk_pins_[c][j] < 0 || (chunk_pins_[c][j] > 0 && id == kFreeSlot)) {
        return absl::InternalError(absl::StrCat("emb: slot ", slot, " has ", chunk_pins_[c][j],
                                                " pins while ", id == kFreeSlot ? "free" : "used"));
      }
      if (id == kFreeSlot) {
        if (!slots_.IsFree(slot)) {
          return absl::InternalError(absl::StrCat("emb: slot ", slot, " empty but allocated"));
        }
        continue;
      }
      if (slots_.IsFree(slot)) {
        return absl::InternalError(absl::StrCat("emb: slot ", slot, " in use but free"));
      }
      if (id == kLimboSlot) {
        const bool listed = std::any_of(limbo_.begin(), limbo_.end(),
                                        [&](const Limbo& l) { return l.slot == slot; });
        if (!listed) return absl::InternalError(absl::StrCat("emb: limbo slot ", slot, " lost"));
        continue;
      }
      if (id == kReservedSlot) continue;
      auto it = index_.find(id);
      if (it == index_.end() || it->second.slot != slot) {
        return absl::InternalError(
            absl::StrCat("emb: slot ", slot, " holds id ", id, " that the index places elsewhere"));
      }
      ++live;
    }
    if (live != chunk_live_[c]) {
      return absl::InternalError(
          absl::StrCat("emb: chunk ", c, " counts ", chunk_live_[c], " rows, holds ", live));
    }
    live_total += live;
  }
  if (live_total != static_cast<int64_t>(index_.size())) {
    return absl::InternalError(
        absl::StrCat("emb: index holds ", index_.size(), " rows, slots hold ", live_total));
  }
  for (const auto& [id, e] : index_) {
    if (!slots_.Owns(slots_.Chunk(e.slot)) || SlotIdConst(e.slot) != id) {
      return absl::InternalError(absl::StrCat("emb: id ", id, " points at a foreign slot"));
    }
  }
  return absl::OkStatus();
}

absl::Status EmbCache::VerifyResidentRows() const {
  if (!payload_ || table_ == nullptr) return absl::OkStatus();
  absl::ReaderMutexLock lock(&mu_);
  std::vector<uint8_t> row(static_cast<size_t>(row_bytes_));
  for (const auto& [id, e] : index_) {
    // ClearFilling clears the flag under the reader lock too: load it atomically (see Entry).
    if (Atomic(const_cast<uint8_t&>(e.filling)).load(std::memory_order_acquire) != 0) continue;
    const int64_t offset = slots_.Offset(e.slot);
    if (absl::Status s = storage_->CopyPoolToHost(offset, row.data(), row_bytes_); !s.ok()) {
      return s;
    }
    if (std::memcmp(row.data(), table_->Row(id), static_cast<size_t>(row_bytes_)) != 0) {
      return absl::DataLossError(
          absl::StrCat("emb: cached row of id ", id, " at offset ", offset, " differs from host"));
    }
  }
  return absl::OkStatus();
}

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
      Entry e;
      e.slot = static_cast<uint32_t>(slot);
      e.age = now;
      e.freq = freq;
      e.filling = 1;
      index_.emplace(id, e);
      SlotId(static_cast<uint32_t>(slot)) = id;
      ++chunk_live_[slots_.Chunk(static_cast<uint32_t>(slot))];
      copies.push_back(pool::HostCopy{slots_.Offset(static_cast<uint32_t>(slot)),
                                      table_ ? table_->Row(id) : nullptr, row_bytes_});
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
