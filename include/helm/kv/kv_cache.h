// The paged KV cache (DESIGN.md §3): per-user K/V of history tokens in fixed blocks inside the KV
// chunks of the unified pool, reused across a user's requests.
//
// Block layout (fixed; the model's kernels depend on it). A block holds tokens_per_block tokens
// of K and V for every layer, laid out [num_layers][2: K then V][tokens_per_block][num_heads][d]
// with d = d_qk for K and d_v for V, elements of kv.dtype. The cache itself knows only the block's
// size (KvCacheOptions::block_bytes, which model::KvCacheOptionsFor derives; it equals
// config::KvBlockBytes(model, kv)), never the layers inside it. A block is addressed by its byte
// offset in the arena. Token t of a user's sequence lives in the user's block t / tokens_per_block
// at slot t % tokens_per_block.
//
// Per request (a KvLease):
//   1. Acquire(user, history) verifies the cached prefix against the request's history with
//      per-block chained hashes of (item id, action, timestamp): the longest run of matching
//      leading blocks is reused (plus a matching partial last block), the rest is a miss. The
//      blocks covering the reusable prefix are pinned until the lease is released.
//   2. After the model computed the uncached suffix, Reserve(n) returns the blocks to write the
//      next n tokens into (continuing in the user's partly filled last block), allocating blocks
//      and evicting other users' unpinned blocks as needed. Errors, after which the caller simply
//      does not cache: ResourceExhausted when nothing more can be freed; FailedPrecondition when
//      another in-flight request of the same user is already appending, or reads cached tokens
//      beyond this request's reusable prefix (which appending would overwrite).
//   3. Commit() makes the new length and its hashes visible to later requests.
//   4. Release() (or the destructor) unpins; reserved but uncommitted blocks are freed.
// A pinned block is never evicted, trimmed or relocated.
//
// Eviction is by user. "cost_aware": Greedy-Dual-Size-Frequency with the recompute cost of the
// cached prefix (HSTU: per-token linear cost plus attention cost growing with position) per byte,
// times the user's request count, plus an inflation value that ages old users; when a victim holds
// more than is needed, only its tail blocks are trimmed (a shorter prefix still saves work). "lru":
// the least recently acquired user is dropped whole.
//
// Residency events: every change of a user's cached length (growth on commit, trim, drop) is
// recorded as (user, cached_tokens, history_start), coalesced per user, and drained by the node
// with DrainResidencyEvents; ResidentUsers() is the snapshot for a new subscriber. history_start
// fingerprints the cached history's first event (helm::HistoryStartFingerprint), so the router can
// tell that a request whose history starts elsewhere (the client dropped the oldest events)
// cannot reuse this cache.
//
// Resize: as a pool::ChunkClient the cache gives up its chunk with the fewest used blocks,
// relocating unpinned blocks into free blocks elsewhere (evicting by policy to make room) and
// trimming owners where room cannot be made. Copies run outside the lock. An aborted release
// (CancelRelease) keeps every block still in the chunk cached where it is.
//
// Thread-safety: all methods are thread-safe; one mutex guards the bookkeeping, held for short
// critical sections (no copies, no hashing under it). Leases must be released before the cache is
// destroyed; the cache must be destroyed before the pool.
//
// Work under the lock is bounded (B = blocks per chunk, C = pool chunks, L = in-flight leases):
//   - num_users() is O(1): a counter kept as users become resident or leave; it takes no lock.
//   - BeginRelease() is O(C): per-chunk counts of pinned blocks are kept as pins change, so it
//     examines each held chunk once and no slot (KvStats::release_chunks_examined counts them).
//   - Drain(chunk, max_bytes) moves plus drops at most max(max_bytes, 0) / block_bytes blocks in
//     all: the blocks it evicts elsewhere to make room for a relocation and those it trims from an
//     owner when no room can be made count against max_bytes and are reported in dropped_bytes.
//     One lock hold examines at most 64 slots of the chunk; each eviction's victim search passes
//     at most L users whose tail is pinned.
//   - Reserve(n) evicts at most the blocks it needs plus the blocks of chunks being drained (which
//     free no allocatable space), with the same victim search.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "helm/common/ghost_list.h"
#include "helm/kv/eviction.h"
#include "helm/kv/options.h"
#include "helm/pool/chunk_slots.h"
#include "helm/pool/pool.h"

namespace helm::kv {

// A request's history: parallel columns of equal length, oldest first.
struct History {
  absl::Span<const int64_t> item_ids;
  absl::Span<const int32_t> actions;
  absl::Span<const int64_t> timestamps_ms;
};

struct ResidencyEvent {
  int64_t user_id = 0;
  int64_t cached_tokens = 0;  // 0: the user is gone
  // HistoryStartFingerprint of the cached history's first event; 0 when unknown (cached through
  // AcquireUnverified) or when nothing is cached.
  uint64_t history_start = 0;
  bool operator==(const ResidencyEvent&) const = default;
};

// Cumulative counters (relaxed atomics): take two snapshots and subtract for a window.
struct KvStats {
  int64_t requests = 0;                 // leases acquired
  int64_t requested_tokens = 0;         // history tokens of those requests
  int64_t hit_tokens = 0;               // reusable cached prefix tokens
  int64_t recomputed_tokens = 0;        // requested - hit (the model computes them)
  int64_t prefix_mismatches = 0;        // requests whose history disagreed with part of the cache
  int64_t appended_tokens = 0;          // committed growth
  int64_t evicted_users = 0;            // users dropped whole
  int64_t trimmed_users = 0;            // users whose tail was trimmed
  int64_t evicted_blocks = 0;           // blocks freed by eviction and trimming
  int64_t relocated_blocks = 0;         // blocks moved while emptying a chunk
  int64_t reserve_exhausted = 0;        // Reserve calls refused for lack of space
  int64_t reserve_conflicts = 0;        // Reserve calls refused for a concurrent request
  int64_t release_chunks_examined = 0;  // chunks BeginRelease compared (its work: no slot scans)
  // Recomputed tokens that a KV share larger by pool.ghost_share would have kept: of each request,
  // at most the tokens its user lost to eviction or a resize since its last request (the ghost
  // list of users who lost tokens, weighted by them).
  int64_t ghost_hit_tokens = 0;

  KvStats operator-(const KvStats& o) const;
  double token_hit_ratio() const {
    return requested_tokens > 0 ? static_cast<double>(hit_tokens) / requested_tokens : 0.0;
  }
};

// Where Reserve put the next tokens: token t in [first_token, first_token + num_tokens) goes to
// block_offsets[t / tokens_per_block - first_token / tokens_per_block] at slot
// t % tokens_per_block.
struct KvReservation {
  int64_t first_token = 0;
  int64_t num_tokens = 0;
  std::vector<int64_t> block_offsets;
};

class KvCache;

// One request's hold on a user's cached blocks. Move-only; releases on destruction.
class KvLease {
 public:
  KvLease() = default;
  ~KvLease() { Release(); }
  KvLease(KvLease&& other) noexcept;
  KvLease& operator=(KvLease&& other) noexcept;
  KvLease(const KvLease&) = delete;
  KvLease& operator=(const KvLease&) = delete;

  bool active() const { return cache_ != nullptr; }
  int64_t user_id() const { return user_id_; }
  int64_t history_tokens() const { return history_tokens_; }
  // HistoryStartFingerprint of the history's first event; 0 when unverified or empty.
  uint64_t history_start() const { return history_start_; }
  // The verified reusable prefix (tokens) and the pinned blocks covering it, in sequence order;
  // after Commit, the committed length and all its blocks (still pinned by this lease).
  int64_t cached_tokens() const { return prefix_; }
  absl::Span<const int64_t> cached_block_offsets() const { return prefix_offsets_; }
  // Tokens reserved so far (cached_tokens() + everything Reserve returned).
  int64_t end_tokens() const { return end_; }

  // See KvCache's header comment. InvalidArgument when num_tokens < 1 or the reservation would
  // run past the request's history; FailedPrecondition on an inactive lease.
  absl::StatusOr<KvReservation> Reserve(int64_t num_tokens);
  // Publishes everything reserved so far. OK with nothing reserved.
  absl::Status Commit();
  // Unpins (idempotent); uncommitted reservations are freed.
  void Release();

 private:
  friend class KvCache;
  KvCache* cache_ = nullptr;
  uint64_t lease_id_ = 0;
  int64_t user_id_ = 0;
  int64_t history_tokens_ = 0;
  uint64_t history_start_ = 0;  // fingerprint of the history's first event; 0: unverified or empty
  int64_t prefix_ = 0;
  int64_t end_ = 0;
  bool appending_ = false;
  std::vector<int64_t> prefix_offsets_;
  std::vector<uint32_t> pinned_;  // block ids this lease pinned
  // Chained history hashes: hashes_[k] covers tokens [0, k); empty for unverified leases.
  std::vector<uint64_t> hashes_;
};

class KvCache final : public pool::ChunkClient {
 public:
  // Creates the cache and attaches it to `pool` (which must outlive it). InvalidArgument for bad
  // options (naming the key), a block_bytes < 1 or one that does not fit in a chunk, or a negative
  // or non-finite attention_ratio.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const KvCacheOptions& options,
                                                         pool::Pool* pool);
  ~KvCache() override;

  // Starts a request of `user_id` (>= 0) with its whole history. InvalidArgument when the columns
  // differ in length or the user id is negative.
  absl::StatusOr<KvLease> Acquire(int64_t user_id, const History& history);
  // Starts a request without verifying history hashes: trusts that the history only grew since
  // the cached prefix was written (reuse = min(cached, history_tokens)). For the simulator, which
  // has no history contents; a cache should use one Acquire flavour only (a verified Acquire on a
  // user cached through this one misses, since no hashes were kept).
  absl::StatusOr<KvLease> AcquireUnverified(int64_t user_id, int64_t history_tokens);

  int64_t block_bytes() const { return block_bytes_; }
  int32_t tokens_per_block() const { return options_.tokens_per_block; }
  // The user's committed cached length in tokens (0 when not resident).
  int64_t CachedTokens(int64_t user_id) const;
  // Byte offsets of the blocks holding the user's cached tokens (for tests and diagnostics).
  std::vector<int64_t> BlockOffsets(int64_t user_id) const;
  int64_t used_blocks() const;
  int64_t capacity_blocks() const;
  // Users with a cached length > 0. O(1), lock-free (a counter maintained under the lock).
  int64_t num_users() const;
  KvStats stats() const;
  pool::Storage* storage() const { return storage_; }

  // Residency events since the last drain, one per changed user with its latest cached length.
  void DrainResidencyEvents(std::vector<ResidencyEvent>* out);
  // Every resident user with its cached length (for a new subscriber).
  std::vector<ResidencyEvent> ResidentUsers() const;

  // Block tables, pins, free lists and chunk bookkeeping agree (tests).
  absl::Status CheckInvariants() const;

  // pool::ChunkClient
  void AddChunk(int32_t chunk) override;
  // Picks the held, non-draining chunk with the fewest pinned blocks (then the fewest used). O(held
  // chunks): reads per-chunk pinned counts, scans no slot.
  int32_t BeginRelease() override;
  // Takes the chunk back: its remaining blocks stay cached and its free blocks allocatable.
  void CancelRelease(int32_t chunk) override;
  // copied_bytes + dropped_bytes <= max_bytes: evictions made to find relocation room and trims
  // of owners where none can be made are counted in dropped_bytes and charged to max_bytes.
  pool::DrainResult Drain(int32_t chunk, int64_t max_bytes) override;
  std::vector<int32_t> HeldChunks() const override;

 private:
  friend class KvLease;
  struct LeaseRef {
    uint64_t lease_id;
    int64_t prefix;  // tokens the lease reads
  };
  struct User {
    int64_t cached = 0;
    std::vector<uint32_t> blocks;        // block ids, sequence order (may exceed cached: reserved)
    std::vector<uint64_t> block_hashes;  // h at each full block boundary within cached
    uint64_t tail_hash = 0;              // h at `cached` when it ends inside a block
    uint64_t history_start = 0;          // fingerprint of the cached history's first event
    uint64_t appender = 0;               // lease id of the request appending, 0 if none
    std::vector<LeaseRef> leases;
    int64_t requests = 0;
    double priority = 0;  // its key in by_priority_
  };
  static constexpr int64_t kNoUser = -1;
  static constexpr int64_t kReservedBlock = -2;

  KvCache(const KvCacheOptions& options, pool::Pool* pool);

  // Shared by both Acquire flavours; `hashes` empty (and `history_start` 0) means unverified.
  absl::StatusOr<KvLease> AcquireImpl(int64_t user_id, int64_t history_tokens,
                                      std::vector<uint64_t> hashes, uint64_t history_start);

  absl::StatusOr<KvReservation> Reserve(KvLease* lease, int64_t num_tokens);
  absl::Status Commit(KvLease* lease);
  void Release(KvLease* lease);

  // Recomputes the user's eviction priority; `used` marks a new request (LRU recency).
  void Reprioritize(int64_t user_id, User& u, bool used) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a residency event for the user's current cached length and history start.
  void EmitLocked(int64_t user_id, const User& u) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After `user_id` lost tokens to make room (it held `cached_before`): adds them to its ghost.
  void GhostLostLocked(int64_t user_id, int64_t cached_before) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Frees up to `max_blocks` unpinned tail blocks of a user beyond its first `keep_blocks`;
  // returns how many were freed. Updates length, hashes, priority and events; erases a user left
  // with nothing.
  int64_t TrimLocked(int64_t user_id, int64_t keep_blocks,
                     int64_t max_blocks = std::numeric_limits<int64_t>::max())
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Evicts by policy until `blocks` are allocatable, never touching `protect_user` and evicting
  // at most `max_evict_blocks` in all (a victim that would take more is left alone); false when
  // that is not enough. Stores the blocks evicted in `*evicted_blocks` when not null.
  bool MakeRoomLocked(int64_t blocks, int64_t protect_user, int64_t max_evict_blocks,
                      int64_t* evicted_blocks) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The user's unpinned tail blocks, counted up to `cap`.
  int64_t EvictableTail(const User& u, int64_t cap) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets a user's cached length, keeping the resident-user count.
  void SetCachedLocked(User& u, int64_t cached) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pin counts, keeping the per-chunk count of pinned blocks.
  void PinLocked(uint32_t block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnpinLocked(uint32_t block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeBlockLocked(uint32_t block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeEraseUserLocked(int64_t user_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const KvOptions options_;
  const int64_t block_bytes_;
  pool::Pool* const pool_;
  pool::Storage* const storage_;

  mutable absl::Mutex mu_;
  pool::ChunkSlots slots_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, User> users_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::pair<double, int64_t>> by_priority_ ABSL_GUARDED_BY(mu_);
  // The eviction order's priorities (eviction.h); the recompute cost model: a token at position t
  // costs (1 + attention_ratio * t) units.
  EvictionPriority priority_ ABSL_GUARDED_BY(mu_);
  uint64_t next_lease_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Per block id: owner user (kNoUser, kReservedBlock), index in its table, pins, write generation.
  std::vector<int64_t> block_user_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> block_index_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> block_pins_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> block_gen_ ABSL_GUARDED_BY(mu_);
  // Per pool chunk: blocks with pins > 0 (BeginRelease's criterion without a slot scan).
  std::vector<int32_t> chunk_pinned_ ABSL_GUARDED_BY(mu_);
  // Users with cached > 0; written under mu_, read without it by num_users().
  std::atomic<int64_t> resident_users_{0};
  int32_t drain_cursor_ ABSL_GUARDED_BY(mu_) = 0;
  // Users who lost cached tokens to make room, weighted by the tokens lost (KvStats).
  GhostList ghost_ ABSL_GUARDED_BY(mu_);

  mutable absl::Mutex events_mu_;
  absl::flat_hash_map<int64_t, ResidencyEvent> pending_events_ ABSL_GUARDED_BY(events_mu_);

  std::atomic<int64_t> s_requests_{0}, s_requested_{0}, s_hit_{0}, s_recomputed_{0}, s_mismatch_{0},
      s_appended_{0}, s_evicted_users_{0}, s_trimmed_users_{0}, s_evicted_blocks_{0},
      s_relocated_{0}, s_exhausted_{0}, s_conflicts_{0}, s_release_examined_{0}, s_ghost_hit_{0};
};

// Chained hashes of a history: out[k] covers tokens [0, k), for k in [0, size]. Exposed for tests.
void HistoryHashes(const History& history, std::vector<uint64_t>* out);

}  // namespace helm::kv
