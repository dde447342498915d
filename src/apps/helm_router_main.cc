// helm-router: the front router; scores nodes and forwards Rank.
#include <cstdio>
#include <cstdlib>

#include "absl/time/time.h"
#include "apps/app.h"
#include "helm/common/logging.h"
#include "helm/common/signals.h"
#include "helm/rpc/server.h"
#include "helm/v1/recommender.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace {

// Rank answers UNIMPLEMENTED until the model runtime is wired in.
class RecommenderService final : public helm::v1::Recommender::CallbackService {
 public:
  explicit RecommenderService(helm::rpc::Drainer* drainer) : drainer_(drainer) {}
  grpc::ServerUnaryReactor* Rank(grpc::CallbackServerContext* context,
                                 const helm::v1::RankRequest*, helm::v1::RankResponse*) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    helm::rpc::Drainer::Token token = drainer_->TryEnter();
    if (!token) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "router is shutting down"));
    } else {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Rank: routing not enabled"));
    }
    return reactor;
  }

 private:
  helm::rpc::Drainer* drainer_;
};

}  // namespace

int main(int argc, char** argv) {
  helm::BlockTerminationSignals();
  CLI::App cli("helm-router: the HELM front router (KV residency, EMB locality and load)");
  helm::app::CommonFlags flags;
  helm::app::AddCommonFlags(cli, flags);
  std::string listen;
  cli.add_option("--listen", listen, "host:port to serve on (overrides router.listen)");
  helm::app::ParseFlagsOrExit(cli, argc, argv);
  helm::config::Config config =
      helm::app::LoadConfigOrExit(flags, "helm-router", [&](helm::config::Config& c) {
        if (!listen.empty()) c.router.listen = listen;
      });

  helm::rpc::ServerOptions server_options;
  server_options.listen = config.router.listen;
  helm::rpc::Drainer drainer;
  RecommenderService recommender(&drainer);
  server_options.services = {&recommender};
  server_options.drainer = &drainer;
  absl::StatusOr<std::unique_ptr<helm::rpc::Server>> server =
      helm::rpc::Server::Start(server_options);
  if (!server.ok()) {
    spdlog::error("{}", server.status());
    return 1;
  }
  spdlog::info("helm-router serving on 127.0.0.1:{}", (*server)->port());
  std::printf("LISTENING %d\n", (*server)->port());
  std::fflush(stdout);

  const int signal = helm::WaitForTerminationSignal();
  spdlog::info("signal {}: draining (grace {} ms)", signal, config.router.grace_period_ms);
  const int left = (*server)->Shutdown(absl::Milliseconds(config.router.grace_period_ms));
  spdlog::info("stopped ({} request(s) cut off)", left);
  return 0;
}
