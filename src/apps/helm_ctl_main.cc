// helm-ctl: a small admin client for HELM servers.
//   helm-ctl health    --target HOST:PORT [--wait-ms N]  health of a node or the router
//   helm-ctl stats     --target HOST:PORT                a node's counters (Node/GetStats)
//   helm-ctl set-split --target HOST:PORT --emb-share R  move a node's EMB:KV split (and freeze
//                                                     its split controller until resumed)
//   helm-ctl drain     --target HOST:PORT                stop admitting new requests
//   helm-ctl control status|freeze|resume --target HOST:PORT
//                      a node's split controller: its status (policy, mode, frozen, decisions,
//                      reversals, splits); freeze it (it decides nothing until resumed); resume it
// TLS: --tls (server verified with --ca, or the system roots), --cert/--key for mTLS, --server-name
// to check another name than the target's host. Admin calls (set-split, drain, control freeze and
// control resume) authenticate with the client certificate or --token-file (sent as
// `authorization: Bearer <token>`).
// Exit status: 0 on success (health: SERVING), 1 on an RPC error or not serving, 2 on bad flags
// (or a file that cannot be read).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "helm/common/process.h"
#include "helm/rpc/security.h"
#include "helm/v1/node.grpc.pb.h"

namespace {

std::chrono::system_clock::time_point Deadline(int ms) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
}

int Fail(const char* what, const grpc::Status& status) {
  std::fprintf(stderr, "helm-ctl %s: %d %s\n", what, static_cast<int>(status.error_code()),
               status.error_message().c_str());
  return 1;
}

// The content of `path` (""  when the path is empty); exits 2 naming the flag when unreadable.
std::string ReadOrExit(const char* flag, const std::string& path) {
  if (path.empty()) return "";
  absl::StatusOr<std::string> content = helm::rpc::ReadSecretFile(flag, path);
  if (!content.ok()) {
    std::fprintf(stderr, "helm-ctl: %s\n", std::string(content.status().message()).c_str());
    std::exit(2);
  }
  return *std::move(content);
}

void PrintJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  std::fputs(json.c_str(), stdout);
}

}  // namespace

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  CLI::App cli("helm-ctl: admin client for helm-node and helm-router");
  cli.require_subcommand(1);
  // The common flags may follow the subcommand ("helm-ctl drain --target ... --token-file ...").
  cli.fallthrough();
  std::string target = "127.0.0.1:50061";
  int timeout_ms = 5000;
  int wait_ms = 0;
  double emb_share = 0.5;
  cli.add_option("--target", target, "server address host:port")->capture_default_str();
  cli.add_option("--timeout-ms", timeout_ms, "deadline of each call (ms)")->capture_default_str();
  bool tls = false;
  std::string ca_file, cert_file, key_file, server_name, token_file;
  cli.add_flag("--tls", tls, "connect with TLS (implied by --ca, --cert)");
  cli.add_option("--ca", ca_file, "CA certificates verifying the server, PEM (default: system)");
  cli.add_option("--cert", cert_file, "client certificate for mTLS, PEM");
  cli.add_option("--key", key_file, "client private key for mTLS, PEM");
  cli.add_option("--server-name", server_name, "name to check in the server's certificate");
  cli.add_option("--token-file", token_file,
                 "file with the admin bearer token (sent as 'authorization: Bearer <token>')");
  CLI::App* health = cli.add_subcommand("health", "health of the whole server (grpc.health.v1)");
  health->add_option("--wait-ms", wait_ms, "retry until SERVING for up to this long (ms)");
  CLI::App* stats = cli.add_subcommand("stats", "a node's statistics as JSON");
  CLI::App* set_split = cli.add_subcommand("set-split", "move a node's EMB share of the pool");
  set_split->add_option("--emb-share", emb_share, "target EMB chunks / all chunks")->required();
  CLI::App* drain = cli.add_subcommand("drain", "stop a node admitting new requests");
  CLI::App* control = cli.add_subcommand("control", "a node's split controller");
  control->require_subcommand(1);
  control->fallthrough();
  CLI::App* control_status =
      control->add_subcommand("status", "policy, mode, frozen, decisions, reversals, splits");
  CLI::App* control_freeze =
      control->add_subcommand("freeze", "the controller decides nothing until resumed (admin)");
  CLI::App* control_resume =
      control->add_subcommand("resume", "the controller decides again (admin)");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = cli.exit(e);
    return code == 0 ? 0 : 2;
  }

  if (cert_file.empty() != key_file.empty()) {
    std::fprintf(stderr, "helm-ctl: --cert and --key go together\n");
    return 2;
  }
  helm::rpc::ChannelSecurity security;
  if (tls || !ca_file.empty() || !cert_file.empty()) {
    security =
        helm::rpc::ClientSecurity(ReadOrExit("--ca", ca_file), ReadOrExit("--cert", cert_file),
                                  ReadOrExit("--key", key_file), server_name);
  }
  std::string token(absl::StripAsciiWhitespace(ReadOrExit("--token-file", token_file)));
  auto channel = helm::rpc::CreateChannel(target, security);
  if (health->parsed()) {
    auto stub = grpc::health::v1::Health::NewStub(channel);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    while (true) {
      grpc::ClientContext context;
      context.set_deadline(Deadline(timeout_ms));
      grpc::health::v1::HealthCheckRequest request;
      grpc::health::v1::HealthCheckResponse response;
      const grpc::Status status = stub->Check(&context, request, &response);
      const bool serving =
          status.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
      if (serving || std::chrono::steady_clock::now() >= give_up) {
        if (!status.ok()) return Fail("health", status);
        std::printf(
            "%s: %s\n", target.c_str(),
            grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
        return serving ? 0 : 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  auto node = helm::v1::Node::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(Deadline(timeout_ms));
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  if (stats->parsed()) {
    helm::v1::NodeStats response;
    const grpc::Status status = node->GetStats(&context, helm::v1::GetStatsRequest(), &response);
    if (!status.ok()) return Fail("stats", status);
    PrintJson(response);
  } else if (set_split->parsed()) {
    helm::v1::SetSplitRequest request;
    request.set_emb_share(emb_share);
    helm::v1::SetSplitResponse response;
    const grpc::Status status = node->SetSplit(&context, request, &response);
    if (!status.ok()) return Fail("set-split", status);
    PrintJson(response);
  } else if (drain->parsed()) {
    helm::v1::DrainResponse response;
    const grpc::Status status = node->Drain(&context, helm::v1::DrainRequest(), &response);
    if (!status.ok()) return Fail("drain", status);
    PrintJson(response);
  } else if (control_status->parsed()) {
    helm::v1::ControlStatus response;
    const grpc::Status status =
        node->GetControl(&context, helm::v1::GetControlRequest(), &response);
    if (!status.ok()) return Fail("control status", status);
    PrintJson(response);
  } else if (control_freeze->parsed() || control_resume->parsed()) {
    helm::v1::SetControlFrozenRequest request;
    request.set_frozen(control_freeze->parsed());
    helm::v1::ControlStatus response;
    const grpc::Status status = node->SetControlFrozen(&context, request, &response);
    if (!status.ok()) {
      return Fail(control_freeze->parsed() ? "control freeze" : "control resume", status);
    }
    PrintJson(response);
  }
  return 0;
}
