// Resource bounds of HELM's gRPC servers (the `grpc` section): the largest message accepted and the
// server's grpc::ResourceQuota.
#pragma once

#include <cstdint>

#include "helm/config/describe.h"

namespace helm::rpc {

struct GrpcOptions {
  // Largest request a server accepts (bytes); larger ones get RESOURCE_EXHAUSTED before any
  // handler runs. 0: derived from the request limits, MaxRankRequestBytes(node.max_history,
  // node.max_candidates) (rpc/limits.h).
  int64_t max_receive_bytes = 0;
  // Memory gRPC may use for its buffers and calls (bytes; grpc::ResourceQuota::Resize).
  int64_t quota_memory_bytes = int64_t{1} << 30;
  // Threads gRPC may run for the server (grpc::ResourceQuota::SetMaxThreads).
  int32_t quota_max_threads = 64;

  template <class V>
  void Describe(V& v) {
    v.Field("max_receive_bytes", max_receive_bytes,
            "largest request accepted (bytes; 0: derived from node.max_history/max_candidates)",
            config::InRange<int64_t>(0, int64_t{1} << 30));
    v.Field("quota_memory_bytes", quota_memory_bytes,
            "memory the gRPC server may use (bytes; grpc::ResourceQuota)",
            config::InRange<int64_t>(int64_t{1} << 20, int64_t{1} << 40));
    v.Field("quota_max_threads", quota_max_threads,
            "threads the gRPC server may use (grpc::ResourceQuota)",
            config::InRange<int32_t>(4, 4096));
  }
};

}  // namespace helm::rpc
