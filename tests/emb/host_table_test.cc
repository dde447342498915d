#include "helm/emb/host_table.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace helm::emb {
namespace {

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          (name + "_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + ".npy"))
      .string();
}

TEST(HostTable, RandomRowsArePureFunctionsOfTheSeed) {
  auto a = HostTable::CreateRandom(100, 8, Dtype::kFp32, 42);
  auto b = HostTable::CreateRandom(100, 8, Dtype::kFp32, 42);
  auto c = HostTable::CreateRandom(100, 8, Dtype::kFp32, 43);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(std::memcmp((*a)->data(), (*b)->data(), 100 * 8 * 4), 0);
  EXPECT_NE(std::memcmp((*a)->data(), (*c)->data(), 100 * 8 * 4), 0);
  for (int64_t i = 0; i < 100 * 8; ++i) {
    const float v = LoadAsFloat((*a)->data(), Dtype::kFp32, i);
    ASSERT_GE(v, -0.1f);
    ASSERT_LT(v, 0.1f);
  }
  EXPECT_EQ((*a)->row_bytes(), 32);
  EXPECT_EQ((*a)->source(), "random(seed=42)");
}

TEST(HostTable, NpyFilesRoundTripInEveryDtype) {
  for (Dtype dtype : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
    auto src = HostTable::CreateRandom(37, 5, dtype, 7);
    ASSERT_TRUE(src.ok());
    const std::string path = TempPath(std::string("helm_table_") + DtypeName(dtype));
    ASSERT_TRUE(WriteNpy(path, dtype, 37, 5, (*src)->data()).ok());
    auto mapped = HostTable::OpenNpy(path, 37, 5, dtype);
    ASSERT_TRUE(mapped.ok()) << mapped.status();
    EXPECT_EQ(std::memcmp((*mapped)->data(), (*src)->data(), 37 * (*src)->row_bytes()), 0);
    EXPECT_EQ((*mapped)->source(), path);
    std::filesystem::remove(path);
  }
}

TEST(HostTable, NpyMismatchesAreInvalidArgumentNamingThePath) {
  auto src = HostTable::CreateRandom(10, 4, Dtype::kFp32, 1);
  ASSERT_TRUE(src.ok());
  const std::string path = TempPath("helm_table_mismatch");
  ASSERT_TRUE(WriteNpy(path, Dtype::kFp32, 10, 4, (*src)->data()).ok());
  auto shape = HostTable::OpenNpy(path, 11, 4, Dtype::kFp32);
  EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(shape.status().message().find(path), absl::string_view::npos);
  EXPECT_NE(shape.status().message().find("shape"), absl::string_view::npos);
  auto dtype = HostTable::OpenNpy(path, 10, 4, Dtype::kFp16);
  EXPECT_EQ(dtype.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(dtype.status().message().find("dtype"), absl::string_view::npos);
  EXPECT_EQ(HostTable::OpenNpy(path + ".missing", 10, 4, Dtype::kFp32).status().code(),
            absl::StatusCode::kNotFound);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  std::fputs("not numpy at all", f);
  std::fclose(f);
  EXPECT_EQ(HostTable::OpenNpy(path, 10, 4, Dtype::kFp32).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace helm::emb
