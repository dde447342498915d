#include "helm/pool/chunk_slots.h"

#include <bit>
#include <cassert>

#include "absl/strings/str_cat.h"

namespace helm::pool {

ChunkSlots::ChunkSlots(int32_t num_chunks, int64_t chunk_bytes, int64_t item_bytes)
    : num_chunks_(num_chunks),
      chunk_bytes_(chunk_bytes),
      item_bytes_(item_bytes),
      slots_per_chunk_(static_cast<int32_t>(chunk_bytes / item_bytes)),
      chunks_(static_cast<size_t>(num_chunks)) {
  assert(item_bytes > 0 && item_bytes <= chunk_bytes);
  stride_shift_ = std::bit_width(static_cast<uint32_t>(slots_per_chunk_ - 1));
  if (slots_per_chunk_ == 1) stride_shift_ = 0;
  stride_mask_ = (uint32_t{1} << stride_shift_) - 1;
}

void ChunkSlots::AddChunk(int32_t chunk) {
  ChunkState& c = chunks_[chunk];
  assert(!c.owned);
  c.owned = true;
  c.draining = false;
  c.free.resize(static_cast<size_t>(slots_per_chunk_));
  // A stack popped from the back: lay indices out descending so allocation runs 0, 1, 2, ...
  // (adjacent slots make adjacent copies that the backends coalesce).
  for (int32_t i = 0; i < slots_per_chunk_; ++i) c.free[i] = slots_per_chunk_ - 1 - i;
  c.is_free.assign(static_cast<size_t>(slots_per_chunk_), 1);
  ++owned_;
  allocatable_ += slots_per_chunk_;
  AddAvail(chunk);
}

void ChunkSlots::BeginDrain(int32_t chunk) {
  ChunkState& c = chunks_[chunk];
  assert(c.owned && !c.draining);
  c.draining = true;
  ++draining_;
  allocatable_ -= static_cast<int64_t>(c.free.size());
  RemoveAvail(chunk);
}

void ChunkSlots::CancelDrain(int32_t chunk) {
  ChunkState& c = chunks_[chunk];
  assert(c.owned && c.draining);
  c.draining = false;
  --draining_;
  allocatable_ += static_cast<int64_t>(c.free.size());
  if (!c.free.empty()) AddAvail(chunk);
}

void ChunkSlots::RemoveChunk(int32_t chunk) {
  ChunkState& c = chunks_[chunk];
  assert(c.owned && Used(chunk) == 0);
  if (c.draining) {
    --draining_;
  } else {
    allocatable_ -= static_cast<int64_t>(c.free.size());
    RemoveAvail(chunk);
  }
  c.owned = false;
  c.draining = false;
  c.free.clear();
  c.free.shrink_to_fit();
  c.is_free.clear();
  c.is_free.shrink_to_fit();
  --owned_;
}

bool ChunkSlots::IsFree(uint32_t slot) const {
  const ChunkState& c = chunks_[Chunk(slot)];
  return !c.owned || c.is_free[IndexInChunk(slot)] != 0;
}

int64_t ChunkSlots::Allocate() {
  if (avail_.empty()) return -1;
  const int32_t chunk = avail_.back();
  ChunkState& c = chunks_[chunk];
  const int32_t index = c.free.back();
  c.free.pop_back();
  c.is_free[index] = 0;
  --allocatable_;
  if (c.free.empty()) RemoveAvail(chunk);
  return Slot(chunk, index);
}

void ChunkSlots::Free(uint32_t slot) {
  const int32_t chunk = Chunk(slot);
  const int32_t index = IndexInChunk(slot);
  ChunkState& c = chunks_[chunk];
  assert(c.owned && c.is_free[index] == 0);
  c.is_free[index] = 1;
  c.free.push_back(index);
  if (!c.draining) {
    ++allocatable_;
    if (c.avail_pos < 0) AddAvail(chunk);
  }
}

int64_t ChunkSlots::capacity() const { return int64_t{owned_ - draining_} * slots_per_chunk_; }

std::vector<int32_t> ChunkSlots::OwnedChunks() const {
  std::vector<int32_t> out;
  for (int32_t i = 0; i < num_chunks_; ++i) {
    if (chunks_[i].owned) out.push_back(i);
  }
  return out;
}

void ChunkSlots::AddAvail(int32_t chunk) {
  chunks_[chunk].avail_pos = static_cast<int32_t>(avail_.size());
  avail_.push_back(chunk);
}

void ChunkSlots::RemoveAvail(int32_t chunk) {
  const int32_t pos = chunks_[chunk].avail_pos;
  if (pos < 0) return;
  const int32_t last = avail_.back();
  avail_[pos] = last;
  chunks_[last].avail_pos = pos;
  avail_.pop_back();
  chunks_[chunk].avail_pos = -1;
}

absl::Status ChunkSlots::CheckConsistent() const {
  int64_t allocatable = 0;
  int32_t owned = 0, draining = 0;
  for (int32_t i = 0; i < num_chunks_; ++i) {
    const ChunkState& c = chunks_[i];
    if (!c.owned) {
      if (!c.free.empty() || c.avail_pos >= 0 || c.draining) {
        return absl::InternalError(absl::StrCat("chunk ", i, ": unowned but holds slot state"));
      }
      continue;
    }
    ++owned;
    if (c.draining) ++draining;
    int64_t marked = 0;
    for (uint8_t f : c.is_free) marked += f;
    if (marked != static_cast<int64_t>(c.free.size())) {
      return absl::InternalError(absl::StrCat("chunk ", i, ": free list holds ", c.free.size(),
                                              " slots but ", marked, " are marked free"));
    }
    for (int32_t index : c.free) {
      if (index < 0 || index >= slots_per_chunk_ || c.is_free[index] == 0) {
        return absl::InternalError(absl::StrCat("chunk ", i, ": bad free index ", index));
      }
    }
    const bool should_be_avail = !c.draining && !c.free.empty();
    if (should_be_avail != (c.avail_pos >= 0)) {
      return absl::InternalError(absl::StrCat("chunk ", i, ": available-set membership wrong"));
    }
    if (!c.draining) allocatable += static_cast<int64_t>(c.free.size());
  }
  if (owned != owned_ || draining != draining_ || allocatable != allocatable_) {
    return absl::InternalError(absl::StrCat("counters: owned ", owned_, "/", owned, " draining ",
                                            draining_, "/", draining, " allocatable ", allocatable_,
                                            "/", allocatable));
  }
  return absl::OkStatus();
}

}  // namespace helm::pool
