// The gRPC edge of the load generator: Rank calls to helm.v1.Recommender through gRPC's callback
// API, so one sending thread drives hundreds of requests per second while replies arrive on
// gRPC's threads. Translates workload::Request to RankRequest and the reply (status, ServingInfo)
// to a Reply; nothing else.
//
// Thread-safety: Prepare, Send and CancelAll from one thread at a time; `done` callbacks run on
// gRPC's threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "bench/transport.h"
#include "grpcpp/grpcpp.h"
#include "helm/common/clock.h"
#include "helm/rpc/security.h"
#include "helm/v1/recommender.grpc.pb.h"

namespace helm::bench {

// A channel with the load generator's message size limits (64 MiB), secured by `security`
// (default plaintext; rpc/security.h).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const rpc::ChannelSecurity& security = {});

// The wall-clock time `delta_us` from now, for gRPC deadlines.
std::chrono::system_clock::time_point WallDeadlineIn(int64_t delta_us);

class GrpcTransport final : public Transport {
 public:
  // Connects to `target` (host:port); Unavailable, naming the target, when it does not accept a
  // connection within `connect_timeout_ms`. Every request asks for `top_k` items. Deadlines given
  // to Send are on `clock`, which must outlive the transport. `security`: the channel's TLS.
  static absl::StatusOr<std::unique_ptr<GrpcTransport>> Connect(
      const std::string& target, int64_t connect_timeout_ms, int32_t top_k, Clock* clock,
      const rpc::ChannelSecurity& security = {});
  // Cancels what is still outstanding and returns once every call, its callback included, is
  // gone.
  ~GrpcTransport() override;

  std::unique_ptr<PreparedRequest> Prepare(const workload::Request& request) override;
  void Send(std::unique_ptr<PreparedRequest> request, int64_t deadline_us, Done done) override;
  void CancelAll() override;

 private:
  class Call;
  GrpcTransport(std::shared_ptr<grpc::Channel> channel, int32_t top_k, Clock* clock);

  // A call leaves `outstanding_` before it is deleted, and counts as finishing until then.
  void Detach(Call* call);
  void Finished();
  bool QuietLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return outstanding_.empty() && finishing_ == 0;
  }

  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::Recommender::Stub> stub_;
  const int32_t top_k_;
  Clock* const clock_;
  absl::Mutex mu_;
  absl::flat_hash_set<Call*> outstanding_ ABSL_GUARDED_BY(mu_);
  int64_t finishing_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace helm::bench
