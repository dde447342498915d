// A local cluster (helm-router and two helm-node processes on 127.0.0.1) under mTLS from the
// config's grpc.tls section, with throw-away certificates made by openssl at test time: every
// gRPC port speaks TLS and asks for a client certificate signed by the test CA, the router reaches
// the nodes with the processes' shared certificate, and load from the load generator goes through
// it. Every request must end OK, and clients without TLS or without a certificate are refused.
// The second test runs the executables users run, `helm-cluster --config tls.yaml -- helm-bench
// --config tls.yaml ...`, which take their TLS from the same config.
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/load_generator.h"
#include "cluster_support.h"
#include "e2e_support.h"
#include "gtest/gtest.h"
#include "helm/cluster/local_cluster.h"
#include "helm/common/subprocess.h"
#include "helm/rpc/security.h"
#include "helm/workload/generator.h"
#include "nlohmann/json.hpp"

namespace helm::e2e {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The client side of the test certificates: the CA verifies the servers; `cert` (a name of
// MakeTestCertificates, "" for none) is presented.
rpc::ChannelSecurity ClientOf(const TempDir& dir, const std::string& ca,
                              const std::string& cert = "") {
  const std::string d = dir.path() + "/";
  return rpc::ClientSecurity(ReadFile(d + ca + ".pem"),
                             cert.empty() ? "" : ReadFile(d + cert + ".pem"),
                             cert.empty() ? "" : ReadFile(d + cert + ".key"));
}

workload::WorkloadOptions SmallWorkload(double rate_per_s, double duration_s) {
  workload::WorkloadOptions workload;
  workload.profile = "movielens-20m";
  workload.regime = "steady";
  workload.rate_per_s = rate_per_s;
  workload.duration_s = duration_s;
  workload.candidates = 32;
  workload.max_items = kNumItems;
  workload.max_history = 256;
  workload.max_users = 200;
  workload.seed = static_cast<uint64_t>(::testing::UnitTest::GetInstance()->random_seed());
  workload.slo_ms = 1000;
  return workload;
}

TEST(ClusterTls, LoadThroughAnMtlsClusterAllSucceedsAndClientsWithoutCertificatesAreRefused) {
  TempDir dir;
  const std::string certs = MakeTestCertificates(dir);
  ASSERT_EQ(certs, "");
  const rpc::ChannelSecurity client = ClientOf(dir, "ca", "client");
  std::unique_ptr<cluster::LocalCluster> local = StartCluster(
      dir, 2, "helm", ClusterConfig() + TlsSection(dir, /*require_client_cert=*/true), client);
  ASSERT_NE(local, nullptr);
  const std::string router = local->router_address();

  // TLS is really on, and mTLS: plaintext, a client without a certificate, and one that trusts
  // another CA are refused at the handshake; the test CA's client gets in.
  EXPECT_NE(HealthStatus(Connect(router)), "SERVING");
  EXPECT_NE(HealthStatus(rpc::CreateChannel(router, ClientOf(dir, "ca"))), "SERVING");
  EXPECT_NE(HealthStatus(rpc::CreateChannel(router, ClientOf(dir, "other_ca", "client"))),
            "SERVING");
  EXPECT_EQ(HealthStatus(rpc::CreateChannel(router, client)), "SERVING");
  for (const std::string& node : local->node_addresses()) {
    EXPECT_NE(HealthStatus(rpc::CreateChannel(node, ClientOf(dir, "ca"))), "SERVING") << node;
    EXPECT_EQ(HealthStatus(rpc::CreateChannel(node, client)), "SERVING") << node;
  }

  const workload::WorkloadOptions workload = SmallWorkload(20, 5);
  auto generator = workload::Generator::Create(workload);
  ASSERT_TRUE(generator.ok()) << generator.status();
  bench::LoadOptions load;
  load.target = router;
  load.nodes = local->node_addresses();  // GetStats over mTLS too
  load.deadline_ms = 5000;
  load.security = client;
  auto loader = bench::LoadGenerator::Create(load, *std::move(generator));
  ASSERT_TRUE(loader.ok()) << loader.status();
  absl::StatusOr<bench::RunResult> run = (*loader)->Run();
  ASSERT_TRUE(run.ok()) << run.status();

  int64_t ok = 0;
  for (const bench::Completion& c : run->completions) {
    EXPECT_EQ(c.code, grpc::StatusCode::OK)
        << "scheduled at " << c.scheduled_us << " us: " << run->first_error[c.code];
    ok += c.code == grpc::StatusCode::OK;
  }
  const int64_t sent = static_cast<int64_t>(run->completions.size());
  int64_t polls_ok = 0;
  for (const bench::NodeSample& sample : run->samples) {
    EXPECT_TRUE(sample.ok) << sample.error;
    polls_ok += sample.ok;
  }
  std::printf("mTLS cluster: sent %lld, OK %lld, failed %lld; %lld GetStats polls OK\n",
              static_cast<long long>(sent), static_cast<long long>(ok),
              static_cast<long long>(sent - ok), static_cast<long long>(polls_ok));
  // Poisson arrivals: 100 expected, standard deviation 10.
  EXPECT_GE(sent, 60);
  EXPECT_GT(polls_ok, 0);
  // Both nodes served: the router reached each over mTLS.
  EXPECT_EQ(run->node_ids.size(), 2u);
  EXPECT_EQ(local->Stop(absl::Seconds(10)), 0);
}

TEST(ClusterTls, HelmClusterAndHelmBenchTakeMtlsFromTheConfig) {
  TempDir dir;
  const std::string certs = MakeTestCertificates(dir);
  ASSERT_EQ(certs, "");
  const std::string config =
      dir.Write("tls.yaml", ClusterConfig() + TlsSection(dir, /*require_client_cert=*/true));
  Subprocess::Options options;
  options.argv = {BinDir() + "/helm-cluster",
                  "--config",
                  config,
                  "--ephemeral-ports",
                  "--log-dir",
                  dir.path(),
                  "--",
                  BinDir() + "/helm-bench",
                  "--config",
                  config,
                  "--target",
                  "{router}",
                  "--nodes",
                  "{nodes}",
                  "--profile",
                  "movielens-20m",
                  "--regime",
                  "steady",
                  "--rate",
                  "20",
                  "--duration",
                  "4",
                  "--max-users",
                  "200",
                  "--max-history",
                  "256",
                  "--candidates",
                  "32",
                  "--deadline-ms",
                  "5000",
                  "--no-plot",
                  "--no-progress",
                  "--out",
                  dir.path() + "/bench"};
  options.output_path = dir.path() + "/helm-cluster.out";
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(options);
  ASSERT_TRUE(process.ok()) << process.status();
  const std::optional<int> status = (*process)->Wait(absl::Seconds(120));
  ASSERT_TRUE(status.has_value()) << "helm-cluster still running; output:\n"
                                  << (*process)->Output();
  // helm-cluster exits with helm-bench's status, and 1 when a process did not stop cleanly.
  ASSERT_EQ(ExitCode(*status), 0) << (*process)->Output();

  const nlohmann::json summary =
      nlohmann::json::parse(ReadFile(dir.path() + "/bench/summary.json"), nullptr, false);
  ASSERT_FALSE(summary.is_discarded()) << "no summary.json; output:\n" << (*process)->Output();
  const nlohmann::json& overall = summary["overall"];
  const int64_t sent = overall["sent"].get<int64_t>();
  const int64_t ok = overall["ok"].get<int64_t>();
  std::printf("helm-cluster + helm-bench under mTLS: sent %lld, OK %lld, errors %lld\n",
              static_cast<long long>(sent), static_cast<long long>(ok),
              static_cast<long long>(overall["errors"].get<int64_t>()));
  EXPECT_GE(sent, 40);  // Poisson at 20/s for 4 s: 80 expected, standard deviation 9
  EXPECT_EQ(ok, sent) << overall.dump();
  EXPECT_EQ(overall["errors"].get<int64_t>(), 0);
  EXPECT_EQ(overall["dropped"].get<int64_t>(), 0);
  // helm-bench polled both nodes' GetStats over mTLS without an error.
  EXPECT_TRUE(summary["poll_errors"].empty()) << summary["poll_errors"].dump();
  EXPECT_EQ(summary["node_ids"].size(), 2u) << summary["node_ids"].dump();
  // requests.csv: one row per request, each OK reply's serving info from the node (its compute
  // time and the one attempt the router needed).
  std::istringstream requests(ReadFile(dir.path() + "/bench/requests.csv"));
  std::string line;
  std::getline(requests, line);
  EXPECT_EQ(
      line.rfind("seq,scheduled_ms,phase,code,node,send_lag_us,latency_us,queue_us,compute_us,", 0),
      0u)
      << line;
  int64_t rows = 0, timed = 0;
  while (std::getline(requests, line)) {
    ++rows;
    const std::vector<std::string> f = absl::StrSplit(line, ',');
    ASSERT_EQ(f.size(), 15u) << line;
    if (f[3] == "0" && std::stoll(f[8]) > 0 && std::stoll(f[8]) <= std::stoll(f[6]) &&
        f[10] == "1") {
      ++timed;
    }
  }
  EXPECT_EQ(rows, overall["scheduled"].get<int64_t>());
  EXPECT_EQ(timed, ok);
}

}  // namespace
}  // namespace helm::e2e
