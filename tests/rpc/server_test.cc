#include "helm/rpc/server.h"

#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "helm/v1/recommender.grpc.pb.h"

namespace helm::rpc {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// A Recommender whose Rank holds each call until `release` is notified: an in-flight request
// under the test's control. It refuses new calls once the drainer drains, as real handlers do.
class HoldingRecommender final : public helm::v1::Recommender::CallbackService {
 public:
  explicit HoldingRecommender(Drainer* drainer) : drainer_(drainer) {}
  ~HoldingRecommender() override {
    Release();
    for (auto& t : threads_) t.join();
  }

  grpc::ServerUnaryReactor* Rank(grpc::CallbackServerContext* context,
                                 const helm::v1::RankRequest* request,
                                 helm::v1::RankResponse* response) override {
    Drainer::Token token = drainer_->TryEnter();
    if (!token) {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "draining"));
      return reactor;
    }
    grpc::ServerUnaryReactor* reactor = new DrainingReactor(std::move(token));
    started_.Notify();
    threads_.emplace_back([this, reactor, request, response] {
      release_.WaitForNotification();
      response->set_request_id(request->request_id());
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  void WaitStarted() { started_.WaitForNotification(); }
  void Release() {
    if (!release_.HasBeenNotified()) release_.Notify();
  }

 private:
  Drainer* drainer_;
  absl::Notification started_;
  absl::Notification release_;
  std::vector<std::thread> threads_;
};

struct Fixture {
  Drainer drainer;
  HoldingRecommender service{&drainer};
  std::unique_ptr<Server> server;
  std::shared_ptr<grpc::Channel> channel;

  Fixture() {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.services = {&service};
    options.drainer = &drainer;
    absl::StatusOr<std::unique_ptr<Server>> started = Server::Start(options);
    EXPECT_TRUE(started.ok()) << started.status();
    server = *std::move(started);
    channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server->port()),
                                  grpc::InsecureChannelCredentials());
  }

  HealthCheckResponse::ServingStatus Health() {
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    HealthCheckRequest request;
    HealthCheckResponse response;
    const grpc::Status status = stub->Check(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.status();
  }
};

TEST(Server, ServesHealthOnAnEphemeralPort) {
  Fixture f;
  EXPECT_GT(f.server->port(), 0);
  EXPECT_EQ(f.Health(), HealthCheckResponse::SERVING);
  f.server->SetServing(false);
  EXPECT_EQ(f.Health(), HealthCheckResponse::NOT_SERVING);
}

TEST(Server, AnAddressThatCannotBeBoundIsUnavailable) {
  // gRPC shares busy ports (SO_REUSEPORT); an address that cannot be bound is a certain failure.
  ServerOptions options;
  options.listen = "192.0.2.1:1";  // TEST-NET-1: not an address of this machine
  absl::StatusOr<std::unique_ptr<Server>> second = Server::Start(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

// SIGTERM path: health goes NOT_SERVING, new requests are refused, the in-flight one finishes.
TEST(Server, GracefulShutdownLetsInFlightRequestFinish) {
  Fixture f;
  auto stub = helm::v1::Recommender::NewStub(f.channel);
  grpc::ClientContext in_flight_context;
  helm::v1::RankRequest request;
  request.set_request_id("in-flight");
  helm::v1::RankResponse response;
  absl::Notification done;
  grpc::Status in_flight_status;
  stub->async()->Rank(&in_flight_context, &request, &response, [&](grpc::Status s) {
    in_flight_status = std::move(s);
    done.Notify();
  });
  f.service.WaitStarted();
  ASSERT_EQ(f.drainer.in_flight(), 1);

  int cut_off = -1;
  std::thread shutdown([&] { cut_off = f.server->Shutdown(absl::Seconds(30)); });
  while (!f.drainer.draining()) std::this_thread::yield();

  EXPECT_EQ(f.Health(), HealthCheckResponse::NOT_SERVING);
  grpc::ClientContext refused_context;
  helm::v1::RankResponse refused_response;
  const grpc::Status refused = stub->Rank(&refused_context, request, &refused_response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(done.HasBeenNotified());

  f.service.Release();
  done.WaitForNotification();
  shutdown.join();
  EXPECT_TRUE(in_flight_status.ok()) << in_flight_status.error_message();
  EXPECT_EQ(response.request_id(), "in-flight");
  EXPECT_EQ(cut_off, 0);
}

TEST(Server, ShutdownCutsOffRequestsThatOutliveTheGracePeriod) {
  Fixture f;
  auto stub = helm::v1::Recommender::NewStub(f.channel);
  grpc::ClientContext context;
  helm::v1::RankRequest request;
  helm::v1::RankResponse response;
  absl::Notification done;
  stub->async()->Rank(&context, &request, &response, [&](grpc::Status) { done.Notify(); });
  f.service.WaitStarted();
  bool cut_off_called = false;
  EXPECT_EQ(f.server->Shutdown(absl::Milliseconds(50),
                               [&] {
                                 cut_off_called = true;
                                 f.service.Release();
                               }),
            1);
  EXPECT_TRUE(cut_off_called);
  done.WaitForNotification();
}

TEST(Drainer, RefusesAfterDrainingAndCountsTokens) {
  Drainer drainer;
  Drainer::Token a = drainer.TryEnter();
  Drainer::Token b = drainer.TryEnter();
  EXPECT_TRUE(a);
  EXPECT_EQ(drainer.in_flight(), 2);
  Drainer::Token moved = std::move(a);
  EXPECT_FALSE(a);
  EXPECT_EQ(drainer.in_flight(), 2);
  drainer.StartDraining();
  EXPECT_FALSE(drainer.TryEnter());
  EXPECT_FALSE(drainer.WaitIdle(absl::Milliseconds(1)));
  moved.Release();
  b.Release();
  EXPECT_EQ(drainer.in_flight(), 0);
  EXPECT_TRUE(drainer.WaitIdle(absl::ZeroDuration()));
}

}  // namespace
}  // namespace helm::rpc
