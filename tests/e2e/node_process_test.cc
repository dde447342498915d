// helm-node and helm-router as real processes: start on the embedded default, health, reflection,
// config errors (exit status 2 before any port opens), SIGTERM shutdown.
#include <signal.h>

#include "e2e_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace helm::e2e {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

struct Finished {
  int exit_code = -1;
  std::string output;
};

// Runs a program to completion (30 s at most).
Finished RunToEnd(const std::string& program, const std::vector<std::string>& args,
                  const TempDir& dir) {
  Subprocess::Options options;
  options.argv = {BinDir() + "/" + program};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.output_path = dir.path() + "/run.log";
  auto child = Subprocess::Start(options);
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return {};
  const std::optional<int> status = (*child)->Wait(absl::Seconds(30));
  EXPECT_TRUE(status.has_value()) << program << " did not exit";
  return {status.has_value() ? ExitCode(*status) : -1, (*child)->Output()};
}

class ServerProcess : public ::testing::TestWithParam<const char*> {};

TEST_P(ServerProcess, ServesHealthAndReflectionThenStopsOnSigterm) {
  TempDir dir;
  Server server = StartServer(GetParam(), {"--listen", "127.0.0.1:0"}, dir, "server.log");
  ASSERT_GT(server.port, 0);
  auto channel = Connect(server.address());
  EXPECT_EQ(HealthStatus(channel), "SERVING");
  const std::vector<std::string> services = ReflectedServices(channel);
  EXPECT_THAT(services, Contains("helm.v1.Recommender"));
  EXPECT_THAT(services, Contains("grpc.health.v1.Health"));

  server.process->Signal(SIGTERM);
  const std::optional<int> status = server.process->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.has_value()) << "no exit after SIGTERM";
  EXPECT_EQ(ExitCode(*status), 0) << server.process->Output();
}

TEST_P(ServerProcess, UnknownConfigKeyExitsWithStatus2NamingTheKey) {
  TempDir dir;
  const std::string config = dir.Write("bad.yaml", "pool:\n  chunk_bites: 1MiB\n");
  const Finished run = RunToEnd(GetParam(), {"--config", config}, dir);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("unknown key 'pool.chunk_bites'"));
  EXPECT_THAT(run.output, ::testing::Not(HasSubstr("LISTENING")));
}

TEST_P(ServerProcess, OutOfRangeValueExitsWithStatus2NamingKeyAndRange) {
  TempDir dir;
  const std::string config = dir.Write("bad.yaml", "node:\n  workers: 0\n");
  const Finished run = RunToEnd(GetParam(), {"--config", config}, dir);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("node.workers: must be in [1, 256], got 0"));
}

TEST_P(ServerProcess, PrintConfigShowsEveryKeyWithDefaults) {
  TempDir dir;
  const Finished run = RunToEnd(GetParam(), {"--print-config"}, dir);
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("chunk_bytes: "));
  EXPECT_THAT(run.output, HasSubstr("policy: \"helm\""));
}

INSTANTIATE_TEST_SUITE_P(Binaries, ServerProcess, ::testing::Values("helm-node", "helm-router"),
                         [](const auto& info) {
                           return std::string(info.param) == "helm-node" ? "Node" : "Router";
                         });

}  // namespace
}  // namespace helm::e2e
