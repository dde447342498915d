// A local cluster: a router and N node processes on 127.0.0.1, started from build/bin and stopped
// cleanly (router first, so that it drains, then the nodes). Used by helm-cluster (make run, make
// serve, make bench-cluster) and by multi-process tests. Under TLS (grpc.tls in the config the
// processes are given) the launcher's own health checks use `security`, the credentials of a
// client of those processes.
//
// Not thread-safe: one owner starts and stops it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "helm/common/subprocess.h"
#include "helm/rpc/security.h"

namespace helm::cluster {

struct LocalClusterOptions {
  std::string bin_dir = "build/bin";
  std::string config_path;  // "" : the executables' embedded default
  int num_nodes = 2;
  // Ports: router_port and first_node_port + i; 0 lets each process pick a free port.
  int router_port = 0;
  int first_node_port = 0;
  // /metrics of node i on first_node_metrics_port + i (helm-node --metrics-port); 0: the config's
  // metrics.node_port for every node (so 0, off, when several nodes share a config).
  int first_node_metrics_port = 0;
  std::string policy;   // "" : the config's router.policy
  std::string log_dir;  // where <process>.log files go; must exist
  absl::Duration start_timeout = absl::Seconds(30);
  std::vector<std::string> extra_node_args;
  std::vector<std::string> extra_router_args;
  // How the launcher's health checks reach the processes: plaintext by default; under grpc.tls,
  // its client side (app::ClientSecurityOrExit of the same config: the CA, and under mTLS a
  // client certificate).
  rpc::ChannelSecurity security;
};

class LocalCluster {
 public:
  // Starts the nodes, waits until each answers health SERVING, then the router, and waits until it
  // does too. Unavailable (naming the process and its log) when one fails to start in time.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(const LocalClusterOptions& options);
  // Stops whatever is still running (Stop with a short grace).
  ~LocalCluster();

  const std::string& router_address() const { return router_address_; }
  const std::vector<std::string>& node_addresses() const { return node_addresses_; }
  Subprocess* node(int i) { return nodes_[i].get(); }
  Subprocess* router() { return router_.get(); }
  std::string LogPath(const std::string& process) const;

  // SIGTERM to the router, then the nodes; waits up to `grace` for each; SIGKILL after that.
  // Returns how many processes did not exit with status 0.
  int Stop(absl::Duration grace);

 private:
  LocalCluster() = default;
  LocalClusterOptions options_;
  std::vector<std::unique_ptr<Subprocess>> nodes_;
  std::unique_ptr<Subprocess> router_;
  std::vector<std::string> node_addresses_;
  std::string router_address_;
};

// Waits until grpc.health.v1 at `address` (reached with `security`) answers SERVING; false after
// `timeout`.
bool WaitServing(const std::string& address, absl::Duration timeout,
                 const rpc::ChannelSecurity& security = {});

}  // namespace helm::cluster
