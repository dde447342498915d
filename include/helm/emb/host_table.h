// The host item-embedding table: num_items rows of dim values, the truth that the EMB hot cache
// copies from. Either seeded random rows generated in memory, or a NumPy .npy file mapped
// read-only (no copy; the page cache holds it).
//
// Thread-safety: immutable after creation; every method may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "helm/common/dtype.h"
#include "helm/emb/options.h"

namespace helm::emb {

// Rows are helm::Dtype elements (helm/common/dtype.h, which also has the conversions).
class HostTable {
 public:
  // Rows with values uniform in [-0.1, 0.1), a pure function of (seed, id, column), stored in
  // `dtype`. InvalidArgument for non-positive sizes; ResourceExhausted when memory runs out.
  static absl::StatusOr<std::unique_ptr<HostTable>> CreateRandom(int64_t num_items, int32_t dim,
                                                                 Dtype dtype, uint64_t seed);
  // Maps a 2-D C-order .npy file of shape (num_items, dim). Accepted dtypes: fp32 '<f4', fp16
  // '<f2', bf16 '<V2' / '<u2' / '<i2' (raw bf16 bits; NumPy has no bf16 of its own). NotFound
  // when the file cannot be opened; InvalidArgument naming the path and what differs when the
  // header, shape or dtype does not match.
  static absl::StatusOr<std::unique_ptr<HostTable>> OpenNpy(const std::string& path,
                                                            int64_t num_items, int32_t dim,
                                                            Dtype dtype);
  // From options: OpenNpy(table_path) when table_path is set, else CreateRandom(seed).
  static absl::StatusOr<std::unique_ptr<HostTable>> Create(const EmbOptions& options);

  ~HostTable();
  HostTable(const HostTable&) = delete;
  HostTable& operator=(const HostTable&) = delete;

  int64_t num_items() const { return num_items_; }
  int32_t dim() const { return dim_; }
  Dtype dtype() const { return dtype_; }
  int64_t row_bytes() const { return row_bytes_; }
  // "random(seed=1)" or the .npy path.
  const std::string& source() const { return source_; }
  // Row `id`. REQUIRES: 0 <= id < num_items (callers validate ids at their boundary).
  const uint8_t* Row(int64_t id) const { return data_ + id * row_bytes_; }
  const uint8_t* data() const { return data_; }

 private:
  HostTable() = default;

  int64_t num_items_ = 0;
  int32_t dim_ = 0;
  Dtype dtype_ = Dtype::kFp32;
  int64_t row_bytes_ = 0;
  std::string source_;
  const uint8_t* data_ = nullptr;
  std::unique_ptr<uint8_t[]> owned_;  // random tables
  void* map_ = nullptr;               // mmapped .npy files
  size_t map_bytes_ = 0;
};

// Writes a 2-D C-order .npy file (fp32 '<f4', fp16 '<f2', bf16 '<V2'), for tests and tools.
absl::Status WriteNpy(const std::string& path, Dtype dtype, int64_t rows, int32_t cols,
                      const void* data);

}  // namespace helm::emb
