// helm-node's split controller as a real process over real gRPC on 127.0.0.1: the control thread's
// decisions, GetControl / SetControlFrozen (and helm-ctl control status|freeze|resume), the freeze
// by a SetSplit, the admin refusal without credentials, and the audit log's lines.
#include <chrono>
#include <fstream>
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "e2e_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "helm/v1/node.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace helm::e2e {
namespace {

using ::testing::HasSubstr;

constexpr char kToken[] = "control-test-token";
constexpr int kIntervalMs = 100;

std::string ControlConfig(const std::string& audit_log, const std::string& token_file) {
  return absl::StrCat(
      ClusterConfig(), "control:\n  policy: heuristic\n  interval_ms: ", kIntervalMs,
      "\n  audit_log: ", audit_log, "\ngrpc:\n  admin:\n    token_file: ", token_file, "\n");
}

// Waits (polling, 20 s at most) until `done` holds; false on timeout.
bool Eventually(const std::function<bool()>& done) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

struct Finished {
  int exit_code = -1;
  std::string output;
};

Finished RunToEnd(const std::string& program, const std::vector<std::string>& args,
                  const TempDir& dir, const std::string& log_name) {
  Subprocess::Options options;
  options.argv = {BinDir() + "/" + program};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.output_path = dir.path() + "/" + log_name;
  auto child = Subprocess::Start(options);
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return {};
  const std::optional<int> status = (*child)->Wait(absl::Seconds(30));
  EXPECT_TRUE(status.has_value()) << program << " did not exit";
  return {status.has_value() ? ExitCode(*status) : -1, (*child)->Output()};
}

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    audit_path_ = dir_.path() + "/audit.jsonl";
    token_path_ = dir_.Write("token", std::string(kToken) + "\n");
    const std::string config = dir_.Write("node.yaml", ControlConfig(audit_path_, token_path_));
    node_ =
        StartServer("helm-node", {"--config", config, "--listen", "127.0.0.1:0"}, dir_, "node.log");
    ASSERT_GT(node_.port, 0);
    stub_ = v1::Node::NewStub(Connect(node_.address()));
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "") {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
    return context;
  }
  v1::ControlStatus Status() {
    v1::ControlStatus status;
    const grpc::Status rpc = stub_->GetControl(Context().get(), v1::GetControlRequest(), &status);
    EXPECT_TRUE(rpc.ok()) << rpc.error_message();
    return status;
  }
  grpc::Status SetFrozen(bool frozen, const std::string& token, v1::ControlStatus* out = nullptr) {
    v1::SetControlFrozenRequest request;
    request.set_frozen(frozen);
    v1::ControlStatus response;
    const grpc::Status status = stub_->SetControlFrozen(Context(token).get(), request, &response);
    if (out != nullptr) *out = response;
    return status;
  }
  grpc::Status SetSplit(double share, const std::string& token,
                        v1::SetSplitResponse* out = nullptr) {
    v1::SetSplitRequest request;
    request.set_emb_share(share);
    v1::SetSplitResponse response;
    const grpc::Status status = stub_->SetSplit(Context(token).get(), request, &response);
    if (out != nullptr) *out = response;
    return status;
  }
  // Waits until the controller has made `more` decisions beyond `from`.
  bool DecidesAgain(int64_t from, int64_t more = 2) {
    return Eventually([&] { return Status().decisions() >= from + more; });
  }

  TempDir dir_;
  std::string audit_path_;
  std::string token_path_;
  Server node_;
  std::unique_ptr<v1::Node::Stub> stub_;
};

TEST_F(ControlTest, StatusShowsTheControllerDecidingEveryInterval) {
  const v1::ControlStatus first = Status();
  EXPECT_EQ(first.policy(), "heuristic");
  EXPECT_EQ(first.mode(), "heuristic");
  EXPECT_FALSE(first.frozen());
  EXPECT_EQ(first.interval_ms(), kIntervalMs);
  EXPECT_NEAR(first.target_split(), 0.5, 1e-9);
  ASSERT_TRUE(DecidesAgain(first.decisions(), 3));
  // GetStats and the state stream carry the same status.
  v1::NodeStats stats;
  ASSERT_TRUE(stub_->GetStats(Context().get(), v1::GetStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.control().policy(), "heuristic");
  EXPECT_GE(stats.control().decisions(), first.decisions() + 3);
  auto context = Context();
  auto stream = stub_->WatchState(context.get(), v1::WatchStateRequest());
  v1::NodeState state;
  ASSERT_TRUE(stream->Read(&state));
  EXPECT_EQ(state.control().policy(), "heuristic");
  EXPECT_EQ(state.control().mode(), "heuristic");
  EXPECT_FALSE(state.control().frozen());
  context->TryCancel();
}

TEST_F(ControlTest, AdminCallsWithoutValidCredentialsAreRefusedAndChangeNothing) {
  const v1::ControlStatus before = Status();
  EXPECT_EQ(SetFrozen(true, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(SetFrozen(true, "wrong-token").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(SetSplit(0.3, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(SetSplit(0.3, "wrong-token").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  const v1::ControlStatus after = Status();
  EXPECT_FALSE(after.frozen());
  EXPECT_NEAR(after.target_split(), before.target_split(), 1e-9);
  // Still deciding: nothing froze it.
  EXPECT_TRUE(DecidesAgain(after.decisions()));
  // Reading the status needs no credentials.
  const Finished ctl = RunToEnd("helm-ctl", {"control", "status", "--target", node_.address()},
                                dir_, "ctl-status.log");
  EXPECT_EQ(ctl.exit_code, 0) << ctl.output;
  EXPECT_THAT(ctl.output, HasSubstr("\"policy\": \"heuristic\""));
  EXPECT_THAT(ctl.output, HasSubstr("\"frozen\": false"));
  // helm-ctl control freeze without a token: refused, exit status 1, the code named.
  const Finished refused = RunToEnd("helm-ctl", {"control", "freeze", "--target", node_.address()},
                                    dir_, "ctl-refused.log");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.output, HasSubstr("control freeze: 16 "));  // UNAUTHENTICATED
  EXPECT_FALSE(Status().frozen());
}

TEST_F(ControlTest, FreezeStopsDecisionsUntilResume) {
  // Through helm-ctl with the token: frozen.
  const Finished frozen = RunToEnd(
      "helm-ctl", {"control", "freeze", "--target", node_.address(), "--token-file", token_path_},
      dir_, "ctl-freeze.log");
  ASSERT_EQ(frozen.exit_code, 0) << frozen.output;
  EXPECT_THAT(frozen.output, HasSubstr("\"frozen\": true"));
  const v1::ControlStatus held = Status();
  EXPECT_TRUE(held.frozen());
  // No decision while frozen: the control thread runs every 100 ms, so ten intervals without one
  // mean it held. (Waiting for something not to happen needs a wait.)
  std::this_thread::sleep_for(std::chrono::milliseconds(10 * kIntervalMs));
  EXPECT_EQ(Status().decisions(), held.decisions());
  // Resumed (by gRPC this time): decisions go on.
  v1::ControlStatus resumed;
  ASSERT_TRUE(SetFrozen(false, kToken, &resumed).ok());
  EXPECT_FALSE(resumed.frozen());
  EXPECT_TRUE(DecidesAgain(held.decisions()));
}

TEST_F(ControlTest, AManualSetSplitFreezesTheControllerUntilResumed) {
  v1::SetSplitResponse set;
  ASSERT_TRUE(SetSplit(0.3, kToken, &set).ok());
  EXPECT_TRUE(set.control_frozen());
  EXPECT_NEAR(set.target_split(), 0.3, 1e-9);
  const v1::ControlStatus held = Status();
  EXPECT_TRUE(held.frozen());
  EXPECT_NEAR(held.target_split(), 0.3, 1e-9);
  // The operator's split holds: the controller decides nothing over it.
  std::this_thread::sleep_for(std::chrono::milliseconds(10 * kIntervalMs));
  const v1::ControlStatus later = Status();
  EXPECT_EQ(later.decisions(), held.decisions());
  EXPECT_NEAR(later.target_split(), 0.3, 1e-9);
  // helm-ctl control resume: the controller decides again.
  const Finished resumed = RunToEnd(
      "helm-ctl", {"control", "resume", "--target", node_.address(), "--token-file", token_path_},
      dir_, "ctl-resume.log");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("\"frozen\": false"));
  EXPECT_TRUE(DecidesAgain(held.decisions()));
}

TEST_F(ControlTest, TheAuditLogHasOneJsonLinePerDecision) {
  ASSERT_TRUE(DecidesAgain(0, 3));
  v1::ControlStatus frozen;
  ASSERT_TRUE(SetFrozen(true, kToken, &frozen).ok());
  // The line of the last decision is written right after it is counted.
  std::vector<std::string> lines;
  ASSERT_TRUE(Eventually([&] {
    lines = ReadLines(audit_path_);
    return static_cast<int64_t>(lines.size()) >= frozen.decisions();
  })) << lines.size()
      << " lines for " << frozen.decisions() << " decisions";
  EXPECT_EQ(static_cast<int64_t>(lines.size()), frozen.decisions());
  int64_t last_time_ms = 0;
  for (const std::string& text : lines) {
    const nlohmann::json line = nlohmann::json::parse(text, nullptr, false);
    ASSERT_TRUE(line.is_object()) << text;
    EXPECT_EQ(line.value("node", ""), "node-0") << text;
    EXPECT_EQ(line.value("policy", ""), "heuristic") << text;
    EXPECT_EQ(line.value("mode", ""), "heuristic") << text;
    ASSERT_TRUE(line.contains("time_ms") && line["time_ms"].is_number_integer()) << text;
    EXPECT_GE(line["time_ms"].get<int64_t>(), last_time_ms) << text;
    last_time_ms = line["time_ms"].get<int64_t>();
    ASSERT_TRUE(line.contains("old_target") && line.contains("new_target")) << text;
    EXPECT_GE(line["new_target"].get<double>(), 0.0);
    EXPECT_LE(line["new_target"].get<double>(), 1.0);
    // The heuristic keeps no decision record: the window's key figures stand in for it.
    ASSERT_TRUE(line.contains("window") || line.contains("decision")) << text;
    if (line.contains("window")) {
      const nlohmann::json& w = line["window"];
      EXPECT_TRUE(w.contains("p99_us") && w.contains("answers") && w.contains("committed_split"))
          << text;
      EXPECT_GT(w.value("seconds", 0.0), 0.0) << text;
    }
  }
}

TEST(ControlConfig, AnAuditLogThatCannotBeOpenedStopsTheNodeNamingTheKey) {
  TempDir dir;
  const std::string config = dir.Write(
      "bad.yaml", "control:\n  policy: heuristic\n  audit_log: /nonexistent-dir/audit.jsonl\n");
  const Finished run =
      RunToEnd("helm-node", {"--config", config, "--listen", "127.0.0.1:0"}, dir, "node.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("control.audit_log"));
  EXPECT_THAT(run.output, HasSubstr("/nonexistent-dir/audit.jsonl"));
  EXPECT_THAT(run.output, ::testing::Not(HasSubstr("LISTENING")));
}

}  // namespace
}  // namespace helm::e2e
