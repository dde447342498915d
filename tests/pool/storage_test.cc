#include "helm/pool/storage.h"

#include <cstring>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace helm::pool {
namespace {

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

TEST(CpuStorage, CopiesRoundTripThroughPoolAndStaging) {
  auto storage = CreateCpuStorage(1 << 20, 0.0);
  ASSERT_TRUE(storage.ok()) << storage.status();
  Storage& s = **storage;
  EXPECT_EQ(s.name(), "cpu");
  EXPECT_EQ(s.space(), MemorySpace::kHost);
  const auto a = Pattern(300, 1), b = Pattern(500, 9);
  std::vector<HostCopy> copies = {{1000, a.data(), 300}, {70000, b.data(), 500}};
  ASSERT_TRUE(s.CopyHostToPool(copies).ok());
  ASSERT_TRUE(s.CopyPoolToPool({{PoolCopy{70000, 200000, 500}}}).ok());
  std::vector<uint8_t> out(500);
  ASSERT_TRUE(s.CopyPoolToHost(200000, out.data(), 500).ok());
  EXPECT_EQ(out, b);
  ASSERT_TRUE(s.CopyPoolToHost(1000, out.data(), 300).ok());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), out.begin()));
  EXPECT_EQ(std::memcmp(static_cast<uint8_t*>(s.base()) + 1000, a.data(), 300), 0);

  auto staging = s.NewStagingBuffer(4096);
  ASSERT_TRUE(staging.ok());
  ASSERT_TRUE(s.CopyHostToStaging(staging->get(), {{HostCopy{128, a.data(), 300}}}).ok());
  ASSERT_TRUE(s.CopyStagingToHost(staging->get(), 128, out.data(), 300).ok());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), out.begin()));

  const StorageStats st = s.stats();
  EXPECT_EQ(st.h2d_bytes, 800);
  EXPECT_EQ(st.h2d_copies, 2);
  EXPECT_EQ(st.d2d_bytes, 500);
  EXPECT_EQ(st.staging_bytes, 300);
}

TEST(CpuStorage, RejectsCopiesOutsideTheArenaAndWritesNothing) {
  auto storage = CreateCpuStorage(1 << 20, 0.0);
  ASSERT_TRUE(storage.ok());
  Storage& s = **storage;
  const auto a = Pattern(64, 3);
  // The first region is fine, the second leaves the arena: the whole call must fail untouched.
  std::vector<HostCopy> copies = {{0, a.data(), 64}, {(1 << 20) - 10, a.data(), 64}};
  const absl::Status st = s.CopyHostToPool(copies);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("outside"), absl::string_view::npos) << st;
  std::vector<uint8_t> out(64, 0xff);
  ASSERT_TRUE(s.CopyPoolToHost(0, out.data(), 64).ok());
  EXPECT_EQ(out, std::vector<uint8_t>(64, 0));
  EXPECT_EQ(s.CopyPoolToPool({{PoolCopy{-1, 0, 8}}}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.CopyPoolToHost(1 << 20, out.data(), 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.stats().h2d_bytes, 0);
}

TEST(CpuStorage, PcieEmulationSaysSoAndPacesCopies) {
  auto storage = CreateCpuStorage(8 << 20, 1.0);  // 1 GB/s: 4 MiB takes ~4 ms
  ASSERT_TRUE(storage.ok());
  EXPECT_EQ((*storage)->name(), "cpu (PCIe emulated at 1 GB/s)");
  std::vector<uint8_t> big(4 << 20, 1);
  ASSERT_TRUE((*storage)->CopyHostToPool({{HostCopy{0, big.data(), 4 << 20}}}).ok());
  // The link model accounts the wait it imposed (bytes / rate), whatever the machine's speed.
  EXPECT_GE((*storage)->stats().paced_us, 3000);
  // Relocation is device-local and never paced.
  const int64_t paced = (*storage)->stats().paced_us;
  ASSERT_TRUE((*storage)->CopyPoolToPool({{PoolCopy{0, 4 << 20, 4 << 20}}}).ok());
  EXPECT_EQ((*storage)->stats().paced_us, paced);
}

TEST(PayloadFreeStorage, ChecksRangesAndCountsBytesWithoutMemory) {
  std::unique_ptr<Storage> s = CreatePayloadFreeStorage(int64_t{1} << 40);  // 1 TiB: no memory
  EXPECT_EQ(s->base(), nullptr);
  EXPECT_FALSE(s->has_payload());
  EXPECT_EQ(s->name(), "none (payload-free)");
  ASSERT_TRUE(s->CopyHostToPool({{HostCopy{int64_t{1} << 39, nullptr, 4096}}}).ok());
  EXPECT_EQ(s->CopyHostToPool({{HostCopy{int64_t{1} << 40, nullptr, 1}}}).code(),
            absl::StatusCode::kInvalidArgument);
  auto staging = s->NewStagingBuffer(1 << 20);
  ASSERT_TRUE(staging.ok());
  EXPECT_EQ((*staging)->data(), nullptr);
  ASSERT_TRUE(s->CopyHostToStaging(staging->get(), {{HostCopy{0, nullptr, 256}}}).ok());
  EXPECT_EQ(s->stats().h2d_bytes, 4096);
  EXPECT_EQ(s->stats().staging_bytes, 256);
}

TEST(CreateStorage, PicksTheNamedBackendAndRejectsUnknownOnes) {
  PoolOptions o;
  o.bytes = 2 << 20;
  o.backend = "none";
  auto none = CreateStorage(o);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE((*none)->has_payload());
  o.backend = "cpu";
  o.pcie_emulation_gbps = 25;
  auto cpu = CreateStorage(o);
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ((*cpu)->name(), "cpu (PCIe emulated at 25 GB/s)");
  o.backend = "tpu";
  auto bad = CreateStorage(o);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("pool.backend"), absl::string_view::npos);
  o.backend = "auto";
  auto any = CreateStorage(o);
  ASSERT_TRUE(any.ok()) << any.status();
  std::string why;
  EXPECT_EQ((*any)->space(),
            CudaStorageAvailable(&why) ? MemorySpace::kDevice : MemorySpace::kHost);
  if (!CudaStorageAvailable(&why)) {
    o.backend = "cuda";
    EXPECT_EQ(CreateStorage(o).status().code(), absl::StatusCode::kUnavailable);
  }
}

}  // namespace
}  // namespace helm::pool
