#include "helm/pool/storage.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace helm::pool {

namespace {

constexpr size_t kGatherAhead = 8;  // copies whose sources are prefetched ahead of the copying

// The first KiB of a copy's source; longer copies stream (the hardware prefetches them).
void PrefetchSource(const HostCopy& c) {
  const auto* src = static_cast<const uint8_t*>(c.src);
  const int64_t n = c.bytes < 1024 ? c.bytes : 1024;
  for (int64_t o = 0; o < n; o += 64) __builtin_prefetch(src + o);
}

}  // namespace

void GatherHostCopies(uint8_t* dst_base, absl::Span<const HostCopy> copies) {
  for (size_t i = 0; i < copies.size() && i < kGatherAhead; ++i) PrefetchSource(copies[i]);
  for (size_t i = 0; i < copies.size(); ++i) {
    if (i + kGatherAhead < copies.size()) PrefetchSource(copies[i + kGatherAhead]);
    std::memcpy(dst_base + copies[i].dst_offset, copies[i].src,
                static_cast<size_t>(copies[i].bytes));
  }
}

StorageStats Storage::stats() const {
  StorageStats s;
  s.h2d_bytes = h2d_bytes_.load(std::memory_order_relaxed);
  s.h2d_copies = h2d_copies_.load(std::memory_order_relaxed);
  s.staging_bytes = staging_bytes_.load(std::memory_order_relaxed);
  s.d2d_bytes = d2d_bytes_.load(std::memory_order_relaxed);
  s.paced_us = paced_us_.load(std::memory_order_relaxed);
  return s;
}

absl::Status Storage::CheckRange(const char* what, int64_t offset, int64_t bytes, int64_t limit) {
  if (offset < 0 || bytes < 0 || offset > limit || bytes > limit - offset) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": range [", offset, ", ", offset + bytes,
                                                   ") lies outside [0, ", limit, ")"));
  }
  return absl::OkStatus();
}

void Storage::CountH2d(int64_t bytes, int64_t copies) {
  h2d_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  h2d_copies_.fetch_add(copies, std::memory_order_relaxed);
}
void Storage::CountStaging(int64_t bytes) {
  staging_bytes_.fetch_add(bytes, std::memory_order_relaxed);
}
void Storage::CountD2d(int64_t bytes) { d2d_bytes_.fetch_add(bytes, std::memory_order_relaxed); }
void Storage::CountPaced(int64_t us) { paced_us_.fetch_add(us, std::memory_order_relaxed); }

}  // namespace helm::pool
