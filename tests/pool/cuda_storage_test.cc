// The CUDA storage backend against the cpu backend (same copies, same bytes back), and the EMB
// cache on both: same decisions, same rows. Skips cleanly where no GPU is usable.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "helm/emb/emb_cache.h"
#include "helm/pool/pool.h"
#include "helm/pool/storage.h"

namespace helm::pool {
namespace {

#define SKIP_WITHOUT_GPU()                                \
  do {                                                    \
    std::string why;                                      \
    if (!CudaStorageAvailable(&why)) GTEST_SKIP() << why; \
  } while (false)

TEST(CudaStorage, CopiesMatchTheCpuBackend) {
  SKIP_WITHOUT_GPU();
  const int64_t bytes = 64 << 20;
  auto cuda = CreateCudaStorage(bytes, 0);
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  auto cpu = CreateCpuStorage(bytes, 0);
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ((*cuda)->space(), MemorySpace::kDevice);
  EXPECT_NE((*cuda)->name().find("cuda:0"), std::string::npos);
  std::mt19937_64 rng(::testing::UnitTest::GetInstance()->random_seed());
  std::vector<uint8_t> host(24 << 20);
  for (auto& b : host) b = static_cast<uint8_t>(rng());
  // Scattered small rows, adjacent runs, and one region larger than the pinned gather buffer.
  std::vector<HostCopy> copies;
  for (int i = 0; i < 3000; ++i) {
    const int64_t dst = static_cast<int64_t>(rng() % 4000) * 256;
    copies.push_back(HostCopy{dst, host.data() + (rng() % 1000) * 256, 256});
  }
  for (int i = 0; i < 64; ++i)
    copies.push_back(HostCopy{(2 << 20) + i * 512, host.data() + i * 512, 512});
  copies.push_back(HostCopy{int64_t{20} << 20, host.data(), int64_t{20} << 20});
  // Later copies to a destination win on both backends (copies run in order).
  for (Storage* s : {cuda->get(), cpu->get()}) {
    for (const HostCopy& c : copies) ASSERT_TRUE(s->CopyHostToPool({&c, 1}).ok());
    ASSERT_TRUE(s->CopyHostToPool(copies).ok());
    ASSERT_TRUE(s->CopyPoolToPool({{PoolCopy{0, int64_t{48} << 20, 1 << 20},
                                    PoolCopy{2 << 20, int64_t{50} << 20, 32768}}})
                    .ok());
    // Self-overlapping copies (both directions) and a chain A->B, B->C whose pieces are adjacent
    // on both sides: in order, with memmove semantics, on both backends.
    ASSERT_TRUE(s->CopyPoolToPool({{PoolCopy{20 << 20, (20 << 20) + 4096, 8192},
                                    PoolCopy{(21 << 20) + 4096, 21 << 20, 8192},
                                    PoolCopy{22 << 20, (22 << 20) + 1024, 1024},
                                    PoolCopy{(22 << 20) + 1024, (22 << 20) + 2048, 1024}}})
                    .ok());
  }
  std::vector<uint8_t> a(bytes), b(bytes);
  ASSERT_TRUE((*cuda)->CopyPoolToHost(0, a.data(), bytes).ok());
  ASSERT_TRUE((*cpu)->CopyPoolToHost(0, b.data(), bytes).ok());
  EXPECT_TRUE(a == b);

  auto staging = (*cuda)->NewStagingBuffer(1 << 20);
  ASSERT_TRUE(staging.ok());
  std::vector<HostCopy> rows;
  for (int i = 0; i < 100; ++i) rows.push_back(HostCopy{i * 192, host.data() + i * 4096, 192});
  ASSERT_TRUE((*cuda)->CopyHostToStaging(staging->get(), rows).ok());
  std::vector<uint8_t> out(100 * 192);
  ASSERT_TRUE((*cuda)->CopyStagingToHost(staging->get(), 0, out.data(), 100 * 192).ok());
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(std::memcmp(out.data() + i * 192, host.data() + i * 4096, 192), 0) << i;
  }
  EXPECT_EQ((*cuda)->CopyHostToPool({{HostCopy{bytes - 8, host.data(), 16}}}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CudaStorage, EmbCacheOnCudaMatchesCpuDecisionsAndRows) {
  SKIP_WITHOUT_GPU();
  PoolOptions po;
  po.bytes = 8 << 20;
  po.chunk_bytes = 256 << 10;
  po.initial_split = 0.5;
  po.max_step_bytes = 256 << 10;
  emb::EmbOptions eo;
  eo.num_items = 100000;
  eo.dim = 64;
  eo.dtype = "bf16";
  auto table = emb::HostTable::Create(eo);
  ASSERT_TRUE(table.ok());
  std::shared_ptr<const emb::HostTable> shared = *std::move(table);
  po.backend = "cuda";
  auto gpu_pool = Pool::Create(po);
  ASSERT_TRUE(gpu_pool.ok()) << gpu_pool.status();
  po.backend = "cpu";
  auto cpu_pool = Pool::Create(po);
  ASSERT_TRUE(cpu_pool.ok());
  auto gpu = emb::EmbCache::Create(eo, gpu_pool->get(), shared);
  auto cpu = emb::EmbCache::Create(eo, cpu_pool->get(), shared);
  ASSERT_TRUE(gpu.ok() && cpu.ok());
  std::mt19937_64 rng(::testing::UnitTest::GetInstance()->random_seed());
  std::vector<int64_t> ids(2048);
  std::vector<uint8_t> row(128);
  for (int b = 0; b < 60; ++b) {
    for (auto& id : ids) id = static_cast<int64_t>(std::pow(rng() % 100000 + 1, 0.8)) % 100000;
    if (b == 30) {
      (*gpu_pool)->SetTarget(0.25);
      (*cpu_pool)->SetTarget(0.25);
    }
    (*gpu_pool)->Step();
    (*cpu_pool)->Step();
    auto rg = (*gpu)->Lookup(ids);
    auto rc = (*cpu)->Lookup(ids);
    ASSERT_TRUE(rg.ok() && rc.ok());
    ASSERT_TRUE(
        std::equal(rg->locations().begin(), rg->locations().end(), rc->locations().begin()));
    for (size_t i = 0; i < ids.size(); i += 97) {
      const int64_t loc = rg->locations()[i];
      if (loc >= 0) {
        ASSERT_TRUE((*gpu_pool)->storage()->CopyPoolToHost(loc, row.data(), 128).ok());
      } else {
        // Staging rows live on the device too.
        ASSERT_TRUE(
            (*gpu_pool)
                ->storage()
                ->CopyStagingToHost(rg->staging_buffer(), (-(loc + 1)) * 128, row.data(), 128)
                .ok());
      }
      ASSERT_EQ(std::memcmp(row.data(), shared->Row(ids[i]), 128), 0) << "id " << ids[i];
    }
  }
  EXPECT_TRUE((*gpu)->VerifyResidentRows().ok());
  EXPECT_TRUE((*gpu)->CheckInvariants().ok());
  EXPECT_GT((*gpu)->stats().relocated_rows + (*gpu)->stats().dropped_rows, 0);
  EXPECT_EQ((*gpu)->stats().hits, (*cpu)->stats().hits);
}

}  // namespace
}  // namespace helm::pool
