// The unified pool: one arena cut into fixed chunks, each owned by the EMB hot cache or by the
// paged KV cache, and a boundary between them that moves at runtime (DESIGN.md §2).
//
// Ownership. Every chunk has exactly one owner at any time. While a chunk moves, it stays with
// its source cache (which no longer allocates into it and relocates or drops what it holds) until
// it is empty; then, in one short critical section, it is committed to the other cache as empty
// capacity. The committed split r = EMB chunks / all chunks (a moving chunk counts for its
// source) is what the router and controller see.
//
// Split control, the contract the node and the simulator drive (the same calls on a real or a
// virtual clock): set a target; step the move in bounded work; abort or reverse a move in flight.
//   1. SetTarget(emb_share) clamps to [r_min, r_max] and rounds to whole chunks. It only records
//      the target: cheap, it never waits for a Step and never calls into a cache, so a controller
//      may call it at any time and as often as it likes.
//   2. Nothing moves until Step() is called: the pool has no thread of its own. The node calls
//      Step() from one of its threads (e.g. every millisecond or so while
//      Snapshot().pending_chunks > 0). Each Step handles at most pool.max_step_bytes of content
//      (relocated plus dropped), in pieces that each hold a cache lock for tens of microseconds;
//      lookups and appends keep running in between. A chunk whose remaining content is pinned (in
//      use by an in-flight lookup or request) waits for a later Step.
//   3. One chunk moves at a time. When the target no longer wants the moving chunk to leave its
//      source (its source side would then hold fewer chunks than the target gives it), the next
//      Step aborts the move before draining anything more: the source gets the chunk back as
//      usable capacity (ChunkClient::CancelRelease). What was already relocated or dropped stays
//      so; what is still in the chunk stays valid and servable; nothing more is dropped. If the
//      target now wants the other direction, the same Step goes on with a normal move the other
//      way. Until that Step, Snapshot() already reports the move as aborting, and its pending
//      figures leave it out.
//
// Clients. The caches implement ChunkClient and attach themselves when created (Attach) and
// detach when destroyed (Detach). A side with no client attached holds its chunks as plain
// capacity (moves to and from it are immediate); this keeps a pool with only one cache usable.
//
// Thread-safety: all methods are thread-safe. Step() calls are serialised internally. The pool
// calls ChunkClient methods only from Step, Attach and Detach, never while holding its own state
// lock, so a client may take its own locks freely (but must not call back into the pool).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "helm/common/clock.h"
#include "helm/pool/options.h"
#include "helm/pool/storage.h"

namespace helm::pool {

enum class ChunkOwner : uint8_t { kEmb = 0, kKv = 1 };
const char* ChunkOwnerName(ChunkOwner owner);

// What one ChunkClient::Drain call did. copied + dropped bytes stay within the call's budget.
struct DrainResult {
  int64_t copied_bytes = 0;     // content relocated into the cache's other chunks
  int64_t dropped_bytes = 0;    // content dropped (evicted) instead
  int64_t remaining_bytes = 0;  // content still in the chunk
  bool empty = false;           // nothing is left: the client has already removed the chunk
  bool blocked = false;         // what is left is pinned or in flight: try again in a later step
};

// Implemented by each cache. Called by the pool only (see the header comment for threading).
class ChunkClient {
 public:
  virtual ~ChunkClient() = default;
  // Takes `chunk` as new, empty capacity.
  virtual void AddChunk(int32_t chunk) = 0;
  // Picks the coldest of its chunks to give up, stops allocating into it and returns it; -1 when
  // it holds no chunk it could give up.
  virtual int32_t BeginRelease() = 0;
  // Aborts the release of `chunk` (returned by BeginRelease, not yet reported empty by Drain):
  // the cache takes it back as usable capacity without draining it any further and allocates into
  // its free space again. What Drain already relocated or dropped stays so; what is still in the
  // chunk stays valid and servable.
  virtual void CancelRelease(int32_t chunk) = 0;
  // Empties the chunk picked by BeginRelease a bounded piece at a time: relocates still-useful
  // content into free space of its other chunks and drops the rest, handling at most `max_bytes`
  // of content (copied plus dropped) in this call, so that a step's work is bounded even when
  // everything is dropped. Never moves or drops pinned content. When nothing is left, removes
  // the chunk from its capacity and reports empty.
  virtual DrainResult Drain(int32_t chunk, int64_t max_bytes) = 0;
  // The chunks it holds (those being drained included), for invariant checks.
  virtual std::vector<int32_t> HeldChunks() const = 0;
  // Background fill when idle (EMB prefetch of hot missing rows); copies at most `max_bytes` and
  // returns the bytes copied. Must yield (return 0) rather than wait for foreground work.
  virtual int64_t Prefetch(int64_t max_bytes) { return 0; }
};

// The pool's state as the router and controller see it.
struct PoolSnapshot {
  int32_t num_chunks = 0;
  int64_t chunk_bytes = 0;
  int32_t emb_chunks = 0;  // committed; a moving chunk counts for its source
  int32_t kv_chunks = 0;
  double committed_split = 0;  // emb_chunks / num_chunks
  double target_split = 0;     // as set (after clamping)
  int32_t target_emb_chunks = 0;
  int32_t moving_chunk = -1;  // the chunk being emptied for the target, -1 when none
  // A chunk whose move the target no longer wants: the next Step gives it back to its source
  // (moving_from) undrained. -1 when none. At most one of moving_chunk and aborting_chunk is set.
  int32_t aborting_chunk = -1;
  ChunkOwner moving_from = ChunkOwner::kEmb;  // source of moving_chunk or aborting_chunk
  int32_t pending_chunks = 0;  // chunks still to move to reach the target (moving one included)
  // Upper bound on bytes still to relocate: what the moving chunk still holds plus chunk_bytes for
  // every further chunk to move (an aborting chunk counts for nothing: it stays where it is).
  int64_t pending_bytes = 0;
};

// Cumulative counters (relaxed atomics): take two snapshots and subtract for a window.
struct PoolStats {
  int64_t steps = 0;
  int64_t blocked_steps = 0;  // steps that stopped at pinned content
  int64_t chunks_to_emb = 0;
  int64_t chunks_to_kv = 0;
  int64_t migration_bytes_done = 0;     // relocated (device-local copies)
  int64_t migration_bytes_dropped = 0;  // dropped while emptying chunks
  int64_t prefetch_bytes = 0;
  int64_t aborted_moves = 0;  // moves given back to their source before the chunk was empty

  PoolStats operator-(const PoolStats& o) const;
};

// What one Step did.
struct StepResult {
  int64_t copied_bytes = 0;
  int32_t chunks_committed = 0;
  bool idle = false;     // the committed split already equals the target
  bool blocked = false;  // stopped at pinned content
  bool aborted = false;  // gave a move the target no longer wanted back to its source
};

class Pool {
 public:
  // Creates the storage named by options.backend (CreateStorage) and the chunk map with
  // round(initial_split * num_chunks) EMB chunks (the lowest-numbered ones). InvalidArgument when
  // the options are inconsistent (Validate()), or storage errors.
  static absl::StatusOr<std::unique_ptr<Pool>> Create(const PoolOptions& options,
                                                      Clock* clock = Clock::Real());
  // Same, with a storage the caller made (its size must be options.bytes).
  static absl::StatusOr<std::unique_ptr<Pool>> Create(const PoolOptions& options,
                                                      std::unique_ptr<Storage> storage,
                                                      Clock* clock = Clock::Real());
  // REQUIRES: both clients have detached (the caches are destroyed before the pool).
  ~Pool();

  Storage* storage() const { return storage_.get(); }
  const PoolOptions& options() const { return options_; }
  int32_t num_chunks() const { return num_chunks_; }
  int64_t chunk_bytes() const { return options_.chunk_bytes; }
  // The bytes each cache's ghost list covers: pool.ghost_share of the chunks' bytes.
  double ghost_bytes() const {
    return options_.ghost_share * static_cast<double>(num_chunks_) * options_.chunk_bytes;
  }
  // The clock the pool was created with; the caches attached to it take their time from it too.
  Clock* clock() const { return clock_; }

  // Attaches the cache for `owner`; calls client->AddChunk for every chunk that side owns before
  // returning. AlreadyExists when that side already has a client.
  absl::Status Attach(ChunkOwner owner, ChunkClient* client);
  // Detaches it (waits for a running Step). A chunk it was emptying is committed to the other
  // side if the target still wants the move, else it stays with this side. Its chunks stay its
  // side's capacity.
  void Detach(ChunkOwner owner);

  // Sets the target EMB share; returns it clamped to [r_min, r_max] (NaN: r_min). Only records it
  // (never blocks behind a Step, never calls a cache); the next Step acts on it, first aborting a
  // move in flight the new target no longer wants (see the header comment).
  double SetTarget(double emb_share);
  // Runs one bounded resize step (see header comment): aborts an unwanted move, then moves chunks
  // toward the target within pool.max_step_bytes; when idle, runs the paced EMB prefetch.
  StepResult Step();
  PoolSnapshot Snapshot() const;
  PoolStats stats() const;
  // The owner of every chunk (for tests and diagnostics).
  std::vector<ChunkOwner> Owners() const;

  // Checks that every chunk has one owner, counts agree, and each attached client holds exactly
  // the chunks its side owns. For tests; takes the step lock.
  absl::Status CheckInvariants() const;

 private:
  Pool(const PoolOptions& options, std::unique_ptr<Storage> storage, Clock* clock);
  int32_t TargetChunksLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the target still wants the moving chunk to leave its source. REQUIRES: moving_ >= 0.
  bool MoveWantedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits the moving chunk to the other side.
  void CommitMove(int32_t chunk, ChunkOwner from) ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);

  const PoolOptions options_;
  const std::unique_ptr<Storage> storage_;
  Clock* const clock_;
  const int32_t num_chunks_;

  // Serialises Step, Attach and Detach (the callers of ChunkClient methods).
  mutable absl::Mutex step_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  ChunkClient* clients_[2] ABSL_GUARDED_BY(step_mu_) = {nullptr, nullptr};
  // When the last idle Step ran the prefetch; nullopt before the first (0 is a valid time: a
  // virtual clock starts there).
  std::optional<int64_t> last_prefetch_us_ ABSL_GUARDED_BY(step_mu_);

  mutable absl::Mutex mu_;
  std::vector<ChunkOwner> owner_ ABSL_GUARDED_BY(mu_);
  int32_t emb_chunks_ ABSL_GUARDED_BY(mu_) = 0;
  double target_split_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t moving_ ABSL_GUARDED_BY(mu_) = -1;
  ChunkOwner moving_from_ ABSL_GUARDED_BY(mu_) = ChunkOwner::kEmb;
  int64_t moving_remaining_bytes_ ABSL_GUARDED_BY(mu_) = 0;

  std::atomic<int64_t> steps_{0};
  std::atomic<int64_t> blocked_steps_{0};
  std::atomic<int64_t> chunks_to_emb_{0};
  std::atomic<int64_t> chunks_to_kv_{0};
  std::atomic<int64_t> bytes_done_{0};
  std::atomic<int64_t> bytes_dropped_{0};
  std::atomic<int64_t> prefetch_bytes_{0};
  std::atomic<int64_t> aborted_moves_{0};
};

}  // namespace helm::pool
