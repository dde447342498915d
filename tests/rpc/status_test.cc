#include "helm/rpc/status.h"

#include "gtest/gtest.h"

namespace helm::rpc {
namespace {

TEST(StatusTranslation, EveryCanonicalCodeRoundTrips) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code), code == 0 ? "" : "why");
    const grpc::Status wire = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(wire.error_code()), code);
    if (code != 0) {
      EXPECT_EQ(wire.error_message(), "why");
    }
    EXPECT_EQ(FromGrpcStatus(wire), status) << code;
  }
}

TEST(StatusTranslation, KeepsTheMessageAndCodeOfRequestErrors) {
  const grpc::Status wire =
      ToGrpcStatus(absl::InvalidArgumentError("history_actions: 3 values, expected 4"));
  EXPECT_EQ(wire.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(wire.error_message(), "history_actions: 3 values, expected 4");
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("queue full")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(absl::DeadlineExceededError("late")).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST(StatusTranslation, UnknownCodesBecomeUnknown) {
  const absl::Status odd(static_cast<absl::StatusCode>(42), "odd");
  EXPECT_EQ(ToGrpcStatus(odd).error_code(), grpc::StatusCode::UNKNOWN);
  // 20: no gRPC code, yet inside the enum's range (0..31; a value outside it is undefined).
  EXPECT_EQ(FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(20), "x")).code(),
            absl::StatusCode::kUnknown);
}

}  // namespace
}  // namespace helm::rpc
