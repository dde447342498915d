#include "helm/common/ghost_list.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace helm {
namespace {

TEST(GhostList, KeepsTheMostRecentKeysUpToItsWeight) {
  GhostList ghost(3);
  for (int64_t key = 1; key <= 5; ++key) ghost.Add(key, 1);
  EXPECT_EQ(ghost.weight(), 3);
  EXPECT_EQ(ghost.Take(1), 0);  // the oldest went
  EXPECT_EQ(ghost.Take(2), 0);
  EXPECT_EQ(ghost.Take(4), 1);
  EXPECT_EQ(ghost.Take(4), 0);  // taken once
  EXPECT_EQ(ghost.weight(), 2);
}

TEST(GhostList, WeightsCountAndReAddingRenewsAKey) {
  GhostList ghost(100);
  ghost.Add(7, 60);
  ghost.Add(8, 30);
  ghost.Add(7, 20);  // replaces 7's entry and makes it the youngest
  EXPECT_EQ(ghost.weight(), 50);
  ghost.Add(9, 60);  // 110 > 100: the oldest entry (8) keeps the 20 of it within the newest 100
  EXPECT_EQ(ghost.weight(), 100);
  EXPECT_EQ(ghost.Take(8), 20);
  EXPECT_EQ(ghost.Take(7), 20);
  EXPECT_EQ(ghost.Take(9), 60);
  EXPECT_EQ(ghost.weight(), 0);
  // An entry heavier than the whole list keeps the list's weight of it.
  ghost.Add(10, 130);
  EXPECT_EQ(ghost.Take(10), 100);
  // Entries wholly past the newest 100 go; the straddling one keeps its newer part.
  ghost.Add(1, 50);
  ghost.Add(2, 50);
  ghost.Add(3, 70);  // 1 is wholly older than the newest 100, 2 straddles by 30
  EXPECT_EQ(ghost.weight(), 100);
  EXPECT_EQ(ghost.Take(1), 0);
  EXPECT_EQ(ghost.Take(2), 30);
  EXPECT_EQ(ghost.Take(3), 70);
}

TEST(GhostList, StaleSlotsStayBoundedAndZeroCapacityKeepsNothing) {
  GhostList ghost(10);
  for (int round = 0; round < 10000; ++round) {
    ghost.Add(round % 4, 1);
    if (round % 3 == 0) ghost.Take(round % 4);
  }
  EXPECT_LE(ghost.size(), 4);
  EXPECT_LE(ghost.weight(), 10);
  GhostList none(0);
  none.Add(1, 1);
  EXPECT_EQ(none.Take(1), 0);
  ghost.Reset(0);
  EXPECT_EQ(ghost.weight(), 0);
  EXPECT_EQ(ghost.size(), 0);
}

}  // namespace
}  // namespace helm
