// EmbCache: the simulator's miniature cache (a hashed sample of the ids, emb_cache.h "Sampling").

#include <algorithm>
#include <cstdint>

#include "helm/emb/emb_cache.h"

namespace helm::emb {
absl::Status EmbCache::LookupSampled(absl::Span<const int64_t> ids, EmbLookup* out) {
  out->sample_ids_.clear();
  out->sample_positions_.clear();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (sampler_.Contains(ids[i])) {
      out->sample_ids_.push_back(ids[i]);
      out->sample_positions_.push_back(static_cast<int32_t>(i));
    }
  }
  if (absl::Status s = LookupValid(out->sample_ids_, out); !s.ok()) return s;

  // Locations for every id. The live-lookup record points at the sample's (MarkComplete): keep
  // that buffer as it is until Release.
  out->sample_locations_.swap(out->locations_);
  out->locations_.assign(ids.size(), 0);
  for (size_t k = 0; k < out->sample_positions_.size(); ++k) {
    out->locations_[static_cast<size_t>(out->sample_positions_[k])] = out->sample_locations_[k];
  }

  // The whole batch's misses: the sample's / rate (see emb_cache.h: a deficit or surplus of
  // sampled lookups comes from hot ids, which hit), at most every id; what a batch could not
  // take carries over to the next, so that no estimated miss is lost.
  const int64_t n = static_cast<int64_t>(ids.size());
  {
    absl::MutexLock lock(&estimate_mu_);
    const double estimate = static_cast<double>(out->misses_) / sampler_.rate() + miss_carry_;
    out->misses_ = std::clamp<int64_t>(std::llround(estimate), 0, n);
    miss_carry_ = estimate - static_cast<double>(out->misses_);
  }
  s_all_lookups_.fetch_add(n, std::memory_order_relaxed);
  out->hits_ = n - out->misses_;
  return absl::OkStatus();
}

void EmbCache::ScaleSampledCounts(EmbStats* s) const {
  const double scale = 1.0 / sampler_.rate();
  // Every id looked up is counted; the misses are the sample's / rate, the rest hits.
  s->lookups = s_all_lookups_.load(std::memory_order_relaxed);
  s->misses = std::min<int64_t>(s->lookups, std::llround(static_cast<double>(s->misses) * scale));
  s->hits = s->lookups - s->misses;
  for (int64_t* count :
       {&s->unique_ids, &s->admitted, &s->admission_rejects, &s->staged_rows, &s->evictions,
        &s->relocated_rows, &s->dropped_rows, &s->prefetched_rows, &s->ghost_hits}) {
    *count = std::llround(static_cast<double>(*count) * scale);
  }
}

}  // namespace helm::emb
