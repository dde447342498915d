// Helpers for multi-process tests: start HELM executables from build/bin on 127.0.0.1 with port 0,
// learn the chosen port from their "LISTENING <port>" line, check health and reflection.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "grpcpp/channel.h"
#include "helm/common/subprocess.h"

namespace helm::e2e {

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
