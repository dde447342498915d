// helm-node: one serving node — a unified EMB/KV pool, the HSTU runtime, the Recommender and Node
// gRPC services. SIGTERM/SIGINT: health NOT_SERVING, new requests refused, in-flight ones finish
// within node.grace_period_ms.
#include <cstdio>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "apps/app.h"
#include "cpu/blas_core.h"
#include "helm/common/logging.h"
#include "helm/common/process.h"
#include "helm/common/signals.h"
#include "helm/rpc/server.h"
#include "helm/serve/node_server.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  helm::kernels::cpu::ReexecWithFastBlasIfNeeded(argv);
  helm::BlockTerminationSignals();
  CLI::App cli("helm-node: a HELM serving node (unified EMB/KV pool + HSTU runtime)");
  helm::app::CommonFlags flags;
  helm::app::AddCommonFlags(cli, flags);
  std::string listen;
  std::string node_id;
  cli.add_option("--listen", listen, "host:port to serve on (overrides node.listen)");
  cli.add_option("--node-id", node_id, "node id (overrides node.id)");
  std::optional<int> metrics_port;
  cli.add_option("--metrics-port", metrics_port,
                 "/metrics port (overrides metrics.node_port; 0: off, -1: any free port)");
  helm::app::ParseFlagsOrExit(cli, argc, argv);
  const helm::config::Config config =
      helm::app::LoadConfigOrExit(flags, "helm-node", [&](helm::config::Config& c) {
        if (!listen.empty()) c.node.listen = listen;
        if (!node_id.empty()) c.node.id = node_id;
        if (metrics_port.has_value()) c.metrics.node_port = *metrics_port;
      });

  absl::StatusOr<std::unique_ptr<helm::serve::NodeServer>> node =
      helm::serve::NodeServer::Create(config);
  if (!node.ok()) {
    spdlog::error("cannot start: {}", node.status());
    return node.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  // Declared before the exporter, which renders it until it stops.
  helm::metrics::Registry registry;
  std::unique_ptr<helm::metrics::Exporter> exporter;
  if (config.metrics.node_port != 0) {
    (*node)->RegisterMetrics(&registry);
    exporter = helm::app::StartMetricsOrExit(config, config.metrics.node_port, &registry);
  }
  helm::rpc::ServerOptions server_options =
      helm::app::GrpcServerOptions(config, config.node.listen);
  server_options.services = (*node)->services();
  server_options.drainer = (*node)->drainer();
  absl::StatusOr<std::unique_ptr<helm::rpc::Server>> server =
      helm::rpc::Server::Start(server_options);
  if (!server.ok()) {
    spdlog::error("{}", server.status());
    return 1;
  }
  spdlog::info("helm-node {} serving on port {} ({}; pool {} MiB, EMB share {:.2f}; OpenBLAS {})",
               config.node.id, (*server)->port(), (*node)->engine().backend_description(),
               config.pool.bytes >> 20, config.pool.initial_split,
               helm::kernels::cpu::BlasCoreDescription());
  const helm::control::ControlOptions& control = config.control;
  const std::string layers =
      control.policy != "helm"
          ? ""
          : absl::StrCat(", base ", control.policy_path, control.adapter ? " + adapter" : "",
                         control.recovery ? " + recovery" : "");
  spdlog::info("split controller: {}{}, every {} ms{}", control.policy, layers, control.interval_ms,
               control.audit_log.empty() ? "" : "; audit log " + control.audit_log);
  std::printf("LISTENING %d\n", (*server)->port());
  std::fflush(stdout);

  const int signal = helm::WaitForTerminationSignal();
  spdlog::info("signal {}: draining (grace {} ms)", signal, config.node.grace_period_ms);
  (*node)->StartDraining();
  const int left = (*server)->Shutdown(absl::Milliseconds(config.node.grace_period_ms),
                                       [&] { (*node)->Stop(); });
  (*node)->Stop();
  if (exporter != nullptr) exporter->Stop();
  const helm::v1::NodeStats stats = (*node)->Stats();
  spdlog::info("stopped: {} ok, {} failed ({} cut off)", stats.requests_ok(),
               stats.requests_failed(), left);
  return 0;
}
