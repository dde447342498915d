// A node's compute path: the unified pool, its two caches and the HSTU model, glued per request.
//
// Rank(request): (1) acquire the user's KV lease (the verified cached prefix, pinned); (2) look up
// the item embeddings of the uncached history suffix and of the candidates in the EMB cache
// (misses are copied from host memory, admitted or staged); (3) run the model on the suffix and the
// candidates, reading the cached prefix's K/V from its blocks; (4) append the suffix's new K/V to
// the user's blocks (skipped, with nothing else changing, when the cache cannot take them: no room,
// or another request of the same user is appending) and commit; (5) answer the top-k.
//
// Thread-safety: Rank runs concurrently on many threads, each with its own Worker. The pool,
// caches and model are shared and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "helm/config/config.h"
#include "helm/emb/emb_cache.h"
#include "helm/kv/kv_cache.h"
#include "helm/model/model.h"
#include "helm/pool/pool.h"
#include "helm/v1/node.pb.h"
#include "helm/v1/recommender.pb.h"

namespace helm::serve {

// Per-thread scratch: the model workspace and reusable buffers.
class Worker {
 public:
  ~Worker();

 private:
  friend class Engine;
  Worker() = default;
  std::unique_ptr<model::Workspace> workspace;
  emb::EmbLookup emb_lookup;
  std::vector<int64_t> ids;
  std::vector<int64_t> timestamps_s;
  std::vector<const void*> cached_blocks;
  std::vector<void*> write_blocks;
};

struct RankStats {
  int32_t cached_tokens = 0;
  int32_t computed_tokens = 0;
  int32_t emb_hits = 0;
  int32_t emb_misses = 0;
  bool kv_appended = false;
};

class Engine {
 public:
  // Builds the pool (config.pool), the caches (emb, kv) and the model, on one backend: "auto"
  // picks CUDA for both the pool and the kernels where a GPU is present, else the CPU. A pool in
  // device memory with CPU kernels (or the reverse) is InvalidArgument naming the keys.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const config::Config& config);
  // Destroys the caches before the pool.
  ~Engine();

  absl::StatusOr<std::unique_ptr<Worker>> NewWorker() const;

  // Scores `request` (already validated) into `response` (items; info's cache fields).
  absl::Status Rank(Worker& worker, const v1::RankRequest& request, v1::RankResponse* response,
                    RankStats* stats) const;

  pool::Pool& pool() const { return *pool_; }
  emb::EmbCache& emb() const { return *emb_; }
  kv::KvCache& kv() const { return *kv_; }
  const model::Model& model() const { return *model_; }
  // "cpu", "cpu (PCIe emulated at 25 GB/s)", "cuda:0 (...)", with the kernel path.
  std::string backend_description() const;

  // Cumulative cache and pool counters in the wire form (helm.v1.CacheStats).
  v1::CacheStats CacheStats() const;

 private:
  Engine() = default;
  config::Config config_;
  std::unique_ptr<pool::Pool> pool_;
  std::unique_ptr<emb::EmbCache> emb_;
  std::unique_ptr<kv::KvCache> kv_;
  std::unique_ptr<model::Model> model_;
};

// The difference of two cumulative counter snapshots (split and pending bytes: `now`'s).
v1::CacheStats Subtract(const v1::CacheStats& now, const v1::CacheStats& before);

}  // namespace helm::serve
