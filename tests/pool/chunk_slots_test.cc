#include "helm/pool/chunk_slots.h"

#include <set>

#include "gtest/gtest.h"

namespace helm::pool {
namespace {

TEST(ChunkSlots, AllocatesAdjacentSlotsAndDecodesOffsets) {
  ChunkSlots slots(/*num_chunks=*/4, /*chunk_bytes=*/1024, /*item_bytes=*/100);
  EXPECT_EQ(slots.slots_per_chunk(), 10);
  slots.AddChunk(2);
  EXPECT_EQ(slots.capacity(), 10);
  const int64_t a = slots.Allocate();
  const int64_t b = slots.Allocate();
  ASSERT_GE(a, 0);
  EXPECT_EQ(slots.Chunk(static_cast<uint32_t>(a)), 2);
  EXPECT_EQ(slots.IndexInChunk(static_cast<uint32_t>(a)), 0);
  EXPECT_EQ(slots.IndexInChunk(static_cast<uint32_t>(b)), 1);
  EXPECT_EQ(slots.Offset(static_cast<uint32_t>(b)), 2 * 1024 + 100);
  EXPECT_EQ(slots.allocatable(), 8);
  EXPECT_TRUE(slots.CheckConsistent().ok());
}

TEST(ChunkSlots, DrainingChunkIsNeverAllocatedAndIsRemovedOnceEmpty) {
  ChunkSlots slots(3, 1024, 256);  // 4 slots per chunk
  slots.AddChunk(0);
  slots.AddChunk(1);
  std::vector<uint32_t> taken;
  for (int i = 0; i < 8; ++i) taken.push_back(static_cast<uint32_t>(slots.Allocate()));
  EXPECT_EQ(slots.Allocate(), -1);
  slots.BeginDrain(0);
  for (uint32_t s : taken) slots.Free(s);
  EXPECT_EQ(slots.allocatable(), 4);  // only chunk 1's slots
  std::set<int32_t> chunks;
  for (int i = 0; i < 4; ++i) chunks.insert(slots.Chunk(static_cast<uint32_t>(slots.Allocate())));
  EXPECT_EQ(chunks, std::set<int32_t>{1});
  EXPECT_EQ(slots.Allocate(), -1);
  EXPECT_EQ(slots.Used(0), 0);
  slots.RemoveChunk(0);
  EXPECT_FALSE(slots.Owns(0));
  EXPECT_EQ(slots.owned_chunks(), 1);
  EXPECT_TRUE(slots.CheckConsistent().ok());
}

TEST(ChunkSlots, CancelledDrainKeepsAllocationsAndAllocatesAgain) {
  ChunkSlots slots(2, 1024, 256);  // 4 slots per chunk
  slots.AddChunk(0);
  const uint32_t a = static_cast<uint32_t>(slots.Allocate());
  const uint32_t b = static_cast<uint32_t>(slots.Allocate());
  slots.BeginDrain(0);
  slots.Free(a);  // what a drain relocated or dropped
  EXPECT_EQ(slots.allocatable(), 0);
  EXPECT_EQ(slots.capacity(), 0);
  slots.CancelDrain(0);
  EXPECT_FALSE(slots.Draining(0));
  EXPECT_FALSE(slots.IsFree(b));  // still allocated
  EXPECT_EQ(slots.Used(0), 1);
  EXPECT_EQ(slots.allocatable(), 3);
  EXPECT_EQ(slots.capacity(), 4);
  EXPECT_TRUE(slots.CheckConsistent().ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(slots.Chunk(static_cast<uint32_t>(slots.Allocate())), 0);
  EXPECT_EQ(slots.Allocate(), -1);
  EXPECT_TRUE(slots.CheckConsistent().ok());
}

}  // namespace
}  // namespace helm::pool
