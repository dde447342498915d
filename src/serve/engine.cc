#include "helm/serve/engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "helm/common/status.h"
#include "helm/model/kv_geometry.h"

namespace helm::serve {

Worker::~Worker() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const config::Config& config) {
  std::unique_ptr<Engine> engine(new Engine());
  engine->config_ = config;
  HELM_ASSIGN_OR_RETURN(engine->pool_, pool::Pool::Create(config.pool));
  const bool device_pool = engine->pool_->storage()->space() == pool::MemorySpace::kDevice;
  // The kernels must read the memory the pool lives in.
  model::ModelOptions model_options = config.model;
  if (model_options.kernels == "auto") model_options.kernels = device_pool ? "cuda" : "cpu";
  if (device_pool != (model_options.kernels == "cuda")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.kernels: '", model_options.kernels, "' cannot read a pool in ",
        device_pool ? "device" : "host", " memory (pool.backend '", config.pool.backend,
        "'); use cuda kernels with a cuda pool and cpu/reference kernels with a cpu pool"));
  }
  HELM_ASSIGN_OR_RETURN(engine->emb_, emb::EmbCache::Create(config.emb, engine->pool_.get()));
  HELM_ASSIGN_OR_RETURN(
      engine->kv_,
      kv::KvCache::Create(model::KvCacheOptionsFor(config.model, config.kv), engine->pool_.get()));
  HELM_ASSIGN_OR_RETURN(engine->model_, model::Model::Create(model_options, config.emb, config.kv));
  return engine;
}

Engine::~Engine() {
  emb_.reset();
  kv_.reset();
  model_.reset();
  pool_.reset();
}

absl::StatusOr<std::unique_ptr<Worker>> Engine::NewWorker() const {
  std::unique_ptr<Worker> worker(new Worker());
  HELM_ASSIGN_OR_RETURN(worker->workspace, model_->NewWorkspace());
  return worker;
}

std::string Engine::backend_description() const {
  return absl::StrCat(pool_->storage()->name(), ", ", model_->kernels().name(), " kernels");
}

absl::Status Engine::Rank(Worker& w, const v1::RankRequest& request, v1::RankResponse* response,
                          RankStats* stats) const {
  const int64_t history = request.history_item_ids_size();
  const int64_t candidates = request.candidate_item_ids_size();
  const kv::History columns{absl::MakeConstSpan(request.history_item_ids().data(), history),
                            absl::MakeConstSpan(request.history_actions().data(), history),
                            absl::MakeConstSpan(request.history_timestamps_ms().data(), history)};

  // (1) The reusable cached prefix, pinned until the lease goes.
  HELM_ASSIGN_OR_RETURN(kv::KvLease lease, kv_->Acquire(request.user_id(), columns));
  const int64_t cached = lease.cached_tokens();
  const int64_t suffix = history - cached;
  uint8_t* const arena = static_cast<uint8_t*>(pool_->storage()->base());
  w.cached_blocks.clear();
  for (int64_t offset : lease.cached_block_offsets()) w.cached_blocks.push_back(arena + offset);

  // (2) Embeddings of the suffix tokens, then of the candidates, in one batch lookup.
  w.ids.assign(request.history_item_ids().begin() + cached, request.history_item_ids().end());
  w.ids.insert(w.ids.end(), request.candidate_item_ids().begin(),
               request.candidate_item_ids().end());
  HELM_RETURN_IF_ERROR(emb_->Lookup(w.ids, &w.emb_lookup));
  const int64_t* locations = w.emb_lookup.locations().data();

  // (3) Forward. The model's time bias works in seconds.
  w.timestamps_s.resize(history);
  for (int64_t i = 0; i < history; ++i) w.timestamps_s[i] = request.history_timestamps_ms(i) / 1000;
  model::ForwardRequest forward;
  forward.actions = absl::MakeConstSpan(request.history_actions().data(), history);
  forward.timestamps = w.timestamps_s;
  forward.cached_tokens = cached;
  forward.cached_blocks = w.cached_blocks;
  forward.suffix = model::EmbeddingInput{nullptr, arena, w.emb_lookup.staging_data(), locations};
  forward.candidates =
      model::EmbeddingInput{nullptr, arena, w.emb_lookup.staging_data(), locations + suffix};
  forward.num_candidates = candidates;
  absl::StatusOr<model::ForwardResult> result = model_->Forward(*w.workspace, forward);
  stats->emb_hits = static_cast<int32_t>(w.emb_lookup.hits());
  stats->emb_misses = static_cast<int32_t>(w.emb_lookup.misses());
  w.emb_lookup.Release();  // the rows are consumed; unpin them for eviction and resizes
  HELM_RETURN_IF_ERROR(result.status());
  stats->cached_tokens = static_cast<int32_t>(cached);
  stats->computed_tokens = static_cast<int32_t>(suffix);

  // (4) Keep the suffix's K/V for the user's next request, when the cache can take it.
  if (suffix > 0) {
    absl::StatusOr<kv::KvReservation> reservation = lease.Reserve(suffix);
    if (reservation.ok()) {
      const int64_t tpb = kv_->tokens_per_block();
      const int64_t first_block = reservation->first_token / tpb;
      w.write_blocks.assign(first_block + reservation->block_offsets.size(), nullptr);
      for (size_t b = 0; b < reservation->block_offsets.size(); ++b) {
        w.write_blocks[first_block + b] = arena + reservation->block_offsets[b];
      }
      const absl::Status appended =
          model_->AppendKv(*w.workspace, w.write_blocks, reservation->first_token, suffix);
      if (appended.ok()) {
        stats->kv_appended = lease.Commit().ok();
      }
    }
  }
  lease.Release();

  // (5) The answer: every candidate in request order (top_k 0) or the k best, best first.
  response->clear_items();
  const std::vector<float>& scores = result->scores;
  if (request.top_k() == 0) {
    for (int64_t c = 0; c < candidates; ++c) {
      v1::ScoredItem* item = response->add_items();
      item->set_item_id(request.candidate_item_ids(c));
      item->set_score(scores[c]);
    }
  } else {
    for (int32_t c : model::TopK(scores, request.top_k())) {
      v1::ScoredItem* item = response->add_items();
      item->set_item_id(request.candidate_item_ids(c));
      item->set_score(scores[c]);
    }
  }
  v1::ServingInfo* info = response->mutable_info();
  info->set_cached_tokens(stats->cached_tokens);
  info->set_computed_tokens(stats->computed_tokens);
  info->set_emb_hits(stats->emb_hits);
  info->set_emb_misses(stats->emb_misses);
  info->set_resident_tokens(stats->kv_appended ? static_cast<int32_t>(history)
                                               : stats->cached_tokens);
  return absl::OkStatus();
}

v1::CacheStats Engine::CacheStats() const {
  const emb::EmbStats e = emb_->stats();
  const kv::KvStats k = kv_->stats();
  const pool::PoolStats p = pool_->stats();
  const pool::PoolSnapshot snap = pool_->Snapshot();
  v1::CacheStats s;
  s.set_emb_lookups(e.lookups);
  s.set_emb_unique_ids(e.unique_ids);
  s.set_emb_hits(e.hits);
  s.set_emb_misses(e.misses);
  s.set_emb_h2d_bytes(e.h2d_bytes);
  s.set_emb_evictions(e.evictions);
  s.set_emb_admission_rejects(e.admission_rejects);
  s.set_kv_requested_tokens(k.requested_tokens);
  s.set_kv_hit_tokens(k.hit_tokens);
  s.set_kv_recomputed_tokens(k.recomputed_tokens);
  s.set_kv_evictions(k.evicted_users);
  s.set_kv_trims(k.trimmed_users);
  s.set_migration_bytes_done(p.migration_bytes_done);
  s.set_migration_bytes_pending(snap.pending_bytes);
  s.set_split(snap.committed_split);
  return s;
}

v1::CacheStats Subtract(const v1::CacheStats& now, const v1::CacheStats& before) {
  v1::CacheStats d = now;
  d.set_emb_lookups(now.emb_lookups() - before.emb_lookups());
  d.set_emb_unique_ids(now.emb_unique_ids() - before.emb_unique_ids());
  d.set_emb_hits(now.emb_hits() - before.emb_hits());
  d.set_emb_misses(now.emb_misses() - before.emb_misses());
  d.set_emb_h2d_bytes(now.emb_h2d_bytes() - before.emb_h2d_bytes());
  d.set_emb_evictions(now.emb_evictions() - before.emb_evictions());
  d.set_emb_admission_rejects(now.emb_admission_rejects() - before.emb_admission_rejects());
  d.set_kv_requested_tokens(now.kv_requested_tokens() - before.kv_requested_tokens());
  d.set_kv_hit_tokens(now.kv_hit_tokens() - before.kv_hit_tokens());
  d.set_kv_recomputed_tokens(now.kv_recomputed_tokens() - before.kv_recomputed_tokens());
  d.set_kv_evictions(now.kv_evictions() - before.kv_evictions());
  d.set_kv_trims(now.kv_trims() - before.kv_trims());
  d.set_migration_bytes_done(now.migration_bytes_done() - before.migration_bytes_done());
  return d;
}

}  // namespace helm::serve
