#include "helm/common/dtype.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace helm {
namespace {

TEST(Dtype, ParsesEveryNameAndNamesTheBadOne) {
  for (Dtype d : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
    absl::StatusOr<Dtype> parsed = ParseDtype(DtypeName(d));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, d);
  }
  absl::StatusOr<Dtype> bad = ParseDtype("int8");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'int8'"), absl::string_view::npos);
}

TEST(Dtype, ElementBytesAndStableValues) {
  EXPECT_EQ(DtypeBytes(Dtype::kFp32), 4);
  EXPECT_EQ(DtypeBytes(Dtype::kFp16), 2);
  EXPECT_EQ(DtypeBytes(Dtype::kBf16), 2);
  // Device launchers take these values as int32_t codes.
  EXPECT_EQ(static_cast<int32_t>(Dtype::kFp32), 0);
  EXPECT_EQ(static_cast<int32_t>(Dtype::kFp16), 1);
  EXPECT_EQ(static_cast<int32_t>(Dtype::kBf16), 2);
}

TEST(Dtype, HalfConversionsRoundToNearestEven) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(1e6f), 0x7c00);  // overflows to inf
  EXPECT_TRUE(std::isinf(HalfToFloat(FloatToHalf(1e6f))));
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_FLOAT_EQ(HalfToFloat(0x3555), 0.33325195f);
  EXPECT_EQ(HalfToFloat(FloatToHalf(-2.5f)), -2.5f);
  EXPECT_EQ(HalfToFloat(FloatToHalf(1.0f + 1.0f / 2048)), 1.0f);                // tie -> even
  EXPECT_EQ(HalfToFloat(FloatToHalf(1.0f + 3.0f / 2048)), 1.0f + 4.0f / 2048);  // tie -> even
  // Subnormal halves.
  EXPECT_FLOAT_EQ(HalfToFloat(0x0001), 5.9604645e-8f);
  EXPECT_EQ(FloatToHalf(5.9604645e-8f), 0x0001);
  EXPECT_EQ(HalfToFloat(FloatToHalf(5.960464477539063e-08f)), 5.960464477539063e-08f);
}

TEST(Dtype, Bf16ConversionsRoundToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(3.0f)), 3.0f);
  EXPECT_FLOAT_EQ(Bf16ToFloat(FloatToBf16(3.140625f)), 3.140625f);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 1.0f / 256)), 1.0f);  // tie -> even
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Dtype, RoundTripsStayWithinEachTypesPrecision) {
  std::mt19937 rng(static_cast<uint32_t>(::testing::UnitTest::GetInstance()->random_seed()));
  std::uniform_real_distribution<float> value(-100.0f, 100.0f);
  for (int i = 0; i < 10000; ++i) {
    const float v = value(rng);
    SCOPED_TRACE(v);
    ASSERT_NEAR(HalfToFloat(FloatToHalf(v)), v, std::abs(v) * (1.0 / 2048) + 1e-7);
    ASSERT_NEAR(Bf16ToFloat(FloatToBf16(v)), v, std::abs(v) * (1.0 / 256) + 1e-30);
  }
}

TEST(Dtype, LoadAndStoreAgreeWithTheConvertersAtUnalignedOffsets) {
  const std::vector<float> values = {0.1f, -0.07f, 1.5f, 65504.0f, -3.0e-6f};
  for (Dtype d : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
    SCOPED_TRACE(DtypeName(d));
    std::vector<char> buffer(1 + values.size() * DtypeBytes(d));
    void* base = buffer.data() + 1;  // deliberately unaligned
    for (size_t i = 0; i < values.size(); ++i) StoreFromFloat(base, d, i, values[i]);
    for (size_t i = 0; i < values.size(); ++i) {
      const float want = d == Dtype::kFp32   ? values[i]
                         : d == Dtype::kFp16 ? HalfToFloat(FloatToHalf(values[i]))
                                             : Bf16ToFloat(FloatToBf16(values[i]));
      EXPECT_EQ(LoadAsFloat(base, d, static_cast<int64_t>(i)), want);
    }
  }
}

}  // namespace
}  // namespace helm
