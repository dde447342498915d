#include "helm/common/ghost_list.h"

#include <utility>

namespace helm {

void GhostList::Add(int64_t key, int64_t weight) {
  if (capacity_ <= 0 || weight <= 0) return;
  const uint64_t seq = next_seq_++;
  auto [it, inserted] = entries_.try_emplace(key, Entry{weight, seq});
  if (!inserted) {
    weight_ -= it->second.weight;
    it->second = Entry{weight, seq};
  }
  weight_ += weight;
  order_.push_back(Slot{key, seq});
  // Keep the newest `capacity` of weight: the oldest entries go, and the one that straddles the
  // boundary keeps its part within it (a cache larger by the capacity would still hold that much
  // of it). Dropping it whole undercounts by up to an entry's weight, which for K/V users of
  // hundreds of tokens is a good part of a small ghost.
  while (weight_ > capacity_ && !order_.empty()) {
    const Slot oldest = order_.front();
    auto old = entries_.find(oldest.key);
    if (old == entries_.end() || old->second.seq != oldest.seq) {
      order_.pop_front();  // stale
      continue;
    }
    const int64_t excess = weight_ - capacity_;
    if (old->second.weight > excess) {
      old->second.weight -= excess;
      weight_ = capacity_;
      break;
    }
    order_.pop_front();
    weight_ -= old->second.weight;
    entries_.erase(old);
  }
  // Taken and re-added keys leave stale slots behind: keep them under half of the queue.
  if (order_.size() > 2 * entries_.size() + 1024) Compact();
}

int64_t GhostList::Take(int64_t key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return 0;
  const int64_t weight = it->second.weight;
  weight_ -= weight;
  entries_.erase(it);
  return weight;
}

void GhostList::Reset(int64_t capacity) {
  capacity_ = capacity;
  weight_ = 0;
  entries_.clear();
  order_.clear();
}

void GhostList::Compact() {
  std::deque<Slot> live;
  for (const Slot& s : order_) {
    auto it = entries_.find(s.key);
    if (it != entries_.end() && it->second.seq == s.seq) live.push_back(s);
  }
  order_ = std::move(live);
}

}  // namespace helm
