// Target config: YAML config text as helm's processes load it.
#include <string>

#include "fuzz_targets.h"
#include "helm/config/config.h"

namespace helm::fuzz {

int FuzzConfig(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<config::Config> parsed = config::ParseConfig(text, "<fuzz>");
  if (!parsed.ok()) {
    HELM_FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
  }
  return 0;
}

}  // namespace helm::fuzz
