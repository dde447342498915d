// A ghost list (as in ARC's B lists and Cliffhanger's shadow queues): the keys a cache evicted
// most recently, without their data, up to a total weight. A miss whose key is still in the list
// would have hit in a cache larger by that weight, so the hits a cache counts here over a window
// estimate what growing it would save: the slope of its hit-rate curve where it stands, which is
// what moving memory from one cache to another trades (DESIGN.md §4).
//
// Each key carries a weight (1 for an embedding row; the tokens it lost for a KV user). Add puts a
// key at the young end (re-adding a key replaces its entry); the list keeps the newest `capacity`
// of weight: entries wholly older go, and the one that straddles the boundary keeps the part of
// its weight within it (a cache larger by the capacity holds that much of it; dropping it whole
// made a KV ghost of a few users' worth count 0.29-0.73 of what the larger cache gained under LRU,
// keeping the part 0.92-1.10: helm_bench_memory). Take removes a key and returns its weight (0 if
// absent). Memory: about 40 bytes per entry.
//
// Thread-compatible: the cache that owns it calls it under its own lock.
#pragma once

#include <cstdint>
#include <deque>

#include "absl/container/flat_hash_map.h"

namespace helm {

class GhostList {
 public:
  // `capacity` in weight units; 0 keeps nothing.
  explicit GhostList(int64_t capacity = 0) : capacity_(capacity) {}

  void Add(int64_t key, int64_t weight);
  int64_t Take(int64_t key);
  // Drops every entry and sets a new capacity.
  void Reset(int64_t capacity);

  int64_t capacity() const { return capacity_; }
  int64_t weight() const { return weight_; }
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }

 private:
  struct Entry {
    int64_t weight = 0;
    uint64_t seq = 0;  // which element of order_ is this entry's (older ones are stale)
  };
  struct Slot {
    int64_t key = 0;
    uint64_t seq = 0;
  };
  void Compact();

  int64_t capacity_ = 0;
  int64_t weight_ = 0;
  uint64_t next_seq_ = 0;
  absl::flat_hash_map<int64_t, Entry> entries_;
  std::deque<Slot> order_;  // oldest first; slots whose seq no longer matches are stale
};

}  // namespace helm
