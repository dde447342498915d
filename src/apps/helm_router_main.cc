// helm-router: the front router. Scores nodes by KV residency, EMB locality and load, and forwards
// each Rank request to the best one (router.policy), retrying on UNAVAILABLE.
#include <cstdio>
#include <optional>

#include "absl/time/time.h"
#include "apps/app.h"
#include "helm/common/logging.h"
#include "helm/common/process.h"
#include "helm/common/signals.h"
#include "helm/router/router.h"
#include "helm/rpc/server.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  helm::BlockTerminationSignals();
  CLI::App cli("helm-router: the HELM front router (KV residency, EMB locality and load)");
  helm::app::CommonFlags flags;
  helm::app::AddCommonFlags(cli, flags);
  std::string listen;
  std::vector<std::string> nodes;
  std::string policy;
  cli.add_option("--listen", listen, "host:port to serve on (overrides router.listen)");
  cli.add_option("--nodes", nodes, "node addresses host:port (override router.nodes)")
      ->delimiter(',');
  cli.add_option("--policy", policy, "routing policy (overrides router.policy)");
  std::optional<int> metrics_port;
  cli.add_option("--metrics-port", metrics_port,
                 "/metrics port (overrides metrics.router_port; 0: off, -1: any free port)");
  helm::app::ParseFlagsOrExit(cli, argc, argv);
  const helm::config::Config config =
      helm::app::LoadConfigOrExit(flags, "helm-router", [&](helm::config::Config& c) {
        if (!listen.empty()) c.router.listen = listen;
        if (!nodes.empty()) {
          c.router.nodes = nodes;
          c.router.dns.clear();
        }
        if (!policy.empty()) c.router.policy = policy;
        if (metrics_port.has_value()) c.metrics.router_port = *metrics_port;
      });

  absl::StatusOr<std::unique_ptr<helm::router::Router>> router =
      helm::router::Router::Create(config.router, nullptr, helm::app::ClientSecurityOrExit(config),
                                   helm::app::NodeChannelLimits(config));
  if (!router.ok()) {
    spdlog::error("{}", router.status());
    return 2;
  }
  // Declared before the exporter, which renders it until it stops.
  helm::metrics::Registry registry;
  std::unique_ptr<helm::metrics::Exporter> exporter;
  if (config.metrics.router_port != 0) {
    (*router)->RegisterMetrics(&registry);
    exporter = helm::app::StartMetricsOrExit(config, config.metrics.router_port, &registry);
  }
  helm::rpc::ServerOptions server_options =
      helm::app::GrpcServerOptions(config, config.router.listen);
  server_options.services = {(*router)->service()};
  server_options.drainer = (*router)->drainer();
  absl::StatusOr<std::unique_ptr<helm::rpc::Server>> server =
      helm::rpc::Server::Start(server_options);
  if (!server.ok()) {
    spdlog::error("{}", server.status());
    return 1;
  }
  (*router)->Start();
  spdlog::info("helm-router serving on port {}, policy {}, {} node(s) routable", (*server)->port(),
               (*router)->policy().name(), (*router)->cluster().Routable().Count());
  std::printf("LISTENING %d\n", (*server)->port());
  std::fflush(stdout);

  const int signal = helm::WaitForTerminationSignal();
  spdlog::info("signal {}: draining (grace {} ms)", signal, config.router.grace_period_ms);
  const int left = (*server)->Shutdown(absl::Milliseconds(config.router.grace_period_ms));
  (*router)->Stop();
  if (exporter != nullptr) exporter->Stop();
  const auto counters = (*router)->counters();
  spdlog::info(
      "stopped: {} requests, {} ok, {} failed, {} retries, {} attempt timeouts ({} cut off)",
      counters.requests, counters.ok, counters.failed, counters.retries, counters.attempt_timeouts,
      left);
  return 0;
}
