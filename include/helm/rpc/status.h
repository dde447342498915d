// The single translation between absl::Status (used inside HELM) and grpc::Status (on the wire).
// Handlers call ToGrpcStatus once, at the boundary; clients call FromGrpcStatus. Thread-safe.
#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace helm::rpc {

// Same canonical code and message. absl codes map one to one onto gRPC codes.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// The code's canonical name ("OK", "RESOURCE_EXHAUSTED", ...), as metrics label it; "UNKNOWN" for a
// code outside 0..16.
const char* StatusCodeName(grpc::StatusCode code);

}  // namespace helm::rpc
