// A miniature of the EMB cache's policy (emb_cache.h), without slots, bytes, pins or locks: which
// ids are resident, their frequencies and the admission sketch, under the same rules (TinyLFU
// admission against the least frequent of 8 random resident rows, frequencies handed back to the
// sketch on eviction, every counter halved each sketch_reset_factor x capacity accesses; or
// emb.admission "always"). The predictive split controller runs one per candidate EMB size on a
// hashed sample of the node's ids (id_sampler.h), each sized by the same rate, and reads the miss
// ratio each would have had (a miniature simulation: Waldspurger et al., "Cache Modeling and
// Optimization using Miniature Simulations", USENIX ATC 2017). It sees what a reuse-time model
// cannot: TinyLFU keeps a frequent row through a long gap that LRU would have evicted, and turns
// away one-off ids that LRU would have let push hot rows out.
//
// A lookup reads its hits first and then admits its misses in order, as the cache's read and
// writer phases do; the victims differ (the cache samples slots, the shadow resident ids), so a
// shadow of the cache's size follows its miss ratio, not its every decision
// (tests/emb/emb_shadow_test.cc). The cache's prefetch of rejected ids is left out.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "helm/emb/frequency_sketch.h"
#include "helm/emb/options.h"

namespace helm::emb {

// Thread-compatible.
class EmbShadow {
 public:
  // `options.admission`, `sketch_width_per_row` and `sketch_reset_factor` as the cache's; the
  // capacity in rows, and the sketch sized for `sketch_rows` rows (the cache sizes its own for
  // the largest capacity a resize may reach). REQUIRES: capacity_rows >= 0.
  EmbShadow(const EmbOptions& options, int64_t capacity_rows, int64_t sketch_rows,
            uint64_t seed = 1);

  // One lookup of `ids` (they may repeat): how many of them missed (every occurrence of an id that
  // was not resident when the lookup began). Misses are then admitted as the cache would.
  int64_t Lookup(absl::Span<const int64_t> ids);

  int64_t capacity_rows() const { return capacity_; }
  int64_t resident_rows() const { return static_cast<int64_t>(resident_.size()); }
  bool IsResident(int64_t id) const { return index_.contains(id); }

 private:
  struct Entry {
    uint32_t pos = 0;  // in resident_
    uint8_t freq = 0;
    uint8_t age = 0;  // the aging period freq was last updated in
  };
  using Index = absl::flat_hash_map<int64_t, Entry>;

  uint8_t EffectiveFreq(const Entry& e) const;
  void MaybeAge();
  // The least frequent of a few random resident rows; -1 when none is resident.
  int64_t FindVictim();
  void Evict(Index::iterator it);
  void Admit(int64_t id, uint8_t freq);

  const bool use_admission_;
  const int64_t capacity_;
  const int64_t age_period_;
  FrequencySketch sketch_;
  Index index_;
  std::vector<int64_t> resident_;
  int64_t accesses_since_age_ = 0;
  uint8_t age_epoch_ = 0;
  uint64_t rng_;
  // One lookup's scratch.
  std::vector<int64_t> misses_, admitted_, staged_;
};

}  // namespace helm::emb
