#include "helm/metrics/exporter.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <memory>

#include "absl/strings/str_cat.h"

namespace helm::metrics {

absl::StatusOr<std::unique_ptr<Exporter>> Exporter::Start(const ExporterOptions& options,
                                                          const Registry* registry) {
  std::unique_ptr<Exporter> exporter(new Exporter());
  exporter->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *exporter->server_;
  // Scrapes come every few seconds from one or two Prometheus servers: two threads are plenty
  // (httplib's default is one per core).
  server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // httplib's default sets SO_REUSEPORT, which lets a second process bind the same port and share
  // its scrapes; SO_REUSEADDR alone refuses a port in use (and still allows a quick restart).
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.Get("/metrics", [registry](const httplib::Request&, httplib::Response& response) {
    response.set_content(registry->Render(), kTextContentType);
  });
  const int port = options.port == 0
                       ? server.bind_to_any_port(options.address)
                       : (server.bind_to_port(options.address, options.port) ? options.port : -1);
  if (port <= 0) {
    return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ", options.address, ":",
                                               options.port, " (address in use or not valid)"));
  }
  exporter->port_ = port;
  // The socket already listens (bind_to_port binds and listens): scrapes that arrive before the
  // thread accepts wait in the backlog.
  httplib::Server* s = exporter->server_.get();
  auto returned = std::make_shared<std::atomic<bool>>(false);
  exporter->thread_ = std::thread([s, returned] {
    s->listen_after_bind();
    returned->store(true);
  });
  // httplib's stop() does nothing until the accept loop runs; wait for it so that Stop cannot be
  // lost (a few microseconds).
  while (!s->is_running() && !returned->load()) std::this_thread::yield();
  return exporter;
}

Exporter::~Exporter() { Stop(); }

void Exporter::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace helm::metrics
