#include "bench/grpc_transport.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace helm::bench {
namespace {

constexpr int32_t kMaxMessageBytes = 64 << 20;

}  // namespace

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const rpc::ChannelSecurity& security) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  return rpc::CreateChannel(target, security, args);
}

std::chrono::system_clock::time_point WallDeadlineIn(int64_t delta_us) {
  return std::chrono::system_clock::now() + std::chrono::microseconds(delta_us);
}

// One Rank call: prepared ahead of its time, then in flight until OnDone, which deletes it.
class GrpcTransport::Call final : public PreparedRequest, public grpc::ClientUnaryReactor {
 public:
  Call(GrpcTransport* transport, const workload::Request& request, int32_t top_k)
      : transport_(transport) {
    request_.set_user_id(request.user_id);
    request_.mutable_history_item_ids()->Add(request.history_item_ids.begin(),
                                             request.history_item_ids.end());
    request_.mutable_history_actions()->Add(request.history_actions.begin(),
                                            request.history_actions.end());
    request_.mutable_history_timestamps_ms()->Add(request.history_timestamps_ms.begin(),
                                                  request.history_timestamps_ms.end());
    request_.mutable_candidate_item_ids()->Add(request.candidate_item_ids.begin(),
                                               request.candidate_item_ids.end());
    request_.set_top_k(top_k);
  }

  void Start(v1::Recommender::Stub* stub, int64_t timeout_us, Done done) {
    done_ = std::move(done);
    context_.set_deadline(WallDeadlineIn(timeout_us));
    stub->async()->Rank(&context_, &request_, &response_, this);
    StartCall();
  }

  void OnDone(const grpc::Status& status) override {
    Reply reply;
    reply.status =
        absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
    if (status.ok()) {
      const v1::ServingInfo& info = response_.info();
      reply.node_id = info.node_id();
      reply.info.cached_tokens = info.cached_tokens();
      reply.info.computed_tokens = info.computed_tokens();
      reply.info.emb_hits = info.emb_hits();
      reply.info.emb_misses = info.emb_misses();
      reply.info.queue_us = info.queue_us();
      reply.info.compute_us = info.compute_us();
      reply.info.batch_size = info.batch_size();
      reply.info.attempts = info.attempts();
    }
    done_(reply);
    // Out of `outstanding_` (so no CancelAll touches it), then gone with its ClientContext, then
    // counted finished: the transport and its channel cannot go while any part of the call is
    // still being torn down.
    GrpcTransport* const transport = transport_;
    transport->Detach(this);
    delete this;
    transport->Finished();
  }

  grpc::ClientContext& context() { return context_; }

 private:
  GrpcTransport* const transport_;
  Done done_;
  grpc::ClientContext context_;
  v1::RankRequest request_;
  v1::RankResponse response_;
};

absl::StatusOr<std::unique_ptr<GrpcTransport>> GrpcTransport::Connect(
    const std::string& target, int64_t connect_timeout_ms, int32_t top_k, Clock* clock,
    const rpc::ChannelSecurity& security) {
  std::shared_ptr<grpc::Channel> channel = MakeChannel(target, security);
  if (!channel->WaitForConnected(WallDeadlineIn(connect_timeout_ms * 1000))) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", target, " within ", connect_timeout_ms, " ms"));
  }
  return std::unique_ptr<GrpcTransport>(new GrpcTransport(std::move(channel), top_k, clock));
}

GrpcTransport::GrpcTransport(std::shared_ptr<grpc::Channel> channel, int32_t top_k, Clock* clock)
    : channel_(std::move(channel)),
      stub_(v1::Recommender::NewStub(channel_)),
      top_k_(top_k),
      clock_(clock) {}

GrpcTransport::~GrpcTransport() {
  CancelAll();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &GrpcTransport::QuietLocked));
}

std::unique_ptr<PreparedRequest> GrpcTransport::Prepare(const workload::Request& request) {
  return std::make_unique<Call>(this, request, top_k_);
}

void GrpcTransport::Send(std::unique_ptr<PreparedRequest> request, int64_t deadline_us, Done done) {
  // Only this transport's Prepare makes requests; from here the call owns itself.
  Call* call = static_cast<Call*>(request.release());
  {
    absl::MutexLock lock(&mu_);
    outstanding_.insert(call);
  }
  call->Start(stub_.get(), deadline_us - clock_->NowMicros(), std::move(done));
}

void GrpcTransport::CancelAll() {
  absl::MutexLock lock(&mu_);
  for (Call* call : outstanding_) call->context().TryCancel();
}

void GrpcTransport::Detach(Call* call) {
  absl::MutexLock lock(&mu_);
  outstanding_.erase(call);
  ++finishing_;
}

void GrpcTransport::Finished() {
  absl::MutexLock lock(&mu_);
  --finishing_;
}

}  // namespace helm::bench
