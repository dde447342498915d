#include "helm/pool/storage.h"

#include "absl/strings/str_cat.h"

namespace helm::pool {

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
