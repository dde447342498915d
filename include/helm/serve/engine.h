// A node's compute path: the unified pool, its two caches and the HSTU model, on plain C++ types.
//
// A request goes through three steps, so that a batch runs as one forward and the simulator can
// put virtual time between them:
//   Prepare  (1) acquire the user's KV lease (the verified cached prefix, pinned); (2) look up the
//            item embeddings of the uncached history suffix and of the candidates in the EMB cache
//            (misses are copied from host memory, admitted or staged); say what must be computed.
//   Compute  (3) one forward over every prepared request of a batch: the dense layers as one GEMM
//            over all their rows, attention per request over its own paged K/V. On payload-free
//            storage (pool.backend none: the simulator) nothing is computed: scores are 0 and the
//            caller's cost model says how long it took.
//   Finish   (4) append the suffix's new K/V to the user's blocks (skipped, with nothing else
//            changing, when the cache cannot take them: no room, or another request of the same
//            user is appending) and commit; (5) answer the top-k; release the lease and the pins.
// Abandon releases a prepared request that will not be computed (deadline, error).
//
// Thread-safety: the steps run concurrently on many threads, each with its own Worker. The pool,
// caches and model are shared and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "helm/config/config.h"
#include "helm/emb/emb_cache.h"
#include "helm/kv/kv_cache.h"
#include "helm/model/model.h"
#include "helm/pool/pool.h"
#include "helm/serve/request.h"

namespace helm::serve {

// One request between Prepare and Finish: its lease, pinned embeddings and forward request.
class Prepared {
 public:
  Prepared() = default;
  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;

  int64_t cached_tokens() const { return lease_.cached_tokens(); }
  // HistoryStartFingerprint of the history's first event (the KV lease's); 0 when empty.
  uint64_t history_start() const { return lease_.history_start(); }
  int64_t suffix_tokens() const { return forward_.actions.size() - lease_.cached_tokens(); }
  int64_t num_candidates() const { return forward_.num_candidates; }
  int64_t emb_hits() const { return emb_hits_; }
  int64_t emb_misses() const { return emb_misses_; }
  // The ids the EMB lookup took (the suffix's items, then the candidates).
  absl::Span<const int64_t> looked_up_ids() const { return ids_; }

 private:
  friend class Engine;
  const RankInput* input_ = nullptr;
  kv::KvLease lease_;
  emb::EmbLookup emb_lookup_;
  int64_t emb_hits_ = 0;
  int64_t emb_misses_ = 0;
  std::vector<int64_t> ids_;
  std::vector<int64_t> timestamps_s_;
  std::vector<const void*> cached_blocks_;
  model::ForwardRequest forward_;
};

// Per-thread scratch: the model workspace and reusable buffers.
class Worker {
 public:
  ~Worker();

 private:
  friend class Engine;
  Worker() = default;
  std::unique_ptr<model::Workspace> workspace_;
  std::vector<model::ForwardRequest> forwards_;
  std::vector<void*> write_blocks_;
};

class Engine {
 public:
  // Builds the pool (config.pool), the caches (emb, kv) and the model, on one backend: "auto"
  // picks CUDA for both the pool and the kernels where a GPU is present, else the CPU. A pool in
  // device memory with CPU kernels (or the reverse) is InvalidArgument naming the keys. `clock`
  // paces the pool's background prefetch.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const config::Config& config,
                                                        Clock* clock = Clock::Real());
  // Destroys the caches before the pool.
  ~Engine();

  // A worker with its own workspace, warmed by one forward of node.warmup_history tokens and
  // node.warmup_candidates candidates (capped at max_history / max_candidates) that reads
  // embeddings from the arena and writes no cache: nothing a request sees changes.
  absl::StatusOr<std::unique_ptr<Worker>> NewWorker() const;
  // The warm-up forward of NewWorker (a no-op when either warm-up size is 0).
  absl::Status Warmup(Worker& worker) const;

  // Step 1 for `input` (validated; must outlive `p`'s use). On error nothing stays held.
  absl::Status Prepare(const RankInput& input, Prepared* p) const;
  // Step 2: one forward over `batch` (each prepared, none abandoned). On error the caller abandons
  // every request of the batch.
  absl::StatusOr<std::vector<model::ForwardResult>> Compute(
      Worker& worker, absl::Span<Prepared* const> batch) const;
  // Step 3 for request `index` of the last Compute on `worker`: keeps its K/V, fills `out` (items
  // and cache fields) and releases `p`.
  void Finish(Worker& worker, int64_t index, Prepared* p, const model::ForwardResult& result,
              RankOutput* out) const;
  // Releases a prepared request that will not be computed. Idempotent.
  void Abandon(Prepared* p) const;

  // All three steps for one request (tools and tests).
  absl::Status Rank(Worker& worker, const RankInput& input, RankOutput* out) const;

  pool::Pool& pool() const { return *pool_; }
  emb::EmbCache& emb() const { return *emb_; }
  kv::KvCache& kv() const { return *kv_; }
  // The model; REQUIRES: storage with payload (payload-free storage builds no model).
  const model::Model& model() const { return *model_; }
  // "cpu", "cpu (PCIe emulated at 25 GB/s)", "cuda:0 (...)", with the kernel path.
  std::string backend_description() const;

 private:
  Engine() = default;
  config::Config config_;
  std::unique_ptr<pool::Pool> pool_;
  std::unique_ptr<emb::EmbCache> emb_;
  std::unique_ptr<kv::KvCache> kv_;
  std::unique_ptr<model::Model> model_;  // null on payload-free storage
};

}  // namespace helm::serve
