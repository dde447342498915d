// EmbCache: creation, lookups (hits, misses, admission, staging of missed rows) and readers.

#include "helm/emb/emb_cache.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "emb_cache_internal.h"
#include "helm/common/logging.h"  // absl::Status in spdlog messages
#include "spdlog/spdlog.h"

namespace helm::emb {
namespace {

constexpr size_t kRejectedRing = 1024;
constexpr size_t kSpareStagingBuffers = 8;
constexpr int64_t kMinStagingBytes = int64_t{64} << 10;

}  // namespace

using internal::Atomic;
using internal::Bumped;
using internal::Decay;

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
  d.fetch_ns = fetch_ns - o.fetch_ns;
  d.ghost_hits = ghost_hits - o.ghost_hits;
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
  // A sampling cache's live-lookup record points at the sample's locations: they move too.
  sample_ids_ = std::move(other.sample_ids_);
  sample_positions_ = std::move(other.sample_positions_);
  sample_locations_ = std::move(other.sample_locations_);
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
  if (!(options.sample_rate > 0 && options.sample_rate <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("emb cache: sample_rate must be in (0, 1], got ", options.sample_rate));
  }
  if (options.sample_rate < 1 && pool->storage()->has_payload()) {
    return absl::InvalidArgumentError(
        absl::StrCat("emb cache: sample_rate ", options.sample_rate,
                     " < 1 needs payload-free storage (pool.backend none: the simulator)"));
  }
  const int64_t row_bytes = SlotBytes(options, *dtype);
  if (row_bytes > pool->chunk_bytes()) {
    return absl::InvalidArgumentError(
        options.sample_rate < 1
            ? absl::StrCat("emb cache: at sample_rate ", options.sample_rate, " a row takes ",
                           row_bytes, " bytes, more than pool.chunk_bytes (", pool->chunk_bytes(),
                           "); raise the sample rate")
            : absl::StrCat("emb.dim: a row (", row_bytes, " bytes) must fit in pool.chunk_bytes (",
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
      row_bytes_(SlotBytes(options, dtype)),
      pool_(pool),
      clock_(pool->clock()),
      storage_(pool->storage()),
      payload_(pool->storage()->has_payload()),
      use_admission_(options.admission == "tinylfu"),
      table_(std::move(table)),
      sampler_(options.sample_rate, options.sample_salt),
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
  // The ghost tracks a hashed ghost_sample_rate of all ids (a salt of its own), or every id of a
  // thinner sample, and covers pool.ghost_share of the pool in slots (a sampling cache's slots are
  // a row / sample_rate, so its ghost is the sample's miniature too), scaled to the ids it tracks.
  const double ghost_rate = std::min(1.0, options.ghost_sample_rate / sampler_.rate());
  ghost_sampler_ = IdSampler(ghost_rate, options.sample_salt ^ 0x6a09e667f3bcc909ull);
  ghost_.Reset(static_cast<int64_t>(ghost_sampler_.rate() * pool->ghost_bytes() /
                                    static_cast<double>(row_bytes_)));
}

EmbCache::~EmbCache() { pool_->Detach(pool::ChunkOwner::kEmb); }

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
  return sampler_.all() ? LookupValid(ids, out) : LookupSampled(ids, out);
}

absl::Status EmbCache::LookupValid(absl::Span<const int64_t> ids, EmbLookup* out) {
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
      if (f != 255) Atomic(e.freq).store(Bumped(f), std::memory_order_relaxed);
      loc[i] = slots_.Offset(e.slot);
      ++hits;
    }
    mu_.ReaderUnlock();
  }
  accesses_since_age_.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);

  int64_t admitted = 0, rejects = 0, staged = 0, ghost_hits = 0;
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
          e.freq = Bumped(Decay(e.freq, static_cast<uint8_t>(now_w - e.age)));
          e.age = now_w;
          e.mark = mark;
          loc[pos] = slots_.Offset(e.slot);
          ++hits;
          continue;
        }
        // Being filled by another lookup: serve it from staging.
      } else {
        // In the ghost: a larger cache would have served it. Unless it is admitted now it stays
        // there (the larger cache still holds it).
        const bool ghosted = ghost_sampler_.Contains(id) && ghost_.Take(id) > 0;
        ghost_hits += ghosted;
        sketch_.Increment(id, 1);
        if (out->staged_index_.contains(id)) {
          if (ghosted) ghost_.Add(id, 1);
        } else {
          const uint8_t est = sketch_.Estimate(id);
          bool rejected = false;
          const int64_t slot =
              TakeSlotLocked(est, use_admission_, serial, &min_live, &victim_hint, &rejected);
          if (slot >= 0) {
            const int64_t offset = PlaceFillingLocked(
                id, static_cast<uint32_t>(slot),
                Entry{.tag = reg_epoch, .age = now_w, .freq = est, .mark = mark});
            out->fill_copies_.push_back(
                pool::HostCopy{offset, table_ ? table_->Row(id) : nullptr, row_bytes_});
            out->filled_ids_.push_back(id);
            out->admitted_index_.emplace(id, offset);
            loc[pos] = offset;
            ++admitted;
            ++unique;
            continue;
          }
          if (ghosted) ghost_.Add(id, 1);
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
  const bool fetches = staged > 0 || !out->fill_copies_.empty();
  const auto fetch_start =
      fetches ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
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
  if (fetches) {
    s_fetch_ns_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::steady_clock::now() - fetch_start)
                              .count(),
                          std::memory_order_relaxed);
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
  s_ghost_hits_.fetch_add(ghost_hits, std::memory_order_relaxed);

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

int64_t EmbCache::SlotBytes(const EmbOptions& options, Dtype dtype) {
  const int64_t row = int64_t{options.dim} * DtypeBytes(dtype);
  if (options.sample_rate >= 1 || options.sample_rate <= 0) return row;
  return static_cast<int64_t>(std::ceil(static_cast<double>(row) / options.sample_rate - 1e-9));
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
  s.fetch_ns = s_fetch_ns_.load(std::memory_order_relaxed);
  s.ghost_hits = std::llround(static_cast<double>(s_ghost_hits_.load(std::memory_order_relaxed)) /
                              ghost_sampler_.rate());
  s.evictions = s_evictions_.load(std::memory_order_relaxed);
  s.relocated_rows = s_relocated_.load(std::memory_order_relaxed);
  s.dropped_rows = s_dropped_.load(std::memory_order_relaxed);
  s.prefetched_rows = s_prefetched_.load(std::memory_order_relaxed);
  if (!sampler_.all()) ScaleSampledCounts(&s);
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

}  // namespace helm::emb
