#include "apps/app.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>

#include "helm/common/logging.h"
#include "helm/rpc/admin_auth.h"
#include "helm/rpc/limits.h"
#include "spdlog/spdlog.h"

namespace helm::app {
namespace {

rpc::TlsMaterial LoadTlsOrExit(const config::Config& config) {
  absl::StatusOr<rpc::TlsMaterial> tls = rpc::LoadTls(config.grpc.tls);
  if (!tls.ok()) {
    std::fprintf(stderr, "config error: %s\n", std::string(tls.status().message()).c_str());
    std::exit(2);
  }
  return *std::move(tls);
}

int32_t ClampToInt32(int64_t bytes) {
  return static_cast<int32_t>(std::clamp<int64_t>(bytes, 0, INT32_MAX));
}

// The largest request a server accepts.
int32_t MaxRequestBytes(const config::Config& config) {
  return ClampToInt32(
      config.grpc.max_receive_bytes > 0
          ? config.grpc.max_receive_bytes
          : rpc::MaxRankRequestBytes(config.node.max_history, config.node.max_candidates));
}

}  // namespace

void AddCommonFlags(CLI::App& cli, CommonFlags& flags) {
  cli.add_option("--config", flags.config_path,
                 "YAML config file (default: the embedded configs/local.yaml)");
  cli.add_option("--set", flags.settings,
                 "section.key=value, as if the config said so (repeatable; the value is YAML, e.g. "
                 "--set control.policy=predictive --set pool.r_max=0.9)");
  cli.add_flag("--print-config", flags.print_config,
               "print the effective config, defaults filled in, and exit");
  cli.add_option("--log-level", flags.log_level,
                 "log level: trace, debug, info, warn, error, critical, off");
}

void ParseFlagsOrExit(CLI::App& cli, int argc, char** argv) {
  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::exit(cli.exit(e));
  } catch (const CLI::CallForAllHelp& e) {
    std::exit(cli.exit(e));
  } catch (const CLI::ParseError& e) {
    cli.exit(e);
    std::exit(2);
  }
}

config::Config LoadConfigOrExit(const CommonFlags& flags, const std::string& process_name,
                                const std::function<void(config::Config&)>& override_fn) {
  absl::StatusOr<config::Config> loaded;
  if (!flags.config_path.empty()) {
    loaded = config::LoadConfigFile(flags.config_path, flags.settings);
  } else if (absl::StatusOr<std::string> text =
                 config::ApplySettings(kEmbeddedConfig, flags.settings);
             text.ok()) {
    loaded =
        config::ParseConfig(*text, flags.settings.empty() ? "<embedded local.yaml>"
                                                          : "<embedded local.yaml> with --set");
  } else {
    loaded = text.status();
  }
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s: config error: %s\n", process_name.c_str(),
                 std::string(loaded.status().message()).c_str());
    std::exit(2);
  }
  config::Config config = *std::move(loaded);
  if (!flags.log_level.empty()) config.log.level = flags.log_level;
  if (override_fn) {
    override_fn(config);
    // Flags went through the same checks as the file: re-parse the effective config.
    absl::StatusOr<config::Config> checked =
        config::ParseConfig(config::ConfigToYaml(config), "flags");
    if (!checked.ok()) {
      std::fprintf(stderr, "%s: config error: %s\n", process_name.c_str(),
                   std::string(checked.status().message()).c_str());
      std::exit(2);
    }
  }
  if (absl::Status status = InitLogging(config.log.level, process_name); !status.ok()) {
    std::fprintf(stderr, "%s: %s\n", process_name.c_str(), std::string(status.message()).c_str());
    std::exit(2);
  }
  if (flags.print_config) {
    std::fputs(config::ConfigToYaml(config).c_str(), stdout);
    std::exit(0);
  }
  // Secrets are read now so that a bad path stops the process before it opens a port.
  absl::Status secrets = rpc::LoadTls(config.grpc.tls).status();
  if (secrets.ok()) secrets = rpc::AdminAuthorizer::Create(config.grpc.admin).status();
  if (!secrets.ok()) {
    std::fprintf(stderr, "%s: config error: %s\n", process_name.c_str(),
                 std::string(secrets.message()).c_str());
    std::exit(2);
  }
  return config;
}

rpc::ServerOptions GrpcServerOptions(const config::Config& config, const std::string& listen) {
  rpc::ServerOptions options;
  options.listen = listen;
  options.max_receive_bytes = MaxRequestBytes(config);
  options.quota_memory_bytes = config.grpc.quota_memory_bytes;
  options.quota_max_threads = config.grpc.quota_max_threads;
  options.credentials = rpc::ServerCredentials(LoadTlsOrExit(config));
  return options;
}

rpc::ChannelSecurity ClientSecurityOrExit(const config::Config& config) {
  return rpc::ClientSecurity(LoadTlsOrExit(config));
}

rpc::ChannelLimits NodeChannelLimits(const config::Config& config) {
  const int64_t block_bytes = std::max<int64_t>(1, config::KvBlockBytes(config.model, config.kv));
  const int64_t max_users = std::max<int64_t>(1, config.pool.bytes / block_bytes);
  rpc::ChannelLimits limits;
  limits.max_send_bytes = MaxRequestBytes(config);
  limits.max_receive_bytes =
      ClampToInt32(std::max(rpc::MaxRankResponseBytes(config.node.max_candidates),
                            rpc::MaxNodeStateBytes(max_users, config.node.emb_summary_bits)));
  return limits;
}

std::unique_ptr<metrics::Exporter> StartMetricsOrExit(const config::Config& config, int port,
                                                      const metrics::Registry* registry) {
  if (port == 0) return nullptr;
  metrics::ExporterOptions options;
  options.address = config.metrics.address;
  options.port = port < 0 ? 0 : port;
  absl::StatusOr<std::unique_ptr<metrics::Exporter>> exporter =
      metrics::Exporter::Start(options, registry);
  if (!exporter.ok()) {
    spdlog::error("{}", exporter.status().ToString());
    std::exit(1);
  }
  spdlog::info("metrics on http://{}:{}/metrics", options.address, (*exporter)->port());
  std::printf("METRICS %d\n", (*exporter)->port());
  std::fflush(stdout);
  return *std::move(exporter);
}

}  // namespace helm::app
