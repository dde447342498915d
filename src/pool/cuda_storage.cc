// CUDA backend: one cudaMalloc arena, pinned host staging that gathers scattered host rows into
// one contiguous upload, one stream for host->device and one for device-local relocation.
//
// Host rows are first gathered (memcpy) into pinned memory, then uploaded with one asynchronous
// copy per run of adjacent destinations (the slot allocators hand out adjacent slots, so runs are
// long), all on one stream; the call synchronises that stream before it returns, so a kernel
// launched afterwards on any stream sees the bytes.
#include "pool/cuda_storage.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "helm/common/cuda_memmove.h"

namespace helm::pool::internal {
namespace {

// Pinned gather space per upload round; larger uploads run in several rounds.
constexpr int64_t kPinnedBytes = int64_t{8} << 20;

absl::Status CudaError(const char* what, cudaError_t e) {
  return absl::InternalError(
      absl::StrCat(what, ": ", cudaGetErrorName(e), ": ", cudaGetErrorString(e)));
}

#define HELM_CUDA_RETURN(what, expr)                                       \
  do {                                                                     \
    const cudaError_t helm_cuda_e_ = (expr);                               \
    if (helm_cuda_e_ != cudaSuccess) return CudaError(what, helm_cuda_e_); \
  } while (false)

struct Run {
  int64_t dst = 0;
  int64_t src = 0;  // offset in the pinned gather buffer, or in the arena
  int64_t bytes = 0;
};

bool Overlap(int64_t a, int64_t b, int64_t bytes) { return a < b + bytes && b < a + bytes; }

// Appends a copy to `runs`, extending the last run when both sides are adjacent. With
// `same_space` (src and dst both in the arena), a run is never extended into one whose source
// overlaps its destination: copies A->B then B->C would otherwise become one copy that reads
// bytes it writes, where the cpu backend copies in order.
void AddRun(std::vector<Run>* runs, int64_t dst, int64_t src, int64_t bytes,
            bool same_space = false) {
  if (!runs->empty()) {
    Run& last = runs->back();
    if (last.dst + last.bytes == dst && last.src + last.bytes == src &&
        !(same_space && Overlap(last.dst, last.src, last.bytes + bytes))) {
      last.bytes += bytes;
      return;
    }
  }
  runs->push_back(Run{dst, src, bytes});
}

class DeviceStaging final : public StagingBuffer {
 public:
  DeviceStaging(void* device, uint8_t* pinned, int64_t capacity)
      : device_(device), pinned_(pinned), capacity_(capacity) {}
  ~DeviceStaging() override {
    cudaFree(device_);
    cudaFreeHost(pinned_);
  }
  void* data() override { return device_; }
  int64_t capacity_bytes() const override { return capacity_; }
  uint8_t* pinned() { return pinned_; }

 private:
  void* device_;
  uint8_t* pinned_;  // host mirror the rows are gathered into before one upload
  int64_t capacity_;
};

class CudaStorage final : public Storage {
 public:
  CudaStorage(int32_t device, std::string device_name, uint8_t* arena, int64_t bytes,
              uint8_t* pinned, cudaStream_t h2d, cudaStream_t d2d)
      : device_(device),
        device_name_(std::move(device_name)),
        arena_(arena),
        bytes_(bytes),
        pinned_(pinned),
        h2d_stream_(h2d),
        d2d_stream_(d2d) {}

  ~CudaStorage() override {
    cudaSetDevice(device_);
    cudaStreamDestroy(h2d_stream_);
    cudaStreamDestroy(d2d_stream_);
    cudaFreeHost(pinned_);
    cudaFree(arena_);
  }

  std::string name() const override {
    return absl::StrCat("cuda:", device_, " (", device_name_, ")");
  }
  MemorySpace space() const override { return MemorySpace::kDevice; }
  void* base() override { return arena_; }
  int64_t size_bytes() const override { return bytes_; }

  absl::Status CopyHostToPool(absl::Span<const HostCopy> copies) override {
    int64_t total = 0;
    for (const HostCopy& c : copies) {
      if (absl::Status s = CheckRange("host->pool copy", c.dst_offset, c.bytes, bytes_); !s.ok()) {
        return s;
      }
      total += c.bytes;
    }
    absl::MutexLock lock(&h2d_mu_);
    HELM_CUDA_RETURN("cudaSetDevice", cudaSetDevice(device_));
    if (absl::Status s = Upload(copies, arena_, pinned_, kPinnedBytes); !s.ok()) return s;
    CountH2d(total, static_cast<int64_t>(copies.size()));
    return absl::OkStatus();
  }

  absl::Status CopyPoolToPool(absl::Span<const PoolCopy> copies) override {
    int64_t total = 0;
    std::vector<Run> runs;
    for (const PoolCopy& c : copies) {
      if (absl::Status s = CheckRange("pool->pool copy source", c.src_offset, c.bytes, bytes_);
          !s.ok()) {
        return s;
      }
      if (absl::Status s = CheckRange("pool->pool copy destination", c.dst_offset, c.bytes, bytes_);
          !s.ok()) {
        return s;
      }
      AddRun(&runs, c.dst_offset, c.src_offset, c.bytes, /*same_space=*/true);
      total += c.bytes;
    }
    absl::MutexLock lock(&d2d_mu_);
    HELM_CUDA_RETURN("cudaSetDevice", cudaSetDevice(device_));
    for (const Run& r : runs) {
      // Memmove semantics, as the cpu backend's (a single copy may overlap itself).
      HELM_CUDA_RETURN("device->device copy",
                       MemmoveDeviceAsync(arena_ + r.dst, arena_ + r.src,
                                          static_cast<size_t>(r.bytes), d2d_stream_));
    }
    HELM_CUDA_RETURN("cudaStreamSynchronize", cudaStreamSynchronize(d2d_stream_));
    CountD2d(total);
    return absl::OkStatus();
  }

  absl::Status CopyPoolToHost(int64_t src_offset, void* dst, int64_t bytes) override {
    if (absl::Status s = CheckRange("pool->host copy", src_offset, bytes, bytes_); !s.ok()) {
      return s;
    }
    HELM_CUDA_RETURN("cudaSetDevice", cudaSetDevice(device_));
    HELM_CUDA_RETURN(
        "cudaMemcpy (device->host)",
        cudaMemcpy(dst, arena_ + src_offset, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<StagingBuffer>> NewStagingBuffer(int64_t bytes) override {
    HELM_CUDA_RETURN("cudaSetDevice", cudaSetDevice(device_));
    const size_t n = static_cast<size_t>(std::max<int64_t>(bytes, 1));
    void* device = nullptr;
    if (cudaError_t e = cudaMalloc(&device, n); e != cudaSuccess) {
      return absl::ResourceExhaustedError(
          absl::StrCat("staging buffer of ", bytes, " bytes: ", cudaGetErrorString(e)));
    }
    void* pinned = nullptr;
    if (cudaError_t e = cudaMallocHost(&pinned, n); e != cudaSuccess) {
      cudaFree(device);
      return absl::ResourceExhaustedError(
          absl::StrCat("pinned staging mirror of ", bytes, " bytes: ", cudaGetErrorString(e)));
    }
    {
      // Zeroed like the cpu backend's staging, on the copy stream (see the arena's memset).
      absl::MutexLock lock(&h2d_mu_);
      cudaError_t e = cudaMemsetAsync(device, 0, n, h2d_stream_);
      if (e == cudaSuccess) e = cudaStreamSynchronize(h2d_stream_);
      if (e != cudaSuccess) {
        cudaFreeHost(pinned);
        cudaFree(device);
        return CudaError("cudaMemsetAsync (staging)", e);
      }
    }
    return std::unique_ptr<StagingBuffer>(
        new DeviceStaging(device, static_cast<uint8_t*>(pinned), bytes));
  }

  absl::Status CopyHostToStaging(StagingBuffer* staging,
                                 absl::Span<const HostCopy> copies) override {
    auto* s = static_cast<DeviceStaging*>(staging);
    int64_t total = 0;
    for (const HostCopy& c : copies) {
      if (absl::Status st =
              CheckRange("host->staging copy", c.dst_offset, c.bytes, s->capacity_bytes());
          !st.ok()) {
        return st;
      }
      total += c.bytes;
    }
    // Gather into the buffer's own pinned mirror at the destination offsets, then upload the
    // covered range in runs.
    GatherHostCopies(s->pinned(), copies);
    std::vector<Run> runs;
    for (const HostCopy& c : copies) AddRun(&runs, c.dst_offset, c.dst_offset, c.bytes);
    absl::MutexLock lock(&h2d_mu_);
    HELM_CUDA_RETURN("cudaSetDevice", cudaSetDevice(device_));
    auto* device = static_cast<uint8_t*>(s->data());
    for (const Run& r : runs) {
      HELM_CUDA_RETURN(
          "cudaMemcpyAsync (host->staging)",
          cudaMemcpyAsync(device + r.dst, s->pinned() + r.src, static_cast<size_t>(r.bytes),
                          cudaMemcpyHostToDevice, h2d_stream_));
    }
    HELM_CUDA_RETURN("cudaStreamSynchronize", cudaStreamSynchronize(h2d_stream_));
    CountStaging(total);
    return absl::OkStatus();
  }

  absl::Status CopyStagingToHost(StagingBuffer* staging, int64_t src_offset, void* dst,
                                 int64_t bytes) override {
    if (absl::Status s =
            CheckRange("staging->host copy", src_offset, bytes, staging->capacity_bytes());
        !s.ok()) {
      return s;
    }
    HELM_CUDA_RETURN("cudaSetDevice", cudaSetDevice(device_));
    HELM_CUDA_RETURN("cudaMemcpy (staging->host)",
                     cudaMemcpy(dst, static_cast<uint8_t*>(staging->data()) + src_offset,
                                static_cast<size_t>(bytes), cudaMemcpyDeviceToHost));
    return absl::OkStatus();
  }

 private:
  // Gathers host regions into `pinned` (rounds of at most `pinned_bytes`) and uploads each round
  // in runs of adjacent destinations. REQUIRES: h2d_mu_ held; ranges checked.
  absl::Status Upload(absl::Span<const HostCopy> copies, uint8_t* dst_base, uint8_t* pinned,
                      int64_t pinned_bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(h2d_mu_) {
    std::vector<Run> runs;
    std::vector<HostCopy> packed;  // this round's copies, at their offsets in the pinned buffer
    size_t i = 0;
    while (i < copies.size()) {
      runs.clear();
      packed.clear();
      int64_t used = 0;
      while (i < copies.size()) {
        const HostCopy& c = copies[i];
        if (c.bytes > pinned_bytes) {
          // A region larger than the gather space goes in pieces of its own.
          if (used > 0) break;
          for (int64_t done = 0; done < c.bytes; done += pinned_bytes) {
            const int64_t n = std::min(pinned_bytes, c.bytes - done);
            std::memcpy(pinned, static_cast<const uint8_t*>(c.src) + done, static_cast<size_t>(n));
            HELM_CUDA_RETURN(
                "cudaMemcpyAsync (host->device)",
                cudaMemcpyAsync(dst_base + c.dst_offset + done, pinned, static_cast<size_t>(n),
                                cudaMemcpyHostToDevice, h2d_stream_));
            HELM_CUDA_RETURN("cudaStreamSynchronize", cudaStreamSynchronize(h2d_stream_));
          }
          ++i;
          continue;
        }
        if (used + c.bytes > pinned_bytes) break;
        packed.push_back(HostCopy{used, c.src, c.bytes});
        AddRun(&runs, c.dst_offset, used, c.bytes);
        used += c.bytes;
        ++i;
      }
      GatherHostCopies(pinned, packed);
      for (const Run& r : runs) {
        HELM_CUDA_RETURN(
            "cudaMemcpyAsync (host->device)",
            cudaMemcpyAsync(dst_base + r.dst, pinned + r.src, static_cast<size_t>(r.bytes),
                            cudaMemcpyHostToDevice, h2d_stream_));
      }
      HELM_CUDA_RETURN("cudaStreamSynchronize", cudaStreamSynchronize(h2d_stream_));
    }
    return absl::OkStatus();
  }

  const int32_t device_;
  const std::string device_name_;
  uint8_t* const arena_;
  const int64_t bytes_;
  uint8_t* const pinned_;
  cudaStream_t h2d_stream_;
  cudaStream_t d2d_stream_;
  absl::Mutex h2d_mu_;  // guards pinned_ and serialises uploads on h2d_stream_
  absl::Mutex d2d_mu_;
};

}  // namespace

bool CudaDeviceUsable(int32_t device, std::string* why_not) {
  int count = 0;
  // Without a driver this is cudaErrorInsufficientDriver, not cudaErrorNoDevice: any error
  // means no GPU.
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    if (why_not != nullptr) *why_not = absl::StrCat("no GPU: ", cudaGetErrorName(e));
    return false;
  }
  if (device < 0 || device >= count) {
    if (why_not != nullptr) {
      *why_not = absl::StrCat("pool.device ", device, " not among the ", count, " visible GPUs");
    }
    return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<Storage>> CreateCudaStorageImpl(int64_t bytes, int32_t device) {
  std::string why;
  if (!CudaDeviceUsable(device, &why)) return absl::UnavailableError(why);
  HELM_CUDA_RETURN("cudaSetDevice", cudaSetDevice(device));
  cudaDeviceProp prop{};
  HELM_CUDA_RETURN("cudaGetDeviceProperties", cudaGetDeviceProperties(&prop, device));
  void* arena = nullptr;
  if (cudaError_t e = cudaMalloc(&arena, static_cast<size_t>(bytes)); e != cudaSuccess) {
    return absl::ResourceExhaustedError(absl::StrCat("pool.bytes: cudaMalloc of ", bytes,
                                                     " bytes failed: ", cudaGetErrorString(e)));
  }
  void* pinned = nullptr;
  if (cudaError_t e = cudaMallocHost(&pinned, static_cast<size_t>(kPinnedBytes));
      e != cudaSuccess) {
    cudaFree(arena);
    return absl::ResourceExhaustedError(
        absl::StrCat("pinned staging of ", kPinnedBytes, " bytes: ", cudaGetErrorString(e)));
  }
  cudaStream_t h2d = nullptr, d2d = nullptr;
  if (cudaStreamCreateWithFlags(&h2d, cudaStreamNonBlocking) != cudaSuccess ||
      cudaStreamCreateWithFlags(&d2d, cudaStreamNonBlocking) != cudaSuccess) {
    if (h2d != nullptr) cudaStreamDestroy(h2d);
    cudaFreeHost(pinned);
    cudaFree(arena);
    return absl::InternalError("cudaStreamCreateWithFlags failed");
  }
  // A zeroed arena makes runs reproducible (and matches the cpu backend). The memset runs on the
  // upload stream and is waited for: a plain cudaMemset is asynchronous on the legacy stream,
  // which the non-blocking copy streams do not wait for, so the first uploads could be zeroed.
  cudaError_t e = cudaMemsetAsync(arena, 0, static_cast<size_t>(bytes), h2d);
  if (e == cudaSuccess) e = cudaStreamSynchronize(h2d);
  if (e != cudaSuccess) {
    cudaStreamDestroy(h2d);
    cudaStreamDestroy(d2d);
    cudaFreeHost(pinned);
    cudaFree(arena);
    return CudaError("cudaMemsetAsync", e);
  }
  return std::unique_ptr<Storage>(new CudaStorage(device, prop.name, static_cast<uint8_t*>(arena),
                                                  bytes, static_cast<uint8_t*>(pinned), h2d, d2d));
}

}  // namespace helm::pool::internal
