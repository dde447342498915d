#include "helm/serve/reuse_tracker.h"

#include <algorithm>
#include <utility>

namespace helm::serve {

// ---- ReuseTracker ------------------------------------------------------------------------------

ReuseTracker::ReuseTracker(double emb_sample_rate, uint64_t salt, size_t max_keys)
    : salt_(salt), sampler_(emb_sample_rate, salt), max_keys_(max_keys) {}

void ReuseTracker::ShadowKv(const kv::KvOptions& options, double attention_ratio,
                            absl::Span<const int64_t> capacity_blocks) {
  kv_shadows_.clear();
  for (int64_t blocks :
       capacity_blocks.first(std::min<size_t>(capacity_blocks.size(), kMaxKvShadows))) {
    kv_shadows_.emplace_back(options, attention_ratio, blocks);
  }
}

void ReuseTracker::ShadowEmb(const emb::EmbOptions& options, double rate,
                             absl::Span<const int64_t> capacity_rows, int64_t sketch_rows) {
  emb_shadows_.clear();
  emb_shadow_sampler_ = emb::IdSampler(rate, salt_ ^ 0x656d6273686477ull);
  for (size_t i = 0; i < std::min<size_t>(capacity_rows.size(), kMaxEmbShadows); ++i) {
    emb_shadows_.emplace_back(options, capacity_rows[i], sketch_rows, /*seed=*/i + 1);
  }
}

RequestReuse ReuseTracker::Observe(int64_t user_id, int64_t history_tokens, uint64_t history_start,
                                   absl::Span<const int64_t> ids, int64_t batch) {
  const bool log = !kv_shadows_.empty() || !emb_shadows_.empty();
  if (!emb_shadows_.empty()) {  // the miniature EMB caches stand for the reuse times
    for (int64_t id : ids) {
      if (emb_shadow_sampler_.Contains(id)) emb_log_.push_back(id);
    }
    emb_log_lookups_ += static_cast<int64_t>(ids.size());
  } else {
    const double id_weight = 1.0 / sampler_.rate();
    for (int64_t id : ids) {
      ++id_clock_;
      if (!sampler_.Contains(id)) continue;
      auto [it, inserted] = id_seen_.try_emplace(id, id_clock_);
      if (inserted) {
        emb_.AddCold(id_weight);
      } else {
        emb_.Add(id_clock_ - it->second, id_weight);
        it->second = id_clock_;
      }
    }
  }
  if (id_seen_.size() > max_keys_) id_seen_.clear();

  RequestReuse r;
  auto [it, inserted] = user_seen_.try_emplace(user_id);
  // A history that starts elsewhere (the client dropped its oldest events) reuses nothing.
  if (!inserted && it->second.start != history_start) it->second.tokens = 0;
  if (!inserted) {
    r.kv_reuse_tokens = token_clock_ - it->second.at;
    r.kv_prefix_tokens = std::min(it->second.tokens, history_tokens);
    kv_.Add(r.kv_reuse_tokens, static_cast<double>(r.kv_prefix_tokens));
  }
  kv_.AddCold(static_cast<double>(history_tokens - r.kv_prefix_tokens));
  token_clock_ += history_tokens;
  // The cache keeps the longest history a user sent (a shorter request does not shrink it).
  it->second = UserSeen{.at = token_clock_,
                        .tokens = std::max(it->second.tokens, history_tokens),
                        .start = history_start};
  if (user_seen_.size() > max_keys_) user_seen_.clear();
  r.batch = batch;
  if (log) {
    r.seq = next_seq_++;
    log_.push_back(Logged{.user_id = user_id,
                          .history_tokens = history_tokens,
                          .batch = batch,
                          .history_start = history_start,
                          .emb_end = emb_log_.size()});
  }
  return r;
}

void ReuseTracker::Replay() {
  Replayed next;
  next.first = next_seq_ - static_cast<int64_t>(log_.size());
  next.reused.resize(log_.size());
  std::vector<int64_t> emb_misses(emb_shadows_.size());
  size_t emb_begin = 0;
  for (size_t j = 0; j < log_.size(); ++j) {
    const Logged& l = log_[j];
    const absl::Span<const int64_t> sampled(emb_log_.data() + emb_begin, l.emb_end - emb_begin);
    emb_begin = l.emb_end;
    for (size_t i = 0; i < emb_shadows_.size(); ++i) {
      emb_misses[i] += emb_shadows_[i].Lookup(sampled);
    }
    BatchShadowSums* sums = l.batch >= 0 ? &next.batches[l.batch] : nullptr;
    for (size_t i = 0; i < kv_shadows_.size(); ++i) {
      const int64_t p = kv_shadows_[i].Request(l.user_id, l.history_tokens, l.history_start);
      next.reused[j][i] = static_cast<int32_t>(p);
      if (sums == nullptr) continue;
      sums->tokens[i] += static_cast<float>(p);
      sums->pairs[i] += static_cast<float>(p) * static_cast<float>(p - 1) / 2;
    }
  }
  emb_miss_ratios_.clear();
  if (emb_log_lookups_ > 0) {
    for (int64_t misses : emb_misses) {
      emb_miss_ratios_.push_back(static_cast<double>(misses) / emb_shadow_sampler_.rate() /
                                 static_cast<double>(emb_log_lookups_));
    }
  }
  log_.clear();
  emb_log_.clear();
  emb_log_lookups_ = 0;
  replayed_[0] = std::move(replayed_[1]);
  replayed_[1] = std::move(next);
}

bool ReuseTracker::FillShadowReuse(RequestReuse* r, BatchShadowSums* sums) const {
  for (const Replayed& replayed : replayed_) {
    const int64_t j = r->seq - replayed.first;
    if (r->seq < 0 || j < 0 || j >= static_cast<int64_t>(replayed.reused.size())) continue;
    r->kv_shadow_prefix = replayed.reused[static_cast<size_t>(j)];
    auto batch = replayed.batches.find(r->batch);
    *sums = batch != replayed.batches.end() ? batch->second : BatchShadowSums();
    return true;
  }
  return false;
}

void ReuseTracker::Take(ReuseHistogram* emb, ReuseHistogram* kv) {
  *emb = std::exchange(emb_, ReuseHistogram());
  *kv = std::exchange(kv_, ReuseHistogram());
}

}  // namespace helm::serve
