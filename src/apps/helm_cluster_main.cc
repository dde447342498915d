// helm-cluster: a local cluster on 127.0.0.1 — a router and N helm-node processes.
//
//   helm-cluster [flags]                 start, print the addresses, serve until Ctrl-C / SIGTERM
//   helm-cluster [flags] -- CMD ARGS...  start, run CMD (with {router} and {nodes} replaced by the
//                                        router's address and the nodes' comma-separated ones),
//                                        stop the cluster; exit with CMD's status
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "apps/app.h"
#include "helm/cluster/local_cluster.h"
#include "helm/common/logging.h"
#include "helm/common/process.h"
#include "helm/common/signals.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  helm::BlockTerminationSignals();
  // Everything after "--" is the command to run against the cluster.
  std::vector<std::string> command;
  int own_argc = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--") {
      own_argc = i;
      for (int j = i + 1; j < argc; ++j) command.push_back(argv[j]);
      break;
    }
  }
  CLI::App cli("helm-cluster: a local HELM cluster (router + nodes) on 127.0.0.1");
  helm::app::CommonFlags flags;
  helm::app::AddCommonFlags(cli, flags);
  int num_nodes = 0;
  std::string policy;
  bool ephemeral = false;
  std::string log_dir;
  std::string bin_dir;
  std::vector<std::string> node_args;
  cli.add_option("--nodes", num_nodes, "node processes (overrides cluster.num_nodes)");
  cli.add_option("--policy", policy, "routing policy (overrides router.policy)");
  cli.add_flag("--ephemeral-ports", ephemeral, "let every process pick a free port");
  cli.add_option("--log-dir", log_dir, "where the processes' logs go (default: a temp dir)");
  cli.add_option("--bin-dir", bin_dir, "directory of helm-node and helm-router (default: mine)");
  cli.add_option("--node-arg", node_args, "extra argument for every helm-node (repeatable)");
  helm::app::ParseFlagsOrExit(cli, own_argc, argv);
  const helm::config::Config config =
      helm::app::LoadConfigOrExit(flags, "helm-cluster", [&](helm::config::Config& c) {
        if (num_nodes > 0) c.cluster.num_nodes = num_nodes;
        if (!policy.empty()) c.router.policy = policy;
      });

  helm::cluster::LocalClusterOptions options;
  options.bin_dir = bin_dir.empty()
                        ? std::filesystem::canonical("/proc/self/exe").parent_path().string()
                        : bin_dir;
  options.config_path = flags.config_path;
  options.num_nodes = config.cluster.num_nodes;
  options.router_port = ephemeral ? 0 : config.cluster.router_port;
  options.first_node_port = ephemeral ? 0 : config.cluster.first_node_port;
  // Nodes share the config: node i serves /metrics on metrics.node_port + i (-1: each a free one).
  options.first_node_metrics_port = config.metrics.node_port;
  options.policy = config.router.policy;
  options.start_timeout = absl::Milliseconds(config.cluster.start_timeout_ms);
  options.extra_node_args = node_args;
  // The processes read the config file themselves: they take the same --set settings, so that
  // what the launcher checked is what they run.
  for (const std::string& setting : flags.settings) {
    options.extra_node_args.insert(options.extra_node_args.end(), {"--set", setting});
    options.extra_router_args.insert(options.extra_router_args.end(), {"--set", setting});
  }
  // The processes serve TLS when the config says so (they read the same grpc.tls section); the
  // launcher's health checks then connect as their clients do.
  options.security = helm::app::ClientSecurityOrExit(config);
  if (!flags.log_level.empty()) {
    options.extra_node_args.insert(options.extra_node_args.end(), {"--log-level", flags.log_level});
    options.extra_router_args.insert(options.extra_router_args.end(),
                                     {"--log-level", flags.log_level});
  }
  if (log_dir.empty()) {
    std::string pattern = (std::filesystem::temp_directory_path() / "helm-cluster-XXXXXX").string();
    log_dir = mkdtemp(pattern.data());
  }
  std::filesystem::create_directories(log_dir);
  options.log_dir = log_dir;

  spdlog::info("starting {} node(s) and a router ({} routing); logs in {}", options.num_nodes,
               options.policy, log_dir);
  absl::StatusOr<std::unique_ptr<helm::cluster::LocalCluster>> cluster =
      helm::cluster::LocalCluster::Start(options);
  if (!cluster.ok()) {
    spdlog::error("{}", cluster.status());
    return 1;
  }
  const std::string nodes = absl::StrJoin((*cluster)->node_addresses(), ",");
  spdlog::info("cluster up: router {} -> nodes {}", (*cluster)->router_address(), nodes);
  std::printf("ROUTER %s\nNODES %s\nLOGS %s\n", (*cluster)->router_address().c_str(), nodes.c_str(),
              log_dir.c_str());
  if (config.metrics.router_port > 0 || config.metrics.node_port > 0) {
    std::vector<std::string> endpoints;
    if (config.metrics.router_port > 0) {
      endpoints.push_back(absl::StrCat("router http://", config.metrics.address, ":",
                                       config.metrics.router_port, "/metrics"));
    }
    for (int i = 0; config.metrics.node_port > 0 && i < options.num_nodes; ++i) {
      endpoints.push_back(absl::StrCat("node-", i, " http://", config.metrics.address, ":",
                                       config.metrics.node_port + i, "/metrics"));
    }
    spdlog::info("metrics: {}", absl::StrJoin(endpoints, ", "));
  }
  std::fflush(stdout);

  int exit_code = 0;
  if (command.empty()) {
    const int signal = helm::WaitForTerminationSignal();
    spdlog::info("signal {}: stopping the cluster", signal);
  } else {
    helm::Subprocess::Options run;
    for (const std::string& arg : command) {
      run.argv.push_back(absl::StrReplaceAll(
          arg, {{"{router}", (*cluster)->router_address()}, {"{nodes}", nodes}}));
    }
    absl::StatusOr<std::unique_ptr<helm::Subprocess>> child = helm::Subprocess::Start(run);
    if (!child.ok()) {
      spdlog::error("cannot run {}: {}", run.argv[0], child.status());
      exit_code = 1;
    } else {
      // Ctrl-C reaches the command (same process group); wait for it however long it runs.
      std::optional<int> status;
      while (!(status = (*child)->Wait(absl::Hours(1))).has_value()) {
      }
      exit_code = helm::ExitCode(*status);
    }
  }
  const int unclean = (*cluster)->Stop(absl::Seconds(10));
  spdlog::info("cluster stopped{}", unclean == 0 ? " cleanly" : " (some processes did not exit 0)");
  return exit_code != 0 ? exit_code : (unclean == 0 ? 0 : 1);
}
