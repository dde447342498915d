// EmbCache: live lookups and the epoch pins that keep their rows from being reused.

#include <limits>
#include <utility>
#include <vector>

#include "helm/emb/emb_cache.h"

namespace helm::emb {

uint64_t EmbCache::Register(uint64_t* epoch) {
  absl::MutexLock lock(&live_mu_);
  const uint64_t serial = next_serial_.fetch_add(1, std::memory_order_relaxed);
  LiveLookup l;
  l.epoch = epoch_.load(std::memory_order_relaxed);
  *epoch = l.epoch;
  live_.emplace(serial, std::move(l));
  return serial;
}

void EmbCache::MarkComplete(uint64_t serial, const int64_t* locations, size_t count) {
  absl::MutexLock lock(&live_mu_);
  LiveLookup& l = live_[serial];
  l.locations = locations;
  l.count = count;
}

void EmbCache::Unregister(uint64_t serial) {
  std::vector<uint32_t> pinned;
  {
    absl::MutexLock lock(&live_mu_);
    auto it = live_.find(serial);
    if (it == live_.end()) return;
    pinned = std::move(it->second.pinned);
    live_.erase(it);
  }
  if (pinned.empty()) return;
  // Escalated: its slots stay pinned until here (a pinned slot is never freed, so its chunk is
  // still owned).
  absl::MutexLock lock(&mu_);
  for (uint32_t slot : pinned) --Pins(slot);
}

uint64_t EmbCache::MinLiveSerial() {
  absl::MutexLock lock(&live_mu_);
  // Serials and registration epochs grow together: the first live one has the oldest epoch.
  for (const auto& [serial, l] : live_) {
    if (!l.escalated) return l.epoch;
  }
  return std::numeric_limits<uint64_t>::max();
}

bool EmbCache::EscalateLocked(uint64_t self, uint64_t* min_live) {
  bool any = false;
  {
    absl::MutexLock lock(&live_mu_);
    for (auto& [serial, l] : live_) {
      if (serial == self || l.escalated || l.locations == nullptr) continue;
      for (size_t i = 0; i < l.count; ++i) {
        const int64_t loc = l.locations[i];
        if (loc < 0) continue;
        const uint32_t slot =
            slots_.Slot(static_cast<int32_t>(loc / pool_->chunk_bytes()),
                        static_cast<int32_t>((loc % pool_->chunk_bytes()) / row_bytes_));
        ++Pins(slot);
        l.pinned.push_back(slot);
      }
      l.escalated = true;
      any = true;
    }
  }
  if (any) *min_live = MinLiveSerial();
  return any;
}

}  // namespace helm::emb
