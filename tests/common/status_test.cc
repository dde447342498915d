#include "helm/common/status.h"

#include <string>

#include "gtest/gtest.h"

namespace helm {
namespace {

absl::Status FailIfNegative(int v) {
  if (v < 0) return absl::InvalidArgumentError("negative");
  return absl::OkStatus();
}

absl::StatusOr<int> Twice(int v) {
  HELM_RETURN_IF_ERROR(FailIfNegative(v));
  return 2 * v;
}

absl::StatusOr<std::string> Describe(int v) {
  HELM_ASSIGN_OR_RETURN(const int doubled, Twice(v));
  HELM_ASSIGN_OR_RETURN(const int quadrupled, Twice(doubled));
  return std::to_string(quadrupled);
}

TEST(StatusMacros, PropagateErrorsAndValues) {
  EXPECT_EQ(*Describe(3), "12");
  const absl::StatusOr<std::string> failed = Describe(-1);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(failed.status().message(), "negative");
}

}  // namespace
}  // namespace helm
