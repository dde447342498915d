#include "helm/workload/generator.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "workload/generators.h"

namespace helm::workload {
namespace {

// Runs every field's documented check (the same ones YAML parsing applies), so options built in
// code get the same clear errors as options read from a file.
class FieldChecker {
 public:
  template <typename T>
  void Field(const char* key, T& field, const char* /*doc*/, config::Check<T> check = {}) {
    if (!check) return;
    std::string error = check(field);
    if (!error.empty()) errors_.push_back(absl::StrCat(key, ": ", error));
  }
  template <typename S>
  void Section(const char* key, S& section, const char* /*doc*/) {
    FieldChecker inner;
    section.Describe(inner);
    for (const std::string& e : inner.errors_) errors_.push_back(absl::StrCat(key, ".", e));
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::vector<std::string> errors_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Generator>> Generator::Create(const WorkloadOptions& options) {
  WorkloadOptions copy = options;  // Describe takes non-const references; the checker only reads.
  FieldChecker checker;
  copy.Describe(checker);
  if (!checker.errors().empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(checker.errors(), "; "));
  }
  if (absl::Status status = options.Validate(); !status.ok()) return status;
  if (options.profile == "trace") return internal::NewTraceGenerator(options);
  if (options.mix.enabled()) return internal::NewMixGenerator(options);
  return internal::NewSyntheticGenerator(options);
}

}  // namespace helm::workload
