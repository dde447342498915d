// Free-slot bookkeeping of one cache over the pool chunks it owns. Both caches cut their chunks
// into fixed-size items (EMB rows, KV blocks) and use this to allocate them.
//
// A slot id names (chunk, index in chunk) as chunk * stride + index, where stride is the smallest
// power of two >= slots_per_chunk, so that decoding a slot is two shifts and a mask. Items never
// straddle chunks; the tail of a chunk that holds no whole item is unused.
//
// A chunk is added as empty capacity, may start draining (no new allocation from it; the cache
// relocates or drops what it holds) and is removed once nothing in it is allocated, or stops
// draining (the resize was aborted) and is allocatable again with whatever it still holds.
//
// Thread-compatible: the owning cache guards it with its own lock. Pure host bookkeeping.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace helm::pool {

class ChunkSlots {
 public:
  // REQUIRES: 0 < item_bytes <= chunk_bytes; num_chunks * stride < 2^31 (Create-time checks of
  // the caches guarantee both).
  ChunkSlots(int32_t num_chunks, int64_t chunk_bytes, int64_t item_bytes);

  int32_t slots_per_chunk() const { return slots_per_chunk_; }
  int64_t item_bytes() const { return item_bytes_; }
  int32_t Chunk(uint32_t slot) const { return static_cast<int32_t>(slot >> stride_shift_); }
  int32_t IndexInChunk(uint32_t slot) const { return static_cast<int32_t>(slot & stride_mask_); }
  uint32_t Slot(int32_t chunk, int32_t index) const {
    return (static_cast<uint32_t>(chunk) << stride_shift_) | static_cast<uint32_t>(index);
  }
  // Byte offset of a slot in the arena.
  int64_t Offset(uint32_t slot) const {
    return int64_t{Chunk(slot)} * chunk_bytes_ + int64_t{IndexInChunk(slot)} * item_bytes_;
  }
  // Largest slot id + 1 (for per-slot arrays).
  uint32_t slot_id_limit() const { return static_cast<uint32_t>(num_chunks_) << stride_shift_; }

  // Adds an unowned chunk as empty, allocatable capacity. REQUIRES: !Owns(chunk).
  void AddChunk(int32_t chunk);
  // Stops allocation from an owned chunk. REQUIRES: Owns(chunk) && !Draining(chunk).
  void BeginDrain(int32_t chunk);
  // Ends a drain without removing the chunk: its free slots are allocatable again; allocated slots
  // stay allocated. REQUIRES: Owns(chunk) && Draining(chunk).
  void CancelDrain(int32_t chunk);
  // Removes an owned chunk with nothing allocated. REQUIRES: Owns(chunk) && Used(chunk) == 0.
  void RemoveChunk(int32_t chunk);

  bool Owns(int32_t chunk) const { return chunks_[chunk].owned; }
  bool Draining(int32_t chunk) const { return chunks_[chunk].draining; }
  int32_t Used(int32_t chunk) const {
    return slots_per_chunk_ - static_cast<int32_t>(chunks_[chunk].free.size());
  }
  bool IsFree(uint32_t slot) const;

  // A free slot of a non-draining chunk, or -1 when there is none.
  int64_t Allocate();
  // Returns an allocated slot. REQUIRES: it is allocated.
  void Free(uint32_t slot);

  // Free slots in non-draining chunks (what Allocate can still hand out).
  int64_t allocatable() const { return allocatable_; }
  // Slots of owned, non-draining chunks.
  int64_t capacity() const;
  // Owned chunks (draining ones included), in ascending order.
  std::vector<int32_t> OwnedChunks() const;
  int32_t owned_chunks() const { return owned_; }
  int32_t draining_chunks() const { return draining_; }

  // Checks free lists, counters and the available-chunk set against each other (the caches'
  // invariant checks call it).
  absl::Status CheckConsistent() const;

 private:
  struct ChunkState {
    bool owned = false;
    bool draining = false;
    int32_t avail_pos = -1;        // position in avail_, -1 when absent
    std::vector<int32_t> free;     // free indices in this chunk (a stack)
    std::vector<uint8_t> is_free;  // per index
  };
  void AddAvail(int32_t chunk);
  void RemoveAvail(int32_t chunk);

  int32_t num_chunks_;
  int64_t chunk_bytes_;
  int64_t item_bytes_;
  int32_t slots_per_chunk_;
  int32_t stride_shift_;
  uint32_t stride_mask_;
  std::vector<ChunkState> chunks_;
  std::vector<int32_t> avail_;  // owned, non-draining chunks with a free slot
  int64_t allocatable_ = 0;
  int32_t owned_ = 0;
  int32_t draining_ = 0;
};

}  // namespace helm::pool
