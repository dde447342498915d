// Options of the unified pool (one arena per GPU shared by the EMB and KV caches).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "helm/config/describe.h"

namespace helm::pool {

struct PoolOptions {
  // Arena size in bytes, allocated once at start.
  int64_t bytes = int64_t{64} << 20;
  // Chunk size in bytes; chunks are the unit that moves between the two caches.
  int64_t chunk_bytes = int64_t{2} << 20;
  // Initial EMB share of the chunks (EMB chunks / all chunks).
  double initial_split = 0.5;
  // Bounds of the EMB share any resize may reach.
  double r_min = 0.05;
  double r_max = 0.95;
  // Upper bound on bytes relocated by one resize step (bounds the time a step holds a lock).
  int64_t max_step_bytes = int64_t{4} << 20;
  // Background prefetch of the hottest missing EMB rows after EMB grows (bytes/s; 0: off).
  int64_t prefetch_bytes_per_s = 0;
  // Storage backend: "cpu" (aligned host arena), "cuda" (cudaMalloc arena), "none" (payload-free
  // bookkeeping only, for the simulator), "auto" (cuda where a GPU is present, else cpu).
  std::string backend = "auto";
  // CUDA device ordinal for the "cuda" backend.
  int32_t device = 0;
  // CPU backend only: pace host->pool copies at this rate to emulate PCIe (GB/s; 0: no pacing).
  double pcie_emulation_gbps = 0.0;
  // Each cache keeps a ghost list (helm/common/ghost_list.h) of what it evicted last, up to this
  // share of the pool's bytes: its hits say what growing that cache by this share would have
  // saved, the split controller's signal of which way memory pays (EmbStats::ghost_hits,
  // KvStats::ghost_hit_tokens). 0: off.
  double ghost_share = 0.05;

  template <class V>
  void Describe(V& v) {
    v.Field("bytes", bytes, "arena size (bytes; suffixes KiB/MiB/GiB accepted)",
            config::AtLeast<int64_t>(int64_t{1} << 20));
    v.Field("chunk_bytes", chunk_bytes, "chunk size, the unit that moves between caches (bytes)",
            config::PowerOfTwoAtLeast(int64_t{64} << 10));
    v.Field("initial_split", initial_split, "initial EMB share of the chunks",
            config::InRange(0.0, 1.0));
    v.Field("r_min", r_min, "lowest EMB share a resize may reach", config::InRange(0.0, 1.0));
    v.Field("r_max", r_max, "highest EMB share a resize may reach", config::InRange(0.0, 1.0));
    v.Field("max_step_bytes", max_step_bytes, "bytes relocated per resize step at most",
            config::AtLeast<int64_t>(int64_t{64} << 10));
    v.Field("prefetch_bytes_per_s", prefetch_bytes_per_s,
            "background EMB prefetch budget after EMB grows (bytes/s; 0: off)",
            config::AtLeast<int64_t>(0));
    v.Field("backend", backend, "storage backend", config::OneOf({"auto", "cpu", "cuda", "none"}));
    v.Field("device", device, "CUDA device ordinal", config::AtLeast<int32_t>(0));
    v.Field("pcie_emulation_gbps", pcie_emulation_gbps,
            "cpu backend: pace host->pool copies at this rate (GB/s; 0: off)",
            config::InRange(0.0, 1000.0));
    v.Field("ghost_share", ghost_share,
            "share of the pool each cache's ghost list of evicted entries covers (0: off)",
            config::InRange(0.0, 0.5));
  }

  absl::Status Validate() const {
    if (r_min > r_max) {
      return absl::InvalidArgumentError(
          absl::StrCat("r_min: must be <= r_max (", r_max, "), got ", r_min));
    }
    if (initial_split < r_min || initial_split > r_max) {
      return absl::InvalidArgumentError(absl::StrCat("initial_split: must be in [r_min, r_max] = [",
                                                     r_min, ", ", r_max, "], got ", initial_split));
    }
    if (bytes < 2 * chunk_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("bytes: must hold at least two chunks of chunk_bytes (", 2 * chunk_bytes,
                       "), got ", bytes));
    }
    return absl::OkStatus();
  }
};

}  // namespace helm::pool
