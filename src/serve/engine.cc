#include "helm/serve/engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "helm/common/status.h"
#include "helm/model/kv_geometry.h"

namespace helm::serve {

Worker::~Worker() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const config::Config& config, Clock* clock) {
  std::unique_ptr<Engine> engine(new Engine());
  engine->config_ = config;
  HELM_ASSIGN_OR_RETURN(engine->pool_, pool::Pool::Create(config.pool, clock));
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
  // The model options are checked on payload-free storage too (the simulator reads its dims).
  HELM_RETURN_IF_ERROR(model::DimsFromOptions(config.model, config.emb, config.kv).status());
  // Payload-free storage computes nothing: no weights, no kernels.
  if (engine->pool_->storage()->has_payload()) {
    HELM_ASSIGN_OR_RETURN(engine->model_,
                          model::Model::Create(model_options, config.emb, config.kv));
  }
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
  if (model_ != nullptr) {
    HELM_ASSIGN_OR_RETURN(worker->workspace_, model_->NewWorkspace());
    HELM_RETURN_IF_ERROR(Warmup(*worker));
  }
  return worker;
}

absl::Status Engine::Warmup(Worker& w) const {
  const int64_t history = std::min(config_.node.warmup_history, config_.node.max_history);
  const int64_t candidates = std::min(config_.node.warmup_candidates, config_.node.max_candidates);
  if (history <= 0 || candidates <= 0) return absl::OkStatus();
  // Every token reads the arena's first row: any bytes will do, none are written.
  const std::vector<int32_t> actions(history, 0);
  std::vector<int64_t> timestamps(history);
  for (int64_t i = 0; i < history; ++i) timestamps[i] = i;
  const std::vector<int64_t> locations(history + candidates, 0);
  model::ForwardRequest f;
  f.actions = actions;
  f.timestamps = timestamps;
  void* const arena = pool_->storage()->base();
  f.suffix = model::EmbeddingInput{nullptr, arena, nullptr, locations.data()};
  f.candidates = model::EmbeddingInput{nullptr, arena, nullptr, locations.data() + history};
  f.num_candidates = candidates;
  const std::vector<model::ForwardRequest> batch = {f};
  absl::StatusOr<std::vector<model::ForwardResult>> result =
      model_->ForwardBatch(*w.workspace_, batch);
  if (!result.ok()) {
    return absl::Status(result.status().code(),
                        absl::StrCat("warm-up forward: ", result.status().message()));
  }
  return absl::OkStatus();
}

std::string Engine::backend_description() const {
  if (model_ == nullptr) return absl::StrCat(pool_->storage()->name(), ", no kernels");
  return absl::StrCat(pool_->storage()->name(), ", ", model_->kernels().name(), " kernels");
}

absl::Status Engine::Prepare(const RankInput& in, Prepared* p) const {
  Abandon(p);
  p->input_ = &in;
  const int64_t history = in.history_length();
  const kv::History columns{in.history_item_ids, in.history_actions, in.history_timestamps_ms};

  // (1) The reusable cached prefix, pinned until the lease goes.
  HELM_ASSIGN_OR_RETURN(p->lease_, kv_->Acquire(in.user_id, columns));
  const int64_t cached = p->lease_.cached_tokens();
  const int64_t suffix = history - cached;
  // Payload-free storage (the simulator) has no bytes: nothing to point at, nothing computed.
  const bool payload = pool_->storage()->has_payload();
  uint8_t* const arena = static_cast<uint8_t*>(pool_->storage()->base());
  p->cached_blocks_.clear();
  if (payload) {
    for (int64_t offset : p->lease_.cached_block_offsets()) {
      p->cached_blocks_.push_back(arena + offset);
    }
  }

  // (2) Embeddings of the suffix tokens, then of the candidates, in one batch lookup.
  p->ids_.assign(in.history_item_ids.begin() + cached, in.history_item_ids.end());
  p->ids_.insert(p->ids_.end(), in.candidate_item_ids.begin(), in.candidate_item_ids.end());
  if (absl::Status looked_up = emb_->Lookup(p->ids_, &p->emb_lookup_); !looked_up.ok()) {
    Abandon(p);
    return looked_up;
  }
  p->emb_hits_ = p->emb_lookup_.hits();
  p->emb_misses_ = p->emb_lookup_.misses();
  const int64_t* locations = p->emb_lookup_.locations().data();

  // What the forward computes. The model's time bias works in seconds.
  p->timestamps_s_.resize(history);
  for (int64_t i = 0; i < history; ++i) p->timestamps_s_[i] = in.history_timestamps_ms[i] / 1000;
  model::ForwardRequest& f = p->forward_;
  f = model::ForwardRequest();
  f.actions = in.history_actions;
  f.timestamps = p->timestamps_s_;
  f.cached_tokens = cached;
  f.cached_blocks = p->cached_blocks_;
  void* const staging = p->emb_lookup_.staging_data();
  f.suffix = model::EmbeddingInput{nullptr, arena, staging, locations};
  f.candidates = model::EmbeddingInput{nullptr, arena, staging, locations + suffix};
  f.num_candidates = static_cast<int64_t>(in.candidate_item_ids.size());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<model::ForwardResult>> Engine::Compute(
    Worker& w, absl::Span<Prepared* const> batch) const {
  absl::StatusOr<std::vector<model::ForwardResult>> results;
  if (pool_->storage()->has_payload()) {
    w.forwards_.clear();
    for (const Prepared* p : batch) w.forwards_.push_back(p->forward_);
    results = model_->ForwardBatch(*w.workspace_, w.forwards_);
  } else {
    // Payload-free storage: the caches did their work; a cost model stands in for the forward.
    results.emplace();
    for (const Prepared* p : batch) {
      model::ForwardResult r;
      r.cached_tokens = p->cached_tokens();
      r.suffix_tokens = p->suffix_tokens();
      r.scores.assign(p->num_candidates(), 0.0f);
      results->push_back(std::move(r));
    }
  }
  // The embedding rows are consumed: unpin them for eviction and resizes.
  for (Prepared* p : batch) p->emb_lookup_.Release();
  return results;
}

void Engine::Finish(Worker& w, int64_t index, Prepared* p, const model::ForwardResult& result,
                    RankOutput* out) const {
  const RankInput& in = *p->input_;
  const int64_t history = in.history_length();
  const int64_t cached = p->lease_.cached_tokens();
  const int64_t suffix = history - cached;
  out->cached_tokens = static_cast<int32_t>(cached);
  out->computed_tokens = static_cast<int32_t>(suffix);
  out->emb_hits = static_cast<int32_t>(p->emb_hits_);
  out->emb_misses = static_cast<int32_t>(p->emb_misses_);
  out->kv_appended = false;

  // (4) Keep the suffix's K/V for the user's next request, when the cache can take it.
  if (suffix > 0) {
    absl::StatusOr<kv::KvReservation> reservation = p->lease_.Reserve(suffix);
    if (reservation.ok() && !pool_->storage()->has_payload()) {
      out->kv_appended = p->lease_.Commit().ok();  // no bytes to write
    } else if (reservation.ok()) {
      uint8_t* const arena = static_cast<uint8_t*>(pool_->storage()->base());
      const int64_t first_block = reservation->first_token / kv_->tokens_per_block();
      w.write_blocks_.assign(first_block + reservation->block_offsets.size(), nullptr);
      for (size_t b = 0; b < reservation->block_offsets.size(); ++b) {
        w.write_blocks_[first_block + b] = arena + reservation->block_offsets[b];
      }
      const absl::Status appended =
          model_->AppendKv(*w.workspace_, index, w.write_blocks_, reservation->first_token, suffix);
      if (appended.ok()) out->kv_appended = p->lease_.Commit().ok();
    }
  }
  out->resident_tokens = out->kv_appended ? static_cast<int32_t>(history) : out->cached_tokens;
  Abandon(p);

  // (5) The answer: every candidate in request order (top_k 0) or the k best, best first.
  out->items.clear();
  const std::vector<float>& scores = result.scores;
  if (in.top_k == 0) {
    for (size_t c = 0; c < scores.size(); ++c) {
      out->items.push_back({in.candidate_item_ids[c], scores[c]});
    }
  } else {
    for (int32_t c : model::TopK(scores, in.top_k)) {
      out->items.push_back({in.candidate_item_ids[c], scores[c]});
    }
  }
}

void Engine::Abandon(Prepared* p) const {
  p->emb_lookup_.Release();
  p->lease_.Release();
}

absl::Status Engine::Rank(Worker& worker, const RankInput& input, RankOutput* out) const {
  Prepared p;
  HELM_RETURN_IF_ERROR(Prepare(input, &p));
  Prepared* const batch[] = {&p};
  absl::StatusOr<std::vector<model::ForwardResult>> results = Compute(worker, batch);
  if (!results.ok()) {
    Abandon(&p);
    return results.status();
  }
  Finish(worker, 0, &p, (*results)[0], out);
  return absl::OkStatus();
}

}  // namespace helm::serve
