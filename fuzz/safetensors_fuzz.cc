// Target safetensors: a weights file as model::Weights::Load maps it, for a small fixed model.
#include "fuzz_model.h"
#include "fuzz_targets.h"
#include "helm/model/weights.h"
#include "memfd_file.h"

namespace helm::fuzz {

int FuzzSafetensors(const uint8_t* data, size_t size) {
  MemFdFile file(data, size);
  if (!file.ok()) return 0;
  const absl::StatusOr<std::unique_ptr<model::Weights>> weights =
      model::Weights::Load(file.path(), FuzzModelDims());
  if (!weights.ok()) return 0;
  // Accepted: every tensor lies wholly inside the file (ASan checks each read).
  float sum = 0;
  for (const model::TensorSpec& spec : (*weights)->specs()) {
    const float* values = (*weights)->Get(spec.name);
    HELM_FUZZ_CHECK(values != nullptr);
    for (int64_t i = 0; i < spec.elements(); ++i) sum += values[i];
  }
  volatile float sink = sum;
  (void)sink;
  return 0;
}

}  // namespace helm::fuzz
