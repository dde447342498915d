// The gRPC server scaffolding helm-node and helm-router share: listening, the standard health
// service, server reflection, in-flight tracking and graceful shutdown.
//
// Shutdown(grace) is the one shutdown path: health goes NOT_SERVING, the drainer refuses new
// requests (handlers answer UNAVAILABLE), in-flight requests get up to `grace` to finish, then the
// server stops. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/support/server_callback.h"

namespace helm::rpc {

// Counts requests in flight so that shutdown lets them finish. Thread-safe.
class Drainer {
 public:
  // Held for the life of one request; its destruction ends the request. Move-only.
  class Token {
   public:
    Token() = default;
    Token(Token&& other) noexcept : drainer_(other.drainer_) { other.drainer_ = nullptr; }
    Token& operator=(Token&& other) noexcept;
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;
    ~Token() { Release(); }
    explicit operator bool() const { return drainer_ != nullptr; }
    void Release();

   private:
    friend class Drainer;
    explicit Token(Drainer* drainer) : drainer_(drainer) {}
    Drainer* drainer_ = nullptr;
  };

  // An engaged token, or an empty one once draining started (answer UNAVAILABLE then).
  Token TryEnter();
  // From now on TryEnter refuses. Idempotent.
  void StartDraining();
  bool draining() const;
  int in_flight() const;
  // Blocks until nothing is in flight or `timeout` passed; true when idle.
  bool WaitIdle(absl::Duration timeout);

 private:
  void Exit();

  mutable absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

// A unary reactor that holds its request's drainer token until gRPC is done with the call (the
// reply was sent, or the call was cancelled). Shutdown then waits for replies still being written,
// not only for handlers to call Finish: the server's final Shutdown cancels every call that has
// not completed, including one whose handler already finished it. Deletes itself.
//
// It also records the client's cancel (the client cancelled, or its deadline passed, before the
// reply): cancelled() becomes true in OnCancel, so work still queued for the call can be skipped,
// and `cancels` (not owned, outlives the call; may be null) counts it. The flag lives as long as
// the reactor, i.e. until after Finish.
class DrainingReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit DrainingReactor(Drainer::Token token, std::atomic<int64_t>* cancels = nullptr)
      : token_(std::move(token)), cancels_(cancels) {}
  void OnCancel() override {
    cancelled_.store(true, std::memory_order_release);
    if (cancels_ != nullptr) cancels_->fetch_add(1, std::memory_order_relaxed);
  }
  void OnDone() override { delete this; }
  const std::atomic<bool>* cancelled() const { return &cancelled_; }

 private:
  Drainer::Token token_;
  std::atomic<int64_t>* const cancels_;
  std::atomic<bool> cancelled_{false};
};

struct ServerOptions {
  // host:port; port 0 picks a free port (see Server::port()).
  std::string listen = "127.0.0.1:0";
  // The port's credentials (rpc/security.h ServerCredentials: TLS, mTLS). Null: plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Services to register; not owned, must outlive the server.
  std::vector<grpc::Service*> services;
  // Largest request accepted (bytes): larger ones are answered RESOURCE_EXHAUSTED before any
  // handler runs. Apps set it from the request limits (rpc/limits.h, config
  // grpc.max_receive_bytes).
  int32_t max_receive_bytes = 4 << 20;
  // Largest reply sent (bytes).
  int32_t max_send_bytes = 64 << 20;
  // The server's grpc::ResourceQuota: memory for buffers and calls (bytes) and threads. 0: gRPC's
  // defaults (no bound).
  int64_t quota_memory_bytes = 0;
  int32_t quota_max_threads = 0;
  // In-flight tracking the services use (Drainer::TryEnter per request); not owned, must outlive
  // the server. Null: the server tracks nothing and Shutdown does not wait.
  Drainer* drainer = nullptr;
};

class Server {
 public:
  // Binds, registers the services plus grpc.health.v1 and reflection, and starts serving with
  // health SERVING. Unavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();

  int port() const { return port_; }
  // Sets the health status of the server and of every registered service.
  void SetServing(bool serving);
  // Graceful shutdown (see the file comment). When requests are still in flight after `grace`,
  // `cut_off` runs (it must make the services finish them, e.g. fail queued work with
  // UNAVAILABLE: gRPC waits for every started call to finish) before the server stops. Returns the
  // requests in flight when the grace period ended (0 when all finished). Idempotent; later calls
  // return 0 at once.
  int Shutdown(absl::Duration grace, const std::function<void()>& cut_off = {});

 private:
  Server() = default;

  std::unique_ptr<grpc::Server> server_;
  std::vector<std::string> service_names_;
  int port_ = 0;
  Drainer* drainer_ = nullptr;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace helm::rpc
