// The host-memory backends: "cpu" (an aligned host arena, optionally pacing host->pool copies to
// emulate PCIe) and "none" (payload-free: ranges checked and bytes counted, nothing stored).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "helm/pool/storage.h"

namespace helm::pool {
namespace {

constexpr int64_t kAlignBytes = 4096;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using HostBytes = std::unique_ptr<uint8_t[], FreeDeleter>;

HostBytes AllocateAligned(int64_t bytes) {
  const int64_t rounded =
      (std::max<int64_t>(bytes, 1) + kAlignBytes - 1) / kAlignBytes * kAlignBytes;
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(kAlignBytes, static_cast<size_t>(rounded)));
  if (p != nullptr) std::memset(p, 0, static_cast<size_t>(rounded));
  return HostBytes(p);
}

class HostStaging final : public StagingBuffer {
 public:
  HostStaging(HostBytes bytes, int64_t capacity) : bytes_(std::move(bytes)), capacity_(capacity) {}
  void* data() override { return bytes_.get(); }
  int64_t capacity_bytes() const override { return capacity_; }

 private:
  HostBytes bytes_;
  int64_t capacity_;
};

class CpuStorage final : public Storage {
 public:
  CpuStorage(HostBytes arena, int64_t bytes, double pcie_gbps)
      : arena_(std::move(arena)), bytes_(bytes), pcie_gbps_(pcie_gbps) {}

  std::string name() const override {
    if (pcie_gbps_ <= 0) return "cpu";
    return absl::StrFormat("cpu (PCIe emulated at %g GB/s)", pcie_gbps_);
  }
  MemorySpace space() const override { return MemorySpace::kHost; }
  void* base() override { return arena_.get(); }
  int64_t size_bytes() const override { return bytes_; }

  absl::Status CopyHostToPool(absl::Span<const HostCopy> copies) override {
    int64_t total = 0;
    for (const HostCopy& c : copies) {
      if (absl::Status s = CheckRange("host->pool copy", c.dst_offset, c.bytes, bytes_); !s.ok()) {
        return s;
      }
      total += c.bytes;
    }
    GatherHostCopies(arena_.get(), copies);
    CountH2d(total, static_cast<int64_t>(copies.size()));
    Pace(total);
    return absl::OkStatus();
  }

  absl::Status CopyPoolToPool(absl::Span<const PoolCopy> copies) override {
    int64_t total = 0;
    for (const PoolCopy& c : copies) {
      if (absl::Status s = CheckRange("pool->pool copy source", c.src_offset, c.bytes, bytes_);
          !s.ok()) {
        return s;
      }
      if (absl::Status s = CheckRange("pool->pool copy destination", c.dst_offset, c.bytes, bytes_);
          !s.ok()) {
        return s;
      }
      total += c.bytes;
    }
    for (const PoolCopy& c : copies) {
      std::memmove(arena_.get() + c.dst_offset, arena_.get() + c.src_offset,
                   static_cast<size_t>(c.bytes));
    }
    CountD2d(total);
    return absl::OkStatus();
  }

  absl::Status CopyPoolToHost(int64_t src_offset, void* dst, int64_t bytes) override {
    if (absl::Status s = CheckRange("pool->host copy", src_offset, bytes, bytes_); !s.ok()) {
      return s;
    }
    std::memcpy(dst, arena_.get() + src_offset, static_cast<size_t>(bytes));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<StagingBuffer>> NewStagingBuffer(int64_t bytes) override {
    HostBytes b = AllocateAligned(bytes);
    if (b == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("staging buffer of ", bytes, " bytes"));
    }
    return std::unique_ptr<StagingBuffer>(new HostStaging(std::move(b), bytes));
  }

  absl::Status CopyHostToStaging(StagingBuffer* staging,
                                 absl::Span<const HostCopy> copies) override {
    int64_t total = 0;
    for (const HostCopy& c : copies) {
      if (absl::Status s =
              CheckRange("host->staging copy", c.dst_offset, c.bytes, staging->capacity_bytes());
          !s.ok()) {
        return s;
      }
      total += c.bytes;
    }
    GatherHostCopies(static_cast<uint8_t*>(staging->data()), copies);
    CountStaging(total);
    Pace(total);
    return absl::OkStatus();
  }

  absl::Status CopyStagingToHost(StagingBuffer* staging, int64_t src_offset, void* dst,
                                 int64_t bytes) override {
    if (absl::Status s =
            CheckRange("staging->host copy", src_offset, bytes, staging->capacity_bytes());
        !s.ok()) {
      return s;
    }
    std::memcpy(dst, static_cast<uint8_t*>(staging->data()) + src_offset,
                static_cast<size_t>(bytes));
    return absl::OkStatus();
  }

 private:
  // One emulated link shared by all threads: a transfer occupies it for bytes / rate after the
  // link's previous transfer ends, and the caller returns when its transfer would have finished.
  // This emulates a device that takes wall time (as a real DMA does), so it reads the steady clock
  // and sleeps, rather than the injected helm::Clock: a virtual clock cannot be waited on. Runs on
  // virtual time use the payload-free backend, whose transfer times come from the cost model.
  void Pace(int64_t bytes) {
    if (pcie_gbps_ <= 0 || bytes <= 0) return;
    using Clock = std::chrono::steady_clock;
    const auto duration = std::chrono::nanoseconds(
        static_cast<int64_t>(static_cast<double>(bytes) / pcie_gbps_));  // 1 GB/s = 1 byte/ns
    const Clock::time_point start = Clock::now();
    Clock::time_point done;
    {
      absl::MutexLock lock(&pace_mu_);
      link_free_ = std::max(link_free_, start) + duration;
      done = link_free_;
    }
    for (Clock::time_point now = Clock::now(); now < done; now = Clock::now()) {
      const auto left = done - now;
      // Sleeping overshoots by tens of microseconds: sleep only for the coarse part, then yield.
      if (left > std::chrono::microseconds(200)) {
        std::this_thread::sleep_for(left - std::chrono::microseconds(100));
      } else {
        std::this_thread::yield();
      }
    }
    CountPaced(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
  }

  HostBytes arena_;
  int64_t bytes_;
  double pcie_gbps_;
  absl::Mutex pace_mu_;
  std::chrono::steady_clock::time_point link_free_ ABSL_GUARDED_BY(pace_mu_);
};

class NullStaging final : public StagingBuffer {
 public:
  explicit NullStaging(int64_t capacity) : capacity_(capacity) {}
  void* data() override { return nullptr; }
  int64_t capacity_bytes() const override { return capacity_; }

 private:
  int64_t capacity_;
};

class PayloadFreeStorage final : public Storage {
 public:
  explicit PayloadFreeStorage(int64_t bytes) : bytes_(bytes) {}

  std::string name() const override { return "none (payload-free)"; }
  MemorySpace space() const override { return MemorySpace::kNone; }
  void* base() override { return nullptr; }
  int64_t size_bytes() const override { return bytes_; }

  absl::Status CopyHostToPool(absl::Span<const HostCopy> copies) override {
    int64_t total = 0;
    for (const HostCopy& c : copies) {
      if (absl::Status s = CheckRange("host->pool copy", c.dst_offset, c.bytes, bytes_); !s.ok()) {
        return s;
      }
      total += c.bytes;
    }
    CountH2d(total, static_cast<int64_t>(copies.size()));
    return absl::OkStatus();
  }
  absl::Status CopyPoolToPool(absl::Span<const PoolCopy> copies) override {
    int64_t total = 0;
    for (const PoolCopy& c : copies) {
      if (absl::Status s = CheckRange("pool->pool copy source", c.src_offset, c.bytes, bytes_);
          !s.ok()) {
        return s;
      }
      if (absl::Status s = CheckRange("pool->pool copy destination", c.dst_offset, c.bytes, bytes_);
          !s.ok()) {
        return s;
      }
      total += c.bytes;
    }
    CountD2d(total);
    return absl::OkStatus();
  }
  absl::Status CopyPoolToHost(int64_t src_offset, void*, int64_t bytes) override {
    return CheckRange("pool->host copy", src_offset, bytes, bytes_);
  }
  absl::StatusOr<std::unique_ptr<StagingBuffer>> NewStagingBuffer(int64_t bytes) override {
    return std::unique_ptr<StagingBuffer>(new NullStaging(bytes));
  }
  absl::Status CopyHostToStaging(StagingBuffer* staging,
                                 absl::Span<const HostCopy> copies) override {
    int64_t total = 0;
    for (const HostCopy& c : copies) {
      if (absl::Status s =
              CheckRange("host->staging copy", c.dst_offset, c.bytes, staging->capacity_bytes());
          !s.ok()) {
        return s;
      }
      total += c.bytes;
    }
    CountStaging(total);
    return absl::OkStatus();
  }
  absl::Status CopyStagingToHost(StagingBuffer* staging, int64_t src_offset, void*,
                                 int64_t bytes) override {
    return CheckRange("staging->host copy", src_offset, bytes, staging->capacity_bytes());
  }

 private:
  int64_t bytes_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Storage>> CreateCpuStorage(int64_t bytes, double pcie_gbps) {
  if (bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("pool.bytes: must be > 0, got ", bytes));
  }
  if (pcie_gbps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pool.pcie_emulation_gbps: must be >= 0, got ", pcie_gbps));
  }
  HostBytes arena = AllocateAligned(bytes);
  if (arena == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("pool.bytes: cannot allocate a host arena of ", bytes, " bytes"));
  }
  return std::unique_ptr<Storage>(new CpuStorage(std::move(arena), bytes, pcie_gbps));
}

std::unique_ptr<Storage> CreatePayloadFreeStorage(int64_t bytes) {
  return std::unique_ptr<Storage>(new PayloadFreeStorage(bytes));
}

}  // namespace helm::pool
