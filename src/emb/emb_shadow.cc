#include "helm/emb/emb_shadow.h"

#include <algorithm>

#include "emb_cache_internal.h"
#include "helm/common/hash.h"

namespace helm::emb {

using internal::AgePeriod;
using internal::Bumped;
using internal::Decay;
using internal::kVictimSamples;
using internal::ReturnFrequency;

EmbShadow::EmbShadow(const EmbOptions& options, int64_t capacity_rows, int64_t sketch_rows,
                     uint64_t seed)
    : use_admission_(options.admission == "tinylfu"),
      capacity_(capacity_rows),
      age_period_(AgePeriod(options.sketch_reset_factor, capacity_rows)),
      sketch_(int64_t{options.sketch_width_per_row} * std::max<int64_t>(sketch_rows, 1)),
      rng_(SplitMix64(seed) | 1) {
  index_.reserve(static_cast<size_t>(capacity_rows));
  resident_.reserve(static_cast<size_t>(capacity_rows));
}

uint8_t EmbShadow::EffectiveFreq(const Entry& e) const {
  return Decay(e.freq, static_cast<uint8_t>(age_epoch_ - e.age));
}

void EmbShadow::MaybeAge() {
  // As the cache: one halving per writer section at most, the period's excess carried over.
  if (accesses_since_age_ < age_period_) return;
  accesses_since_age_ -= age_period_;
  sketch_.StartHalving();
  sketch_.HalveSlice(sketch_.size());
  ++age_epoch_;
}

int64_t EmbShadow::FindVictim() {
  if (resident_.empty()) return -1;
  int64_t best = -1;
  int best_freq = 256;
  for (int i = 0; i < kVictimSamples; ++i) {
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    const int64_t id = resident_[rng_ % resident_.size()];
    const int freq = EffectiveFreq(index_.find(id)->second);
    if (freq < best_freq) {
      best = id;
      best_freq = freq;
    }
  }
  return best;
}

void EmbShadow::Evict(Index::iterator it) {
  const int64_t id = it->first;
  ReturnFrequency(sketch_, id, EffectiveFreq(it->second));
  const uint32_t pos = it->second.pos;
  resident_[pos] = resident_.back();
  index_.find(resident_[pos])->second.pos = pos;
  resident_.pop_back();
  index_.erase(it);
}

void EmbShadow::Admit(int64_t id, uint8_t freq) {
  index_.emplace(
      id, Entry{.pos = static_cast<uint32_t>(resident_.size()), .freq = freq, .age = age_epoch_});
  resident_.push_back(id);
  admitted_.push_back(id);
}

int64_t EmbShadow::Lookup(absl::Span<const int64_t> ids) {
  // The read phase: hits count and raise their rows' frequencies.
  misses_.clear();
  for (int64_t id : ids) {
    auto it = index_.find(id);
    if (it == index_.end()) {
      misses_.push_back(id);
      continue;
    }
    Entry& e = it->second;
    e.freq = Bumped(EffectiveFreq(e));
    e.age = age_epoch_;
  }
  accesses_since_age_ += static_cast<int64_t>(ids.size());
  if (misses_.empty()) return 0;
  // The writer phase: every miss is counted by the sketch and admitted into a free row, or in
  // place of the victim when it is more frequent; a rejected victim stays the one to beat for
  // the lookup's later misses. An id's later occurrences follow its first (a lookup's few misses:
  // linear searches).
  MaybeAge();
  admitted_.clear();
  staged_.clear();
  int64_t victim_hint = -1;
  const auto seen = [](const std::vector<int64_t>& v, int64_t id) {
    return std::find(v.begin(), v.end(), id) != v.end();
  };
  for (int64_t id : misses_) {
    if (seen(admitted_, id)) continue;
    sketch_.Increment(id, 1);
    if (seen(staged_, id)) continue;
    const uint8_t est = sketch_.Estimate(id);
    if (resident_rows() < capacity_) {
      Admit(id, est);
      continue;
    }
    const int64_t victim = victim_hint >= 0 ? victim_hint : FindVictim();
    if (victim < 0) {
      staged_.push_back(id);
      continue;
    }
    auto it = index_.find(victim);
    if (use_admission_ && est <= EffectiveFreq(it->second)) {
      victim_hint = victim;
      staged_.push_back(id);
      continue;
    }
    victim_hint = -1;
    Evict(it);
    Admit(id, est);
  }
  return static_cast<int64_t>(misses_.size());
}

}  // namespace helm::emb
