#include "helm/cluster/local_cluster.h"

#include <signal.h>
#include <sys/wait.h>

#include <deque>
#include <fstream>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "helm/common/logging.h"
#include "spdlog/spdlog.h"

namespace helm::cluster {
namespace {

// Reads the port from a process's "LISTENING <port>" line.
absl::StatusOr<int> WaitListening(Subprocess* process, const std::string& name,
                                  const std::string& log, absl::Duration timeout) {
  const std::optional<std::string> line = process->WaitForOutput("LISTENING ", timeout);
  int port = 0;
  if (!line.has_value() || !absl::SimpleAtoi(line->substr(line->find("LISTENING ") + 10), &port)) {
    return absl::UnavailableError(absl::StrCat(
        name, " did not start listening within ", absl::FormatDuration(timeout),
        process->Running() ? "" : " (it exited)", "; see ", log, ":\n", process->Output()));
  }
  return port;
}

// The last `n` lines of the file at `path` ("" when it cannot be read).
std::string LastLines(const std::string& path, int n) {
  std::ifstream in(path);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(std::move(line));
    if (static_cast<int>(lines.size()) > n) lines.pop_front();
  }
  return absl::StrJoin(lines, "\n");
}

}  // namespace

bool WaitServing(const std::string& address, absl::Duration timeout,
                 const rpc::ChannelSecurity& security) {
  auto stub = grpc::health::v1::Health::NewStub(rpc::CreateChannel(address, security));
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(std::min(deadline, absl::Now() + absl::Seconds(1))));
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status =
        stub->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
    if (status.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

std::string LocalCluster::LogPath(const std::string& process) const {
  return absl::StrCat(options_.log_dir, "/", process, ".log");
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(
    const LocalClusterOptions& options) {
  std::unique_ptr<LocalCluster> cluster(new LocalCluster());
  cluster->options_ = options;
  std::vector<std::string> common;
  if (!options.config_path.empty()) common = {"--config", options.config_path};

  // Nodes start in parallel (each builds its item table and weights), then are awaited in turn.
  for (int i = 0; i < options.num_nodes; ++i) {
    const std::string id = absl::StrCat("node-", i);
    const int port = options.first_node_port == 0 ? 0 : options.first_node_port + i;
    Subprocess::Options p;
    p.argv = {options.bin_dir + "/helm-node"};
    p.argv.insert(p.argv.end(), common.begin(), common.end());
    p.argv.insert(p.argv.end(), {"--listen", absl::StrCat("127.0.0.1:", port), "--node-id", id});
    if (options.first_node_metrics_port > 0) {
      p.argv.insert(p.argv.end(),
                    {"--metrics-port", absl::StrCat(options.first_node_metrics_port + i)});
    }
    p.argv.insert(p.argv.end(), options.extra_node_args.begin(), options.extra_node_args.end());
    p.output_path = cluster->LogPath(id);
    p.new_process_group = true;
    absl::StatusOr<std::unique_ptr<Subprocess>> child = Subprocess::Start(p);
    if (!child.ok()) return child.status();
    cluster->nodes_.push_back(*std::move(child));
  }
  for (int i = 0; i < options.num_nodes; ++i) {
    const std::string id = absl::StrCat("node-", i);
    absl::StatusOr<int> port =
        WaitListening(cluster->nodes_[i].get(), id, cluster->LogPath(id), options.start_timeout);
    if (!port.ok()) return port.status();
    const std::string address = absl::StrCat("127.0.0.1:", *port);
    if (!WaitServing(address, options.start_timeout, options.security)) {
      return absl::UnavailableError(
          absl::StrCat(id, " at ", address, " did not become SERVING; see ", cluster->LogPath(id)));
    }
    cluster->node_addresses_.push_back(address);
  }

  Subprocess::Options p;
  p.argv = {options.bin_dir + "/helm-router"};
  p.argv.insert(p.argv.end(), common.begin(), common.end());
  p.argv.insert(p.argv.end(), {"--listen", absl::StrCat("127.0.0.1:", options.router_port),
                               "--nodes", absl::StrJoin(cluster->node_addresses_, ",")});
  if (!options.policy.empty()) p.argv.insert(p.argv.end(), {"--policy", options.policy});
  p.argv.insert(p.argv.end(), options.extra_router_args.begin(), options.extra_router_args.end());
  p.output_path = cluster->LogPath("router");
  p.new_process_group = true;
  absl::StatusOr<std::unique_ptr<Subprocess>> router = Subprocess::Start(p);
  if (!router.ok()) return router.status();
  cluster->router_ = *std::move(router);
  absl::StatusOr<int> port = WaitListening(cluster->router_.get(), "router",
                                           cluster->LogPath("router"), options.start_timeout);
  if (!port.ok()) return port.status();
  cluster->router_address_ = absl::StrCat("127.0.0.1:", *port);
  if (!WaitServing(cluster->router_address_, options.start_timeout, options.security)) {
    return absl::UnavailableError(
        absl::StrCat("router did not become SERVING; see ", cluster->LogPath("router")));
  }
  return cluster;
}

LocalCluster::~LocalCluster() { Stop(absl::Seconds(5)); }

int LocalCluster::Stop(absl::Duration grace) {
  int unclean = 0;
  auto stop = [&](std::unique_ptr<Subprocess>& process, const std::string& name) {
    if (process == nullptr) return;
    process->Signal(SIGTERM);
    std::optional<int> status = process->Wait(grace);
    if (!status.has_value()) {
      spdlog::warn("{} did not exit within {}; killing it", name, absl::FormatDuration(grace));
      process->Signal(SIGKILL);
      status = process->Wait(absl::Seconds(5));
    }
    if (!status.has_value() || ExitCode(*status) != 0) {
      ++unclean;
      // Say which and how, with where its log is: a test or a user sees why at once.
      spdlog::warn("{} did not stop cleanly ({}); the end of its log {}:\n{}", name,
                   !status.has_value()    ? std::string("still running after SIGKILL")
                   : WIFSIGNALED(*status) ? absl::StrCat("killed by signal ", WTERMSIG(*status))
                                          : absl::StrCat("exit status ", ExitCode(*status)),
                   LogPath(name), LastLines(LogPath(name), 20));
    }
    process.reset();
  };
  stop(router_, "router");
  for (size_t i = 0; i < nodes_.size(); ++i) stop(nodes_[i], absl::StrCat("node-", i));
  return unclean;
}

}  // namespace helm::cluster
