// Helpers for multi-process tests: start HELM executables from build/bin on 127.0.0.1 with port 0,
// learn the chosen port from their "LISTENING <port>" line, check health and reflection.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/channel.h"
#include "helm/common/subprocess.h"

namespace helm::e2e {

// Item ids of the small test clusters: small enough that node processes start in about a second
// on 2 cores.
inline constexpr int64_t kNumItems = 50000;

// The node section of most tests: one worker, batches of 4, room for bursts.
inline constexpr char kDefaultNode[] = R"(  workers: 1
  queue_capacity: 64
  max_batch: 4
  max_history: 1024
  max_candidates: 256
  grace_period_ms: 5000
)";

// A small cluster's YAML config: warn-level logs, `node_section` (indented keys of `node:`), a
// 16 MiB pool of 512 KiB chunks split 0.5, kNumItems items, and a router that health-checks every
// 200 ms and ejects after 2 failures, plus `router_keys` (indented keys of `router:`). The router
// section comes last, so a caller may append top-level sections (grpc:, control:).
std::string ClusterConfig(const std::string& node_section = kDefaultNode,
                          const std::string& router_keys = "");

// Directory of the built executables: $HELM_BIN_DIR (set by CTest), else "build/bin".
std::string BinDir();

// A temporary directory for one test's files (logs, configs); removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  // Writes `content` to `name` inside the directory; returns the full path.
  std::string Write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

// Throw-away certificates for TLS tests, made with openssl (EC P-256, valid 2 days) in `dir`:
// ca.pem / ca.key (the test CA); server.pem / server.key (CN helm-node, SANs IP:127.0.0.1 and
// DNS:localhost, usable as server and as client: the certificate a local cluster's processes
// share); client.pem / client.key (CN helm-client, a client certificate of the same CA); and
// other_ca.pem (an unrelated CA). Returns "" on success, else what failed with openssl's output.
std::string MakeTestCertificates(const TempDir& dir);

// A top-level `grpc:` section (to append to ClusterConfig's text) with TLS from the certificates
// MakeTestCertificates left in `dir`: every process serves server.pem, verifies peers with ca.pem,
// and presents server.pem as a client; mTLS when `require_client_cert`.
std::string TlsSection(const TempDir& dir, bool require_client_cert);

struct Server {
  std::unique_ptr<Subprocess> process;
  int port = 0;
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

// Starts build/bin/<program> with `args` (output to <dir>/<log_name>) and waits for its
// "LISTENING <port>" line. Fails the current test (and returns a server with port 0) on timeout.
Server StartServer(const std::string& program, const std::vector<std::string>& args,
                   const TempDir& dir, const std::string& log_name);

std::shared_ptr<grpc::Channel> Connect(const std::string& address);

// grpc.health.v1 Check of the whole server: "SERVING", "NOT_SERVING", ... or "error: <message>".
std::string HealthStatus(const std::shared_ptr<grpc::Channel>& channel);

// Service names listed by server reflection (sorted), or one "error: ..." entry.
std::vector<std::string> ReflectedServices(const std::shared_ptr<grpc::Channel>& channel);

}  // namespace helm::e2e
