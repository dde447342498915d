// Target npy: an embedding table file as emb::HostTable::OpenNpy maps it.
#include "fuzz_model.h"
#include "fuzz_targets.h"
#include "helm/emb/host_table.h"
#include "memfd_file.h"

namespace helm::fuzz {

int FuzzNpy(const uint8_t* data, size_t size) {
  MemFdFile file(data, size);
  if (!file.ok()) return 0;
  for (Dtype dtype : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
    const absl::StatusOr<std::unique_ptr<emb::HostTable>> table =
        emb::HostTable::OpenNpy(file.path(), kFuzzNpyRows, kFuzzNpyCols, dtype);
    if (!table.ok()) continue;
    // Accepted: the promised shape, every row inside the mapping (ASan checks each read).
    HELM_FUZZ_CHECK((*table)->num_items() == kFuzzNpyRows);
    HELM_FUZZ_CHECK((*table)->dim() == kFuzzNpyCols);
    HELM_FUZZ_CHECK((*table)->row_bytes() == kFuzzNpyCols * DtypeBytes(dtype));
    unsigned sum = 0;
    for (int64_t id = 0; id < kFuzzNpyRows; ++id) {
      const uint8_t* row = (*table)->Row(id);
      for (int64_t b = 0; b < (*table)->row_bytes(); ++b) sum += row[b];
    }
    volatile unsigned sink = sum;
    (void)sink;
  }
  return 0;
}

}  // namespace helm::fuzz
