// Start-up shared by HELM's executables: flags (CLI11), the config file (or the embedded default),
// logging. Config and flag errors print what is wrong and exit with status 2 before any port opens.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "helm/config/config.h"
#include "helm/metrics/exporter.h"
#include "helm/metrics/registry.h"
#include "helm/rpc/limits.h"
#include "helm/rpc/security.h"
#include "helm/rpc/server.h"

namespace helm::app {

// The embedded default config (configs/local.yaml, compiled in).
extern const char* const kEmbeddedConfig;

struct CommonFlags {
  std::string config_path;  // "" : the embedded default
  bool print_config = false;
  std::string log_level;  // "" : the config's log.level
  // --set section.key=value, repeatable: applied to the config's text (config::ApplySettings).
  std::vector<std::string> settings;
};

// Adds --config, --set, --print-config and --log-level to `cli`.
void AddCommonFlags(CLI::App& cli, CommonFlags& flags);

// Parses argv; on --help prints usage and exits 0; on a bad flag prints it and exits 2.
void ParseFlagsOrExit(CLI::App& cli, int argc, char** argv);

// Loads the config named by the flags (or the embedded default), applies `override_fn` (flags that
// override config keys), re-validates, initialises logging, handles --print-config (prints and
// exits 0), and reads the files grpc.tls and grpc.admin name (a file that cannot be read is a
// config error naming its key). Any error: message on stderr, exit status 2.
config::Config LoadConfigOrExit(const CommonFlags& flags, const std::string& process_name,
                                const std::function<void(config::Config&)>& override_fn = {});

// The gRPC server options of `config` for a server on `listen`: the largest request accepted
// (grpc.max_receive_bytes, or rpc::MaxRankRequestBytes of the node's request limits when 0) and
// the ResourceQuota (grpc.quota_memory_bytes, grpc.quota_max_threads) and the port's credentials
// (grpc.tls: TLS, mTLS; plaintext when off). Services and drainer are the caller's. A TLS file
// that cannot be read: message on stderr, exit status 2.
rpc::ServerOptions GrpcServerOptions(const config::Config& config, const std::string& listen);

// The security of the process's own client channels (router -> node, helm-bench -> router) under
// grpc.tls: plaintext when TLS is off. A TLS file that cannot be read: exit status 2.
rpc::ChannelSecurity ClientSecurityOrExit(const config::Config& config);

// Message size bounds of the router's channels to its nodes, from the same limits the servers
// use: send the largest request a server accepts (as GrpcServerOptions: grpc.max_receive_bytes, or
// the request bound of node.max_history / max_candidates); receive the larger of the largest
// reply (rpc::MaxRankResponseBytes of node.max_candidates) and the largest state stream message
// (rpc::MaxNodeStateBytes of node.emb_summary_bits and the users a node's KV cache can hold: one
// KV block each at least, pool.bytes / the block size). Each clamped to INT32_MAX.
rpc::ChannelLimits NodeChannelLimits(const config::Config& config);

// Starts the /metrics endpoint for `registry` on metrics.address:`port` (the config's meaning:
// 0 off, then null is returned; -1 any free port), logs its address and prints "METRICS <port>".
// Cannot bind: logs and exits with status 1.
std::unique_ptr<metrics::Exporter> StartMetricsOrExit(const config::Config& config, int port,
                                                      const metrics::Registry* registry);

}  // namespace helm::app
