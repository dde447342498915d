// Storage of the unified pool: one arena of bytes (host memory, device memory, or none at all) and
// the copies the caches need, behind one interface so that all cache bookkeeping is backend-free.
//
// Backends (chosen by CreateStorage from PoolOptions::backend):
//   "cpu"   an aligned host arena; optionally paces host->pool copies at pool.pcie_emulation_gbps
//           so that a CPU run shows the refill cost a GPU pays over PCIe (its name says so).
//   "cuda"  one cudaMalloc arena, pinned host staging, a copy stream; built where nvcc is found.
//   "none"  payload-free: no bytes at all, copies only counted. It drives the simulator.
//   "auto"  "cuda" where a GPU is present, else "cpu".
//
// Offsets are byte offsets into the arena. Every copy is range-checked against the arena (or the
// staging buffer): nothing is ever written outside it; a bad range is InvalidArgument. Copies are
// complete when the call returns (the CUDA backend synchronises its copy stream), so a caller that
// hands an offset to a kernel afterwards sees the bytes.
//
// Thread-safety: all methods may be called concurrently. Concurrent copies into overlapping
// ranges are the caller's bug (the caches never issue them).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "helm/pool/options.h"

namespace helm::pool {

// Where the arena's bytes live; a staging buffer lives in the same space.
enum class MemorySpace { kHost, kDevice, kNone };

// Copies `bytes` from host memory `src` to byte offset `dst_offset` of the destination.
struct HostCopy {
  int64_t dst_offset = 0;
  const void* src = nullptr;
  int64_t bytes = 0;
};

// Copies each of `copies` from its host source to dst_base + dst_offset, on the calling thread:
// the gather of EMB misses (and refills) that every backend does into its arena or staging
// buffer. The sources are random rows of a host table far larger than any cache, a DRAM miss
// (and, past the TLB's reach, a page walk) each, so the first KiB of the source 8 copies ahead
// is prefetched and the misses overlap (512-byte rows of a 1 GiB table on the
// development VM's EPYC core: 1.3-1.6x a plain memcpy loop; helm_bench_memory's
// host_gather_prefetch_vs_plain). REQUIRES: ranges checked by the caller.
void GatherHostCopies(uint8_t* dst_base, absl::Span<const HostCopy> copies);

// Copies `bytes` inside the arena (device-local relocation). Ranges must not overlap.
struct PoolCopy {
  int64_t src_offset = 0;
  int64_t dst_offset = 0;
  int64_t bytes = 0;
};

// A buffer in the arena's memory space for rows the caller serves from outside the arena (EMB
// misses that were not admitted). Owned by whoever created it; freed by its destructor.
class StagingBuffer {
 public:
  virtual ~StagingBuffer() = default;
  // Host pointer on "cpu", device pointer on "cuda", nullptr on "none".
  virtual void* data() = 0;
  virtual int64_t capacity_bytes() const = 0;
};

// Cumulative counters (relaxed atomics read once each): take two snapshots and subtract.
struct StorageStats {
  int64_t h2d_bytes = 0;      // host -> pool
  int64_t h2d_copies = 0;     // regions copied host -> pool
  int64_t staging_bytes = 0;  // host -> staging
  int64_t d2d_bytes = 0;      // pool -> pool (relocation)
  int64_t paced_us = 0;       // time spent waiting on the emulated PCIe link (cpu backend only)
};

class Storage {
 public:
  virtual ~Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  // Human-readable backend name, e.g. "cpu", "cpu (PCIe emulated at 25 GB/s)", "cuda:0 (NVIDIA
  // H100 80GB HBM3)", "none (payload-free)".
  virtual std::string name() const = 0;
  virtual MemorySpace space() const = 0;
  bool has_payload() const { return space() != MemorySpace::kNone; }
  // The arena: a host pointer ("cpu"), a device pointer ("cuda") or nullptr ("none").
  virtual void* base() = 0;
  virtual int64_t size_bytes() const = 0;

  // Host -> arena. Paced on the emulating cpu backend. InvalidArgument when a region leaves the
  // arena (nothing is copied then); Internal on a device error.
  virtual absl::Status CopyHostToPool(absl::Span<const HostCopy> copies) = 0;
  // Arena -> arena (device-local, never paced). Same errors.
  virtual absl::Status CopyPoolToPool(absl::Span<const PoolCopy> copies) = 0;
  // Arena -> host, for verification and tests. Same errors; "none" fills nothing and returns OK.
  virtual absl::Status CopyPoolToHost(int64_t src_offset, void* dst, int64_t bytes) = 0;

  // A staging buffer of at least `bytes` bytes in the arena's memory space.
  virtual absl::StatusOr<std::unique_ptr<StagingBuffer>> NewStagingBuffer(int64_t bytes) = 0;
  // Host -> staging (dst_offset is inside `staging`); paced like CopyHostToPool.
  virtual absl::Status CopyHostToStaging(StagingBuffer* staging,
                                         absl::Span<const HostCopy> copies) = 0;
  // Staging -> host, for tests.
  virtual absl::Status CopyStagingToHost(StagingBuffer* staging, int64_t src_offset, void* dst,
                                         int64_t bytes) = 0;

  StorageStats stats() const;

 protected:
  Storage() = default;
  // Range checks shared by the backends: "what: [offset, offset+bytes) outside [0, limit)".
  static absl::Status CheckRange(const char* what, int64_t offset, int64_t bytes, int64_t limit);
  void CountH2d(int64_t bytes, int64_t copies);
  void CountStaging(int64_t bytes);
  void CountD2d(int64_t bytes);
  void CountPaced(int64_t us);

 private:
  std::atomic<int64_t> h2d_bytes_{0};
  std::atomic<int64_t> h2d_copies_{0};
  std::atomic<int64_t> staging_bytes_{0};
  std::atomic<int64_t> d2d_bytes_{0};
  std::atomic<int64_t> paced_us_{0};
};

// Creates the backend named by options.backend with an arena of options.bytes. InvalidArgument
// for an unknown backend; Unavailable for "cuda" without a usable GPU or without CUDA support in
// this build; ResourceExhausted when the arena cannot be allocated. Logs the chosen backend once.
absl::StatusOr<std::unique_ptr<Storage>> CreateStorage(const PoolOptions& options);

// The individual backends, for tests and the simulator (CreateStorage is the usual entry point).
absl::StatusOr<std::unique_ptr<Storage>> CreateCpuStorage(int64_t bytes, double pcie_gbps);
std::unique_ptr<Storage> CreatePayloadFreeStorage(int64_t bytes);
// Unavailable where this build has no CUDA or no GPU is usable.
absl::StatusOr<std::unique_ptr<Storage>> CreateCudaStorage(int64_t bytes, int32_t device);
// Whether a CUDA device is usable by this build (false without CUDA support or without a GPU).
bool CudaStorageAvailable(std::string* why_not);

}  // namespace helm::pool
