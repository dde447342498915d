// Target config: YAML config text as helm's processes load it.
#include <cmath>
#include <string>
#include <type_traits>

#include "fuzz_targets.h"
#include "helm/config/config.h"

namespace helm::fuzz {
namespace {

// Walks an accepted config (through the same Describe the parser uses) and checks that every
// value is one its check accepts and every floating-point value is finite: "every value is
// checked" (config.h), so NaN or infinity must be refused rather than reach the components.
class AcceptedValues {
 public:
  explicit AcceptedValues(std::string path) : path_(std::move(path)) {}

  template <typename T>
  void Field(const char* key, T& field, const char* /*doc*/, config::Check<T> check = {}) {
    if constexpr (std::is_floating_point_v<T>) {
      if (!std::isfinite(field)) {
        std::fprintf(stderr, "config: %s/%s accepted a non-finite value\n", path_.c_str(), key);
      }
      HELM_FUZZ_CHECK(std::isfinite(field));
    }
    if (check) HELM_FUZZ_CHECK(check(field).empty());
  }

  template <typename S>
  void Section(const char* key, S& section, const char* /*doc*/) {
    AcceptedValues inner(path_ + "/" + key);
    section.Describe(inner);
  }

 private:
  std::string path_;
};

}  // namespace

int FuzzConfig(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<config::Config> parsed = config::ParseConfig(text, "<fuzz>");
  if (!parsed.ok()) {
    HELM_FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  AcceptedValues walk("");
  parsed->Describe(walk);
  return 0;
}

}  // namespace helm::fuzz
