#include "helm/kv/kv_cache.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "helm/common/dtype.h"
#include "helm/common/hash.h"
#include "helm/common/logging.h"
#include "spdlog/spdlog.h"

namespace helm::kv {
namespace {

// Bounds on one lock hold of a resize step.
constexpr int kDrainBlocksPerLock = 64;
constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

void HistoryHashes(const History& history, std::vector<uint64_t>* out) {
  const size_t n = history.item_ids.size();
  out->resize(n + 1);
  uint64_t h = 0x6a09e667f3bcc909ull;
  (*out)[0] = h;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t token =
        Fmix64(static_cast<uint64_t>(history.item_ids[i]) * 0x9e3779b97f4a7c15ull ^
               (static_cast<uint64_t>(history.timestamps_ms[i]) << 8) ^
               static_cast<uint64_t>(static_cast<uint32_t>(history.actions[i])));
    h = Fmix64(h ^ token) + 0x632be59bd9b4e019ull;
    (*out)[i + 1] = h;
  }
}

KvStats KvStats::operator-(const KvStats& o) const {
  KvStats d;
  d.requests = requests - o.requests;
  d.requested_tokens = requested_tokens - o.requested_tokens;
  d.hit_tokens = hit_tokens - o.hit_tokens;
  d.recomputed_tokens = recomputed_tokens - o.recomputed_tokens;
  d.prefix_mismatches = prefix_mismatches - o.prefix_mismatches;
  d.appended_tokens = appended_tokens - o.appended_tokens;
  d.evicted_users = evicted_users - o.evicted_users;
  d.trimmed_users = trimmed_users - o.trimmed_users;
  d.evicted_blocks = evicted_blocks - o.evicted_blocks;
  d.relocated_blocks = relocated_blocks - o.relocated_blocks;
  d.reserve_exhausted = reserve_exhausted - o.reserve_exhausted;
  d.reserve_conflicts = reserve_conflicts - o.reserve_conflicts;
  d.release_chunks_examined = release_chunks_examined - o.release_chunks_examined;
  d.ghost_hit_tokens = ghost_hit_tokens - o.ghost_hit_tokens;
  return d;
}

// ---- KvLease -----------------------------------------------------------------------------------

KvLease::KvLease(KvLease&& other) noexcept { *this = std::move(other); }

KvLease& KvLease::operator=(KvLease&& other) noexcept {
  if (this == &other) return *this;
  Release();
  cache_ = std::exchange(other.cache_, nullptr);
  lease_id_ = other.lease_id_;
  user_id_ = other.user_id_;
  history_tokens_ = other.history_tokens_;
  history_start_ = other.history_start_;
  prefix_ = other.prefix_;
  end_ = other.end_;
  appending_ = other.appending_;
  prefix_offsets_ = std::move(other.prefix_offsets_);
  pinned_ = std::move(other.pinned_);
  hashes_ = std::move(other.hashes_);
  return *this;
}

absl::StatusOr<KvReservation> KvLease::Reserve(int64_t num_tokens) {
  if (cache_ == nullptr) return absl::FailedPreconditionError("kv: lease is not active");
  return cache_->Reserve(this, num_tokens);
}

absl::Status KvLease::Commit() {
  if (cache_ == nullptr) return absl::FailedPreconditionError("kv: lease is not active");
  return cache_->Commit(this);
}

void KvLease::Release() {
  if (cache_ == nullptr) return;
  cache_->Release(this);
  cache_ = nullptr;
  pinned_.clear();
  prefix_offsets_.clear();
  hashes_.clear();
}

// ---- Creation ----------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const KvCacheOptions& options,
                                                         pool::Pool* pool) {
  if (pool == nullptr) return absl::InvalidArgumentError("kv cache: pool must not be null");
  const KvOptions& kv = options.kv;
  if (kv.tokens_per_block < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv.tokens_per_block: must be >= 1, got ", kv.tokens_per_block));
  }
  if (absl::StatusOr<Dtype> dtype = ParseDtype(kv.dtype); !dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv.dtype: must be one of {fp32, fp16, bf16}, got '", kv.dtype, "'"));
  }
  if (kv.eviction != "cost_aware" && kv.eviction != "lru") {
    return absl::InvalidArgumentError(
        absl::StrCat("kv.eviction: must be one of {cost_aware, lru}, got '", kv.eviction, "'"));
  }
  if (options.block_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv cache: block_bytes must be >= 1, got ", options.block_bytes,
                     " (derive it from the model, e.g. with model::KvCacheOptionsFor)"));
  }
  if (!std::isfinite(options.attention_ratio) || options.attention_ratio < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv cache: attention_ratio must be finite and >= 0, got ", options.attention_ratio));
  }
  if (options.block_bytes > pool->chunk_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv.tokens_per_block: a KV block (", options.block_bytes, " bytes for ",
        kv.tokens_per_block, " tokens) must fit in pool.chunk_bytes (", pool->chunk_bytes(), ")"));
  }
  std::unique_ptr<KvCache> cache(new KvCache(options, pool));
  if (absl::Status s = pool->Attach(pool::ChunkOwner::kKv, cache.get()); !s.ok()) return s;
  return cache;
}

KvCache::KvCache(const KvCacheOptions& options, pool::Pool* pool)
    : options_(options.kv),
      block_bytes_(options.block_bytes),
      pool_(pool),
      storage_(pool->storage()),
      slots_(pool->num_chunks(), pool->chunk_bytes(), options.block_bytes),
      priority_(options.kv.eviction == "cost_aware", options.attention_ratio) {
  absl::MutexLock lock(&mu_);
  const size_t n = slots_.slot_id_limit();
  block_user_.assign(n, kNoUser);
  block_index_.assign(n, -1);
  block_pins_.assign(n, 0);
  block_gen_.assign(n, 0);
  chunk_pinned_.assign(static_cast<size_t>(pool->num_chunks()), 0);
  ghost_.Reset(static_cast<int64_t>(pool->ghost_bytes() / static_cast<double>(block_bytes_) *
                                    options_.tokens_per_block));
}

void KvCache::GhostLostLocked(int64_t user_id, int64_t cached_before) {
  auto it = users_.find(user_id);
  const int64_t lost = cached_before - (it == users_.end() ? 0 : it->second.cached);
  if (lost > 0) ghost_.Add(user_id, ghost_.Take(user_id) + lost);
}

KvCache::~KvCache() { pool_->Detach(pool::ChunkOwner::kKv); }

// ---- Bookkeeping helpers -----------------------------------------------------------------------

void KvCache::Reprioritize(int64_t user_id, User& u, bool used) {
  by_priority_.erase({u.priority, user_id});
  u.priority = priority_.Next(u.priority, u.requests, u.cached, used);
  by_priority_.insert({u.priority, user_id});
}

void KvCache::EmitLocked(int64_t user_id, const User& u) {
  const ResidencyEvent event{user_id, u.cached, u.cached > 0 ? u.history_start : 0};
  absl::MutexLock lock(&events_mu_);
  pending_events_[user_id] = event;
}

void KvCache::SetCachedLocked(User& u, int64_t cached) {
  if ((u.cached > 0) != (cached > 0)) {
    resident_users_.fetch_add(cached > 0 ? 1 : -1, std::memory_order_relaxed);
  }
  u.cached = cached;
}

void KvCache::PinLocked(uint32_t block) {
  if (block_pins_[block]++ == 0) ++chunk_pinned_[static_cast<size_t>(slots_.Chunk(block))];
}

void KvCache::UnpinLocked(uint32_t block) {
  if (--block_pins_[block] == 0) --chunk_pinned_[static_cast<size_t>(slots_.Chunk(block))];
}

void KvCache::FreeBlockLocked(uint32_t block) {
  block_user_[block] = kNoUser;
  block_index_[block] = -1;
  slots_.Free(block);
}

void KvCache::MaybeEraseUserLocked(int64_t user_id) {
  auto it = users_.find(user_id);
  if (it == users_.end()) return;
  const User& u = it->second;
  if (!u.blocks.empty() || !u.leases.empty()) return;
  by_priority_.erase({u.priority, user_id});
  users_.erase(it);
}

int64_t KvCache::EvictableTail(const User& u, int64_t cap) const {
  int64_t n = 0;
  for (auto it = u.blocks.rbegin(); n < cap && it != u.blocks.rend() && block_pins_[*it] == 0;
       ++it) {
    ++n;
  }
  return n;
}

int64_t KvCache::TrimLocked(int64_t user_id, int64_t keep_blocks, int64_t max_blocks) {
  auto uit = users_.find(user_id);
  if (uit == users_.end()) return 0;
  User& u = uit->second;
  int64_t freed = 0;
  while (freed<max_blocks&& static_cast<int64_t>(u.blocks.size())> keep_blocks &&
         block_pins_[u.blocks.back()] == 0) {
    FreeBlockLocked(u.blocks.back());
    u.blocks.pop_back();
    ++freed;
  }
  if (freed == 0) return 0;
  const int64_t tpb = options_.tokens_per_block;
  const int64_t kept = std::min<int64_t>(u.cached, static_cast<int64_t>(u.blocks.size()) * tpb);
  if (kept != u.cached) {
    SetCachedLocked(u, kept);
    u.block_hashes.resize(static_cast<size_t>(kept / tpb));
    u.tail_hash = 0;  // `kept` ends on a block boundary here
    EmitLocked(user_id, u);
  }
  s_evicted_blocks_.fetch_add(freed, std::memory_order_relaxed);
  Reprioritize(user_id, u, /*used=*/false);
  MaybeEraseUserLocked(user_id);
  return freed;
}

bool KvCache::MakeRoomLocked(int64_t blocks, int64_t protect_user, int64_t max_evict_blocks,
                             int64_t* evicted_blocks) {
  int64_t evicted = 0;
  bool ok = true;
  while (slots_.allocatable() < blocks) {
    const int64_t shortfall = blocks - slots_.allocatable();
    const bool trim_allowed = priority_.cost_aware() && options_.allow_trim;
    // A trimming policy needs to know only whether more than `shortfall` blocks are evictable.
    const int64_t cap = trim_allowed ? shortfall + 1 : kNoLimit;
    int64_t victim = -1;
    int64_t evictable = 0;
    double priority = 0;
    // Users whose last block is pinned (by an in-flight lease) are skipped: at most one per
    // in-flight lease precedes the victim.
    for (const auto& [p, uid] : by_priority_) {
      if (uid == protect_user) continue;
      const int64_t n = EvictableTail(users_.find(uid)->second, cap);
      if (n > 0) {
        victim = uid;
        evictable = n;
        priority = p;
        break;
      }
    }
    if (victim < 0) {
      ok = false;
      break;
    }
    User& u = users_.find(victim)->second;
    const int64_t held = static_cast<int64_t>(u.blocks.size());
    const bool trim = trim_allowed && evictable > shortfall;
    const int64_t drop = trim ? shortfall : evictable;
    if (drop > max_evict_blocks - evicted) {
      // Over the caller's bound (a resize step's budget): give up rather than overrun it.
      ok = false;
      break;
    }
    const int64_t keep = held - drop;
    priority_.Evicted(priority);
    const int64_t cached_before = u.cached;
    evicted += TrimLocked(victim, keep);
    GhostLostLocked(victim, cached_before);
    auto after = users_.find(victim);
    if (after == users_.end() || after->second.cached == 0) {
      s_evicted_users_.fetch_add(1, std::memory_order_relaxed);
    } else {
      s_trimmed_users_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (evicted_blocks != nullptr) *evicted_blocks = evicted;
  return ok;
}

// ---- Requests ----------------------------------------------------------------------------------

absl::StatusOr<KvLease> KvCache::Acquire(int64_t user_id, const History& history) {
  const size_t n = history.item_ids.size();
  if (history.actions.size() != n || history.timestamps_ms.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv acquire: history columns differ in length (item_ids ", n, ", actions ",
        history.actions.size(), ", timestamps_ms ", history.timestamps_ms.size(), ")"));
  }
  std::vector<uint64_t> hashes;
  HistoryHashes(history, &hashes);  // outside the lock: O(history) work
  const uint64_t start = n > 0 ? HistoryStartFingerprint(history.item_ids[0], history.actions[0],
                                                         history.timestamps_ms[0])
                               : 0;
  return AcquireImpl(user_id, static_cast<int64_t>(n), std::move(hashes), start);
}

absl::StatusOr<KvLease> KvCache::AcquireUnverified(int64_t user_id, int64_t history_tokens) {
  if (history_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv acquire: history_tokens must be >= 0, got ", history_tokens));
  }
  return AcquireImpl(user_id, history_tokens, {}, 0);
}

absl::StatusOr<KvLease> KvCache::AcquireImpl(int64_t user_id, int64_t history_tokens,
                                             std::vector<uint64_t> hashes, uint64_t history_start) {
  if (user_id < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv acquire: user_id must be >= 0, got ", user_id));
  }
  const bool verified = !hashes.empty();
  const int64_t tpb = options_.tokens_per_block;
  KvLease lease;
  lease.user_id_ = user_id;
  lease.history_tokens_ = history_tokens;
  lease.hashes_ = std::move(hashes);
  lease.history_start_ = history_start;
  int64_t cached_before = 0;
  int64_t ghost_tokens = 0;  // tokens the user lost to make room since its last request
  {
    absl::MutexLock lock(&mu_);
    User& u = users_[user_id];
    cached_before = u.cached;
    ghost_tokens = ghost_.Take(user_id);
    int64_t prefix = 0;
    if (!verified) {
      prefix = std::min(u.cached, history_tokens);
    } else {
      const int64_t full = std::min(u.cached, history_tokens) / tpb;
      int64_t matched = 0;
      while (matched < full &&
             u.block_hashes[matched] == lease.hashes_[static_cast<size_t>((matched + 1) * tpb)]) {
        ++matched;
      }
      prefix = matched * tpb;
      if (matched == u.cached / tpb && u.cached % tpb != 0 && u.cached <= history_tokens &&
          u.tail_hash == lease.hashes_[static_cast<size_t>(u.cached)]) {
        prefix = u.cached;
      }
    }
    lease.lease_id_ = next_lease_id_++;
    lease.prefix_ = prefix;
    lease.end_ = prefix;
    const int64_t pin_blocks = CeilDiv(prefix, tpb);
    lease.prefix_offsets_.reserve(static_cast<size_t>(pin_blocks));
    lease.pinned_.reserve(static_cast<size_t>(pin_blocks));
    for (int64_t i = 0; i < pin_blocks; ++i) {
      const uint32_t b = u.blocks[static_cast<size_t>(i)];
      PinLocked(b);
      lease.pinned_.push_back(b);
      lease.prefix_offsets_.push_back(slots_.Offset(b));
    }
    u.leases.push_back(LeaseRef{lease.lease_id_, prefix});
    ++u.requests;
    Reprioritize(user_id, u, /*used=*/true);
    lease.cache_ = this;
  }
  s_requests_.fetch_add(1, std::memory_order_relaxed);
  s_requested_.fetch_add(history_tokens, std::memory_order_relaxed);
  s_hit_.fetch_add(lease.prefix_, std::memory_order_relaxed);
  s_recomputed_.fetch_add(history_tokens - lease.prefix_, std::memory_order_relaxed);
  s_ghost_hit_.fetch_add(std::min(ghost_tokens, history_tokens - lease.prefix_),
                         std::memory_order_relaxed);
  if (lease.prefix_ < std::min(cached_before, history_tokens)) {
    s_mismatch_.fetch_add(1, std::memory_order_relaxed);
  }
  return lease;
}

absl::StatusOr<KvReservation> KvCache::Reserve(KvLease* lease, int64_t num_tokens) {
  if (num_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv reserve: num_tokens must be >= 1, got ", num_tokens));
  }
  if (lease->end_ + num_tokens > lease->history_tokens_) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv reserve: tokens [", lease->end_, ", ", lease->end_ + num_tokens,
                     ") run past the request's history of ", lease->history_tokens_, " tokens"));
  }
  const int64_t tpb = options_.tokens_per_block;
  const int64_t uid = lease->user_id_;
  absl::MutexLock lock(&mu_);
  User& u = users_.find(uid)->second;
  if (u.appender != 0 && u.appender != lease->lease_id_) {
    s_conflicts_.fetch_add(1, std::memory_order_relaxed);
    return absl::FailedPreconditionError(
        absl::StrCat("kv reserve: user ", uid, ": another in-flight request is already appending"));
  }
  if (!lease->appending_) {
    int64_t other_reads = 0;
    for (const LeaseRef& l : u.leases) {
      if (l.lease_id != lease->lease_id_) other_reads = std::max(other_reads, l.prefix);
    }
    if (other_reads > lease->end_) {
      s_conflicts_.fetch_add(1, std::memory_order_relaxed);
      return absl::FailedPreconditionError(
          absl::StrCat("kv reserve: user ", uid, ": another in-flight request reads ", other_reads,
                       " cached tokens, beyond this request's reusable prefix of ", lease->end_));
    }
    if (u.cached > lease->end_ ||
        static_cast<int64_t>(u.blocks.size()) > CeilDiv(lease->end_, tpb)) {
      // The cache holds a tail this request's history disagrees with: cut it off before
      // appending over it. Nobody reads it (checked above), so nothing beyond is pinned.
      TrimLocked(uid, CeilDiv(lease->end_, tpb));
      User& again = users_.find(uid)->second;
      if (again.cached > lease->end_) {
        SetCachedLocked(again, lease->end_);
        again.block_hashes.resize(static_cast<size_t>(lease->end_ / tpb));
        again.tail_hash = 0;
        EmitLocked(uid, again);
      }
    }
    users_.find(uid)->second.appender = lease->lease_id_;
    lease->appending_ = true;
  }
  User& user = users_.find(uid)->second;
  const int64_t first = lease->end_;
  const int64_t last = first + num_tokens;  // exclusive
  const int64_t need = CeilDiv(last, tpb) - static_cast<int64_t>(user.blocks.size());
  if (need > 0 && !MakeRoomLocked(need, uid, kNoLimit, nullptr)) {
    s_exhausted_.fetch_add(1, std::memory_order_relaxed);
    return absl::ResourceExhaustedError(
        absl::StrCat("kv reserve: user ", uid, ": no room for ", need, " more blocks (",
                     slots_.allocatable(), " free, everything else pinned or protected)"));
  }
  User& owner = users_.find(uid)->second;
  for (int64_t i = 0; i < need; ++i) {
    const int64_t b = slots_.Allocate();
    const uint32_t block = static_cast<uint32_t>(b);
    block_user_[block] = uid;
    block_index_[block] = static_cast<int32_t>(owner.blocks.size());
    PinLocked(block);
    owner.blocks.push_back(block);
    lease->pinned_.push_back(block);
  }
  KvReservation r;
  r.first_token = first;
  r.num_tokens = num_tokens;
  for (int64_t i = first / tpb; i < CeilDiv(last, tpb); ++i) {
    const uint32_t block = owner.blocks[static_cast<size_t>(i)];
    // The caller writes this block now: a relocation planned before must not commit.
    ++block_gen_[block];
    r.block_offsets.push_back(slots_.Offset(block));
  }
  lease->end_ = last;
  return r;
}

absl::Status KvCache::Commit(KvLease* lease) {
  if (!lease->appending_) return absl::OkStatus();
  const int64_t tpb = options_.tokens_per_block;
  const int64_t uid = lease->user_id_;
  absl::MutexLock lock(&mu_);
  User& u = users_.find(uid)->second;
  const int64_t end = lease->end_;
  const bool verified = !lease->hashes_.empty();
  u.block_hashes.resize(static_cast<size_t>(end / tpb));
  for (int64_t b = lease->prefix_ / tpb; b < end / tpb; ++b) {
    u.block_hashes[static_cast<size_t>(b)] =
        verified ? lease->hashes_[static_cast<size_t>((b + 1) * tpb)] : 0;
  }
  u.tail_hash = (end % tpb != 0 && verified) ? lease->hashes_[static_cast<size_t>(end)] : 0;
  const int64_t grew = end - u.cached;
  // A request that reused nothing wrote the history from its first event on.
  if (lease->prefix_ == 0) u.history_start = lease->history_start_;
  SetCachedLocked(u, end);
  u.appender = 0;
  for (LeaseRef& l : u.leases) {
    if (l.lease_id == lease->lease_id_) l.prefix = end;
  }
  lease->appending_ = false;
  lease->prefix_ = end;
  // The lease pins every block up to `end` (its prefix and its reservations): expose them all.
  lease->prefix_offsets_.clear();
  for (int64_t i = 0; i < CeilDiv(end, tpb); ++i) {
    lease->prefix_offsets_.push_back(slots_.Offset(u.blocks[static_cast<size_t>(i)]));
  }
  Reprioritize(uid, u, /*used=*/false);
  EmitLocked(uid, u);
  s_appended_.fetch_add(grew, std::memory_order_relaxed);
  return absl::OkStatus();
}

void KvCache::Release(KvLease* lease) {
  const int64_t tpb = options_.tokens_per_block;
  const int64_t uid = lease->user_id_;
  absl::MutexLock lock(&mu_);
  for (uint32_t b : lease->pinned_) UnpinLocked(b);
  auto it = users_.find(uid);
  if (it == users_.end()) return;
  User& u = it->second;
  u.leases.erase(std::remove_if(u.leases.begin(), u.leases.end(),
                                [&](const LeaseRef& l) { return l.lease_id == lease->lease_id_; }),
                 u.leases.end());
  if (lease->appending_) {
    // Uncommitted: the reserved blocks beyond the committed length go back.
    u.appender = 0;
    TrimLocked(uid, CeilDiv(u.cached, tpb));
  }
  MaybeEraseUserLocked(uid);
}

// ---- Readers -----------------------------------------------------------------------------------

int64_t KvCache::CachedTokens(int64_t user_id) const {
  absl::MutexLock lock(&mu_);
  auto it = users_.find(user_id);
  return it == users_.end() ? 0 : it->second.cached;
}

std::vector<int64_t> KvCache::BlockOffsets(int64_t user_id) const {
  absl::MutexLock lock(&mu_);
  std::vector<int64_t> out;
  auto it = users_.find(user_id);
  if (it == users_.end()) return out;
  const int64_t n = CeilDiv(it->second.cached, options_.tokens_per_block);
  for (int64_t i = 0; i < n; ++i) out.push_back(slots_.Offset(it->second.blocks[i]));
  return out;
}

int64_t KvCache::used_blocks() const {
  absl::MutexLock lock(&mu_);
  int64_t used = 0;
  for (int32_t c : slots_.OwnedChunks()) used += slots_.Used(c);
  return used;
}

int64_t KvCache::capacity_blocks() const {
  absl::MutexLock lock(&mu_);
  return slots_.capacity();
}

int64_t KvCache::num_users() const { return resident_users_.load(std::memory_order_relaxed); }

KvStats KvCache::stats() const {
  KvStats s;
  s.requests = s_requests_.load(std::memory_order_relaxed);
  s.requested_tokens = s_requested_.load(std::memory_order_relaxed);
  s.hit_tokens = s_hit_.load(std::memory_order_relaxed);
  s.recomputed_tokens = s_recomputed_.load(std::memory_order_relaxed);
  s.ghost_hit_tokens = s_ghost_hit_.load(std::memory_order_relaxed);
  s.prefix_mismatches = s_mismatch_.load(std::memory_order_relaxed);
  s.appended_tokens = s_appended_.load(std::memory_order_relaxed);
  s.evicted_users = s_evicted_users_.load(std::memory_order_relaxed);
  s.trimmed_users = s_trimmed_users_.load(std::memory_order_relaxed);
  s.evicted_blocks = s_evicted_blocks_.load(std::memory_order_relaxed);
  s.relocated_blocks = s_relocated_.load(std::memory_order_relaxed);
  s.reserve_exhausted = s_exhausted_.load(std::memory_order_relaxed);
  s.reserve_conflicts = s_conflicts_.load(std::memory_order_relaxed);
  s.release_chunks_examined = s_release_examined_.load(std::memory_order_relaxed);
  return s;
}

void KvCache::DrainResidencyEvents(std::vector<ResidencyEvent>* out) {
  out->clear();
  absl::flat_hash_map<int64_t, ResidencyEvent> taken;
  {
    absl::MutexLock lock(&events_mu_);
    taken.swap(pending_events_);
  }
  out->reserve(taken.size());
  for (const auto& [uid, event] : taken) out->push_back(event);
  std::sort(out->begin(), out->end(),
            [](const ResidencyEvent& a, const ResidencyEvent& b) { return a.user_id < b.user_id; });
}

std::vector<ResidencyEvent> KvCache::ResidentUsers() const {
  absl::MutexLock lock(&mu_);
  std::vector<ResidencyEvent> out;
  for (const auto& [uid, u] : users_) {
    if (u.cached > 0) out.push_back(ResidencyEvent{uid, u.cached, u.history_start});
  }
  std::sort(out.begin(), out.end(),
            [](const ResidencyEvent& a, const ResidencyEvent& b) { return a.user_id < b.user_id; });
  return out;
}

absl::Status KvCache::CheckInvariants() const {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = slots_.CheckConsistent(); !s.ok()) return s;
  const int64_t tpb = options_.tokens_per_block;
  int64_t owned_blocks = 0;
  int64_t resident = 0;
  for (const auto& [uid, u] : users_) {
    resident += u.cached > 0 ? 1 : 0;
    if (static_cast<int64_t>(u.blocks.size()) < CeilDiv(u.cached, tpb)) {
      return absl::InternalError(absl::StrCat("kv: user ", uid, " caches ", u.cached,
                                              " tokens in only ", u.blocks.size(), " blocks"));
    }
    if (u.appender == 0 && static_cast<int64_t>(u.blocks.size()) != CeilDiv(u.cached, tpb)) {
      return absl::InternalError(absl::StrCat("kv: user ", uid, " holds ", u.blocks.size(),
                                              " blocks for ", u.cached, " tokens"));
    }
    if (static_cast<int64_t>(u.block_hashes.size()) != u.cached / tpb) {
      return absl::InternalError(absl::StrCat("kv: user ", uid, " hash count wrong"));
    }
    if (!by_priority_.contains({u.priority, uid})) {
      return absl::InternalError(absl::StrCat("kv: user ", uid, " missing from the priority set"));
    }
    for (size_t i = 0; i < u.blocks.size(); ++i) {
      const uint32_t b = u.blocks[i];
      if (!slots_.Owns(slots_.Chunk(b)) || slots_.IsFree(b) || block_user_[b] != uid ||
          block_index_[b] != static_cast<int32_t>(i)) {
        return absl::InternalError(
            absl::StrCat("kv: user ", uid, " block ", i, " (id ", b, ") is not owned back"));
      }
    }
    owned_blocks += static_cast<int64_t>(u.blocks.size());
  }
  if (resident != resident_users_.load(std::memory_order_relaxed)) {
    return absl::InternalError(absl::StrCat("kv: ", resident, " users resident but num_users is ",
                                            resident_users_.load(std::memory_order_relaxed)));
  }
  if (by_priority_.size() != users_.size()) {
    return absl::InternalError("kv: priority set and user table differ in size");
  }
  int64_t used = 0;
  for (int32_t c : slots_.OwnedChunks()) used += slots_.Used(c);
  if (used != owned_blocks) {
    return absl::InternalError(
        absl::StrCat("kv: ", used, " blocks allocated but users own ", owned_blocks));
  }
  std::vector<int32_t> chunk_pinned(chunk_pinned_.size(), 0);
  for (size_t b = 0; b < block_pins_.size(); ++b) {
    if (block_pins_[b] < 0) return absl::InternalError(absl::StrCat("kv: block ", b, " pins < 0"));
    if (block_pins_[b] > 0 && block_user_[b] < 0) {
      return absl::InternalError(absl::StrCat("kv: free block ", b, " is pinned"));
    }
    if (block_pins_[b] > 0)
      ++chunk_pinned[static_cast<size_t>(slots_.Chunk(static_cast<uint32_t>(b)))];
  }
  if (chunk_pinned != chunk_pinned_) {
    return absl::InternalError("kv: per-chunk pinned block counts disagree with the pins");
  }
  return absl::OkStatus();
}

// ---- Resize (pool::ChunkClient) ----------------------------------------------------------------

void KvCache::AddChunk(int32_t chunk) {
  absl::MutexLock lock(&mu_);
  slots_.AddChunk(chunk);
}

int32_t KvCache::BeginRelease() {
  absl::MutexLock lock(&mu_);
  int32_t best = -1;
  int64_t best_used = 0, best_pinned = 0;
  int64_t examined = 0;
  for (int32_t c : slots_.OwnedChunks()) {
    if (slots_.Draining(c)) continue;
    ++examined;
    const int64_t pinned = chunk_pinned_[static_cast<size_t>(c)];
    const int64_t used = slots_.Used(c);
    if (best < 0 || pinned < best_pinned || (pinned == best_pinned && used < best_used)) {
      best = c;
      best_used = used;
      best_pinned = pinned;
    }
  }
  s_release_examined_.fetch_add(examined, std::memory_order_relaxed);
  if (best >= 0) {
    slots_.BeginDrain(best);
    drain_cursor_ = 0;
  }
  return best;
}

void KvCache::CancelRelease(int32_t chunk) {
  absl::MutexLock lock(&mu_);
  if (!slots_.Owns(chunk) || !slots_.Draining(chunk)) return;
  slots_.CancelDrain(chunk);
  drain_cursor_ = 0;
}

std::vector<int32_t> KvCache::HeldChunks() const {
  absl::MutexLock lock(&mu_);
  return slots_.OwnedChunks();
}

pool::DrainResult KvCache::Drain(int32_t chunk, int64_t max_bytes) {
  pool::DrainResult result;
  struct Move {
    uint32_t src;
    uint32_t dst;
    uint32_t gen;
    int64_t user;
    int32_t index;
  };
  std::vector<Move> moves;
  std::vector<pool::PoolCopy> copies;
  // Bounds this call's work: every block moved or dropped uses its bytes.
  int64_t budget = max_bytes;
  for (;;) {
    moves.clear();
    copies.clear();
    bool pass_done = false;
    {
      absl::MutexLock lock(&mu_);
      if (!slots_.Owns(chunk) || !slots_.Draining(chunk)) {
        result.empty = !slots_.Owns(chunk);
        return result;
      }
      int examined = 0;
      int64_t dropped = 0;
      while (examined < kDrainBlocksPerLock &&
             static_cast<int64_t>(moves.size() + 1) * block_bytes_ + dropped <= budget) {
        if (drain_cursor_ >= slots_.slots_per_chunk()) {
          drain_cursor_ = 0;
          pass_done = true;
          break;
        }
        const uint32_t block = slots_.Slot(chunk, drain_cursor_++);
        ++examined;
        const int64_t uid = block_user_[block];
        if (uid < 0 || block_pins_[block] > 0) continue;
        // Blocks of budget left for this one, its move included (the loop condition makes it
        // >= 1): evictions made to find it a destination must fit in the rest.
        const int64_t room =
            (budget - dropped - static_cast<int64_t>(moves.size()) * block_bytes_) / block_bytes_;
        int64_t dst = slots_.Allocate();
        if (dst < 0) {
          int64_t evicted = 0;
          const bool made = MakeRoomLocked(1, /*protect_user=*/-1, room - 1, &evicted);
          result.dropped_bytes += evicted * block_bytes_;
          dropped += evicted * block_bytes_;
          if (made) dst = slots_.Allocate();
        }
        if (block_user_[block] != uid) {
          // Making room evicted this very block.
          if (dst >= 0) slots_.Free(static_cast<uint32_t>(dst));
          continue;
        }
        if (dst < 0) {
          // No room anywhere: cut the owner back to before this block (blocks after it are
          // unpinned too, since pins cover prefixes and appenders pin their whole table), as far
          // as the budget left allows; a block not reached is revisited by the next call.
          const int64_t left =
              (budget - dropped - static_cast<int64_t>(moves.size()) * block_bytes_) / block_bytes_;
          const int64_t cached_before = users_.find(uid)->second.cached;
          const int64_t before = CeilDiv(cached_before, options_.tokens_per_block);
          const int64_t freed = TrimLocked(uid, block_index_[block], std::max<int64_t>(left, 0));
          GhostLostLocked(uid, cached_before);
          result.dropped_bytes += freed * block_bytes_;
          dropped += freed * block_bytes_;
          // Stopped by the budget short of this block: revisit it in the next call.
          if (freed == left && block_user_[block] == uid) --drain_cursor_;
          if (freed > 0) {
            auto after = users_.find(uid);
            if (after == users_.end() || after->second.cached == 0) {
              s_evicted_users_.fetch_add(1, std::memory_order_relaxed);
            } else if (before > 0) {
              s_trimmed_users_.fetch_add(1, std::memory_order_relaxed);
            }
          }
          continue;
        }
        block_user_[static_cast<uint32_t>(dst)] = kReservedBlock;
        moves.push_back(
            Move{block, static_cast<uint32_t>(dst), block_gen_[block], uid, block_index_[block]});
        copies.push_back(pool::PoolCopy{slots_.Offset(block),
                                        slots_.Offset(static_cast<uint32_t>(dst)), block_bytes_});
      }
      budget -= dropped;
      if (moves.empty()) {
        if (slots_.Used(chunk) == 0) {
          slots_.RemoveChunk(chunk);
          result.empty = true;
          return result;
        }
        if (pass_done || budget < block_bytes_) {
          result.blocked = pass_done;
          result.remaining_bytes = int64_t{slots_.Used(chunk)} * block_bytes_;
          return result;
        }
        continue;
      }
    }
    // Copy without the lock. A source written (Reserve bumps its generation), pinned or freed
    // meanwhile makes the commit discard that move.
    absl::Status copied = storage_->CopyPoolToPool(copies);
    {
      absl::MutexLock lock(&mu_);
      for (const Move& m : moves) {
        const bool still = copied.ok() && block_user_[m.src] == m.user &&
                           block_index_[m.src] == m.index && block_gen_[m.src] == m.gen &&
                           block_pins_[m.src] == 0;
        if (!still) {
          FreeBlockLocked(m.dst);
          continue;
        }
        User& u = users_.find(m.user)->second;
        u.blocks[static_cast<size_t>(m.index)] = m.dst;
        block_user_[m.dst] = m.user;
        block_index_[m.dst] = m.index;
        block_gen_[m.dst] = 0;
        FreeBlockLocked(m.src);
        s_relocated_.fetch_add(1, std::memory_order_relaxed);
        result.copied_bytes += block_bytes_;
      }
      result.remaining_bytes = int64_t{slots_.Used(chunk)} * block_bytes_;
    }
    if (!copied.ok()) {
      spdlog::error("kv resize: relocation copy failed: {}", copied);
      result.blocked = true;
      return result;
    }
    budget -= static_cast<int64_t>(moves.size()) * block_bytes_;
    if (budget < block_bytes_) return result;
  }
}

}  // namespace helm::kv
