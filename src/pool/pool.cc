#include "helm/pool/pool.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "helm/common/logging.h"
#include "spdlog/spdlog.h"

namespace helm::pool {

const char* ChunkOwnerName(ChunkOwner owner) { return owner == ChunkOwner::kEmb ? "emb" : "kv"; }

namespace {

ChunkOwner Other(ChunkOwner o) {
  return o == ChunkOwner::kEmb ? ChunkOwner::kKv : ChunkOwner::kEmb;
}
int Index(ChunkOwner o) { return static_cast<int>(o); }

// Whole EMB chunks for a share, kept inside [r_min, r_max] where whole chunks allow it.
int32_t ChunksForShare(double share, const PoolOptions& o, int32_t n) {
  constexpr double kEps = 1e-9;
  int32_t lo = static_cast<int32_t>(std::ceil(o.r_min * n - kEps));
  int32_t hi = static_cast<int32_t>(std::floor(o.r_max * n + kEps));
  lo = std::clamp(lo, 0, n);
  hi = std::clamp(hi, 0, n);
  const int32_t want = static_cast<int32_t>(std::lround(share * n));
  if (lo > hi) return std::clamp(want, 0, n);  // too few chunks to honour the bounds exactly
  return std::clamp(want, lo, hi);
}

}  // namespace

PoolStats PoolStats::operator-(const PoolStats& o) const {
  PoolStats d;
  d.steps = steps - o.steps;
  d.blocked_steps = blocked_steps - o.blocked_steps;
  d.chunks_to_emb = chunks_to_emb - o.chunks_to_emb;
  d.chunks_to_kv = chunks_to_kv - o.chunks_to_kv;
  d.migration_bytes_done = migration_bytes_done - o.migration_bytes_done;
  d.migration_bytes_dropped = migration_bytes_dropped - o.migration_bytes_dropped;
  d.prefetch_bytes = prefetch_bytes - o.prefetch_bytes;
  d.aborted_moves = aborted_moves - o.aborted_moves;
  return d;
}

absl::StatusOr<std::unique_ptr<Pool>> Pool::Create(const PoolOptions& options, Clock* clock) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  auto storage = CreateStorage(options);
  if (!storage.ok()) return storage.status();
  return Create(options, *std::move(storage), clock);
}

absl::StatusOr<std::unique_ptr<Pool>> Pool::Create(const PoolOptions& options,
                                                   std::unique_ptr<Storage> storage, Clock* clock) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (options.chunk_bytes <= 0 || (options.chunk_bytes & (options.chunk_bytes - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_bytes: must be a power of two, got ", options.chunk_bytes));
  }
  if (storage == nullptr) return absl::InvalidArgumentError("pool: storage must not be null");
  if (storage->size_bytes() < options.bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("pool: storage holds ", storage->size_bytes(),
                     " bytes, fewer than pool.bytes = ", options.bytes));
  }
  if (options.bytes / options.chunk_bytes > (int64_t{1} << 24)) {
    return absl::InvalidArgumentError(absl::StrCat("pool.chunk_bytes: too many chunks (",
                                                   options.bytes / options.chunk_bytes,
                                                   "; at most 2^24): use larger chunks"));
  }
  return std::unique_ptr<Pool>(new Pool(options, std::move(storage), clock));
}

Pool::Pool(const PoolOptions& options, std::unique_ptr<Storage> storage, Clock* clock)
    : options_(options),
      storage_(std::move(storage)),
      clock_(clock),
      num_chunks_(static_cast<int32_t>(options.bytes / options.chunk_bytes)) {
  absl::MutexLock lock(&mu_);
  emb_chunks_ = ChunksForShare(options.initial_split, options, num_chunks_);
  target_split_ = std::clamp(options.initial_split, options.r_min, options.r_max);
  owner_.assign(static_cast<size_t>(num_chunks_), ChunkOwner::kKv);
  for (int32_t c = 0; c < emb_chunks_; ++c) owner_[c] = ChunkOwner::kEmb;
}

Pool::~Pool() = default;

absl::Status Pool::Attach(ChunkOwner owner, ChunkClient* client) {
  absl::MutexLock step(&step_mu_);
  if (clients_[Index(owner)] != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("pool: a ", ChunkOwnerName(owner), " cache is already attached"));
  }
  std::vector<int32_t> chunks;
  {
    absl::MutexLock lock(&mu_);
    for (int32_t c = 0; c < num_chunks_; ++c) {
      if (owner_[c] == owner) chunks.push_back(c);
    }
  }
  clients_[Index(owner)] = client;
  for (int32_t c : chunks) client->AddChunk(c);
  return absl::OkStatus();
}

void Pool::Detach(ChunkOwner owner) {
  absl::MutexLock step(&step_mu_);
  clients_[Index(owner)] = nullptr;
  int32_t moving;
  ChunkOwner from;
  {
    absl::MutexLock lock(&mu_);
    moving = moving_;
    from = moving_from_;
  }
  if (moving < 0 || from != owner) return;
  bool wanted;
  {
    absl::MutexLock lock(&mu_);
    wanted = MoveWantedLocked();
  }
  if (wanted) {
    CommitMove(moving, from);
    return;
  }
  // The target no longer wants it moved: it stays with this side (nobody is left to cancel).
  absl::MutexLock lock(&mu_);
  moving_ = -1;
  moving_remaining_bytes_ = 0;
  aborted_moves_.fetch_add(1, std::memory_order_relaxed);
}

double Pool::SetTarget(double emb_share) {
  const double clamped = std::isnan(emb_share)
                             ? options_.r_min
                             : std::clamp(emb_share, options_.r_min, options_.r_max);
  absl::MutexLock lock(&mu_);
  target_split_ = clamped;
  return clamped;
}

int32_t Pool::TargetChunksLocked() const {
  return ChunksForShare(target_split_, options_, num_chunks_);
}

bool Pool::MoveWantedLocked() const {
  // emb_chunks_ counts the moving chunk for its source.
  const int32_t target = TargetChunksLocked();
  return moving_from_ == ChunkOwner::kEmb ? target < emb_chunks_ : target > emb_chunks_;
}

void Pool::CommitMove(int32_t chunk, ChunkOwner from) {
  const ChunkOwner to = Other(from);
  {
    absl::MutexLock lock(&mu_);
    owner_[chunk] = to;
    emb_chunks_ += (to == ChunkOwner::kEmb) ? 1 : -1;
    moving_ = -1;
    moving_remaining_bytes_ = 0;
  }
  (to == ChunkOwner::kEmb ? chunks_to_emb_ : chunks_to_kv_).fetch_add(1, std::memory_order_relaxed);
  if (ChunkClient* dest = clients_[Index(to)]; dest != nullptr) dest->AddChunk(chunk);
}

StepResult Pool::Step() {
  absl::MutexLock step(&step_mu_);
  steps_.fetch_add(1, std::memory_order_relaxed);
  StepResult result;
  int64_t budget = options_.max_step_bytes;
  // A step may finish one chunk and start the next while budget remains; the bound on chunks is a
  // guard against clients that report no progress.
  for (int round = 0; round < 4 * num_chunks_ + 4; ++round) {
    int32_t chunk;
    ChunkOwner from;
    {
      absl::MutexLock lock(&mu_);
      if (moving_ >= 0 && !MoveWantedLocked()) {
        chunk = moving_;
        from = moving_from_;
      } else {
        chunk = -1;
      }
    }
    if (chunk >= 0) {
      // Abort before draining anything more; the client takes its own lock, so not under mu_.
      // (SetTarget may change the target again meanwhile: the next round decides afresh.)
      if (ChunkClient* source = clients_[Index(from)]; source != nullptr) {
        source->CancelRelease(chunk);
      }
      {
        absl::MutexLock lock(&mu_);
        moving_ = -1;
        moving_remaining_bytes_ = 0;
      }
      aborted_moves_.fetch_add(1, std::memory_order_relaxed);
      result.aborted = true;
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (moving_ < 0) {
        const int32_t target = TargetChunksLocked();
        if (emb_chunks_ == target) {
          // An abort moves no bytes: a step that only aborted still counts as idle.
          result.idle = result.chunks_committed == 0 && result.copied_bytes == 0;
          break;
        }
        moving_from_ = emb_chunks_ > target ? ChunkOwner::kEmb : ChunkOwner::kKv;
        moving_remaining_bytes_ = 0;
        if (clients_[Index(moving_from_)] == nullptr) {
          // No cache on that side: its highest-numbered chunk moves at once.
          for (int32_t c = num_chunks_ - 1; c >= 0; --c) {
            if (owner_[c] == moving_from_) {
              moving_ = c;
              break;
            }
          }
        }
      }
      chunk = moving_;
      from = moving_from_;
    }
    ChunkClient* source = clients_[Index(from)];
    if (chunk < 0) {
      // BeginRelease runs without mu_ (the client takes its own lock).
      chunk = source->BeginRelease();
      if (chunk < 0) {
        result.blocked = true;
        break;
      }
      absl::MutexLock lock(&mu_);
      moving_ = chunk;
    }
    if (source == nullptr) {
      CommitMove(chunk, from);
      ++result.chunks_committed;
      continue;
    }
    const DrainResult d = source->Drain(chunk, std::max<int64_t>(budget, 0));
    result.copied_bytes += d.copied_bytes;
    budget -= d.copied_bytes + d.dropped_bytes;
    bytes_done_.fetch_add(d.copied_bytes, std::memory_order_relaxed);
    bytes_dropped_.fetch_add(d.dropped_bytes, std::memory_order_relaxed);
    if (d.empty) {
      CommitMove(chunk, from);
      ++result.chunks_committed;
    } else {
      absl::MutexLock lock(&mu_);
      moving_remaining_bytes_ = d.remaining_bytes;
    }
    if (d.blocked) {
      result.blocked = true;
      break;
    }
    if (!d.empty || budget <= 0) break;
  }
  if (result.blocked) blocked_steps_.fetch_add(1, std::memory_order_relaxed);

  if (result.idle && options_.prefetch_bytes_per_s > 0 &&
      clients_[Index(ChunkOwner::kEmb)] != nullptr) {
    const int64_t now_us = clock_->NowMicros();
    // The first idle step only starts the budget's clock.
    if (last_prefetch_us_.has_value() && now_us > *last_prefetch_us_) {
      const double allowed = static_cast<double>(options_.prefetch_bytes_per_s) *
                             static_cast<double>(now_us - *last_prefetch_us_) / 1e6;
      const int64_t budget_bytes =
          std::min<int64_t>(static_cast<int64_t>(allowed), options_.max_step_bytes);
      if (budget_bytes > 0) {
        const int64_t copied = clients_[Index(ChunkOwner::kEmb)]->Prefetch(budget_bytes);
        prefetch_bytes_.fetch_add(copied, std::memory_order_relaxed);
      }
    }
    last_prefetch_us_ = now_us;
  }
  return result;
}

PoolSnapshot Pool::Snapshot() const {
  absl::MutexLock lock(&mu_);
  PoolSnapshot s;
  s.num_chunks = num_chunks_;
  s.chunk_bytes = options_.chunk_bytes;
  s.emb_chunks = emb_chunks_;
  s.kv_chunks = num_chunks_ - emb_chunks_;
  s.committed_split = static_cast<double>(emb_chunks_) / num_chunks_;
  s.target_split = target_split_;
  s.target_emb_chunks = TargetChunksLocked();
  const bool wanted = moving_ >= 0 && MoveWantedLocked();
  s.moving_chunk = wanted ? moving_ : -1;
  s.aborting_chunk = moving_ >= 0 && !wanted ? moving_ : -1;
  s.moving_from = moving_from_;
  s.pending_chunks = std::abs(s.target_emb_chunks - emb_chunks_);
  if (s.pending_chunks > 0) {
    // A wanted move runs in the direction of the target, so pending_chunks counts it.
    s.pending_bytes = (wanted ? moving_remaining_bytes_ : options_.chunk_bytes) +
                      int64_t{s.pending_chunks - 1} * options_.chunk_bytes;
  }
  return s;
}

PoolStats Pool::stats() const {
  PoolStats s;
  s.steps = steps_.load(std::memory_order_relaxed);
  s.blocked_steps = blocked_steps_.load(std::memory_order_relaxed);
  s.chunks_to_emb = chunks_to_emb_.load(std::memory_order_relaxed);
  s.chunks_to_kv = chunks_to_kv_.load(std::memory_order_relaxed);
  s.migration_bytes_done = bytes_done_.load(std::memory_order_relaxed);
  s.migration_bytes_dropped = bytes_dropped_.load(std::memory_order_relaxed);
  s.prefetch_bytes = prefetch_bytes_.load(std::memory_order_relaxed);
  s.aborted_moves = aborted_moves_.load(std::memory_order_relaxed);
  return s;
}

std::vector<ChunkOwner> Pool::Owners() const {
  absl::MutexLock lock(&mu_);
  return owner_;
}

absl::Status Pool::CheckInvariants() const {
  absl::MutexLock step(&step_mu_);
  std::vector<int32_t> expected[2];
  {
    absl::MutexLock lock(&mu_);
    int32_t emb = 0;
    for (int32_t c = 0; c < num_chunks_; ++c) {
      if (owner_[c] != ChunkOwner::kEmb && owner_[c] != ChunkOwner::kKv) {
        return absl::InternalError(absl::StrCat("chunk ", c, " has no valid owner"));
      }
      expected[Index(owner_[c])].push_back(c);
      if (owner_[c] == ChunkOwner::kEmb) ++emb;
    }
    if (emb != emb_chunks_) {
      return absl::InternalError(
          absl::StrCat("emb chunk count ", emb_chunks_, " but ", emb, " chunks owned by emb"));
    }
    if (moving_ >= 0 && owner_[moving_] != moving_from_) {
      return absl::InternalError(absl::StrCat("moving chunk ", moving_, " is not owned by ",
                                              ChunkOwnerName(moving_from_)));
    }
  }
  for (ChunkOwner side : {ChunkOwner::kEmb, ChunkOwner::kKv}) {
    const ChunkClient* client = clients_[Index(side)];
    if (client == nullptr) continue;
    std::vector<int32_t> held = client->HeldChunks();
    std::sort(held.begin(), held.end());
    if (held != expected[Index(side)]) {
      return absl::InternalError(absl::StrCat(ChunkOwnerName(side), " cache holds ", held.size(),
                                              " chunks but owns ", expected[Index(side)].size()));
    }
  }
  return absl::OkStatus();
}

}  // namespace helm::pool
