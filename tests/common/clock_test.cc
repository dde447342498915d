#include "helm/common/clock.h"

#include "gtest/gtest.h"

namespace helm {
namespace {

TEST(FakeClock, MovesOnlyWhenAdvanced) {
  FakeClock clock(1000);
  EXPECT_EQ(clock.NowMicros(), 1000);
  EXPECT_EQ(clock.NowMicros(), 1000);
  clock.AdvanceMicros(250);
  EXPECT_EQ(clock.NowMicros(), 1250);
  EXPECT_EQ(clock.WallMillis(), 1);
  clock.SetMicros(5'000'000);
  EXPECT_EQ(clock.WallMillis(), 5000);
}

TEST(RealClock, IsMonotonic) {
  Clock* clock = Clock::Real();
  int64_t last = clock->NowMicros();
  for (int i = 0; i < 1000; ++i) {
    const int64_t now = clock->NowMicros();
    ASSERT_GE(now, last);
    last = now;
  }
  EXPECT_GT(clock->WallMillis(), int64_t{1'600'000'000'000});  // after 2020
}

}  // namespace
}  // namespace helm
