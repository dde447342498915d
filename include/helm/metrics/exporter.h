// The HTTP side of metrics: GET /metrics answers a Registry's Render in the Prometheus text format
// (cpp-httplib, Debian's libcpp-httplib-dev, on its own small thread pool). Any other path is 404.
//
// Thread-safety: the registry is rendered on the exporter's threads (Registry is thread-safe).
// port() may be called from any thread; Stop (idempotent) and destruction by the owner only.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "helm/metrics/registry.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace helm::metrics {

struct ExporterOptions {
  std::string address = "127.0.0.1";  // address to bind (0.0.0.0: every interface)
  int port = 0;                       // 0: any free port (see Exporter::port())
};

class Exporter {
 public:
  // Binds and starts serving `registry` (not owned; must outlive the exporter). Unavailable when
  // the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Exporter>> Start(const ExporterOptions& options,
                                                         const Registry* registry);
  ~Exporter();

  int port() const { return port_; }
  // Stops serving and joins the threads. Idempotent.
  void Stop();

 private:
  Exporter() = default;

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace helm::metrics
