// Starting a local cluster (router + nodes as processes) for the tests that link helm::cluster.
#pragma once

#include <memory>
#include <string>

#include "e2e_support.h"
#include "gtest/gtest.h"
#include "helm/cluster/local_cluster.h"

namespace helm::e2e {

// Starts `nodes` helm-node processes and a helm-router with `policy` on `config_text` (written
// into `dir`, logs there too). `security`: how the launcher reaches them (a TLS client's when the
// config sets grpc.tls). Fails the current test and returns null when it does not start.
inline std::unique_ptr<cluster::LocalCluster> StartCluster(
    const TempDir& dir, int nodes, const std::string& policy, const std::string& config_text,
    const rpc::ChannelSecurity& security = {}) {
  cluster::LocalClusterOptions options;
  options.bin_dir = BinDir();
  options.config_path = dir.Write("cluster.yaml", config_text);
  options.num_nodes = nodes;
  options.policy = policy;
  options.log_dir = dir.path();
  options.security = security;
  absl::StatusOr<std::unique_ptr<cluster::LocalCluster>> started =
      cluster::LocalCluster::Start(options);
  EXPECT_TRUE(started.ok()) << started.status();
  return started.ok() ? *std::move(started) : nullptr;
}

}  // namespace helm::e2e
