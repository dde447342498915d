#include "helm/rpc/server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "spdlog/spdlog.h"

namespace helm::rpc {

Drainer::Token& Drainer::Token::operator=(Token&& other) noexcept {
  if (this != &other) {
    Release();
    drainer_ = other.drainer_;
    other.drainer_ = nullptr;
  }
  return *this;
}

void Drainer::Token::Release() {
  if (drainer_ != nullptr) {
    drainer_->Exit();
    drainer_ = nullptr;
  }
}

Drainer::Token Drainer::TryEnter() {
  absl::MutexLock lock(&mu_);
  if (draining_) return Token();
  ++in_flight_;
  return Token(this);
}

void Drainer::Exit() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

void Drainer::StartDraining() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

bool Drainer::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

int Drainer::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

bool Drainer::WaitIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::unique_ptr<Server> server(new Server());
  server->drainer_ = options.drainer;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(
      options.listen,
      options.credentials != nullptr ? options.credentials : grpc::InsecureServerCredentials(),
      &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_receive_bytes);
  builder.SetMaxSendMessageSize(options.max_send_bytes);
  if (options.quota_memory_bytes > 0 || options.quota_max_threads > 0) {
    grpc::ResourceQuota quota("helm-server");
    if (options.quota_memory_bytes > 0)
      quota.Resize(static_cast<size_t>(options.quota_memory_bytes));
    if (options.quota_max_threads > 0) quota.SetMaxThreads(options.quota_max_threads);
    builder.SetResourceQuota(quota);
  }
  for (grpc::Service* service : options.services) builder.RegisterService(service);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on '", options.listen, "' (address in use or not valid)"));
  }
  server->SetServing(true);
  return server;
}

Server::~Server() {
  if (server_ != nullptr) Shutdown(absl::ZeroDuration());
}

void Server::SetServing(bool serving) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health != nullptr) health->SetServingStatus(serving);
}

int Server::Shutdown(absl::Duration grace, const std::function<void()>& cut_off) {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return 0;
    shut_down_ = true;
  }
  SetServing(false);
  int left = 0;
  if (drainer_ != nullptr) drainer_->StartDraining();
  if (drainer_ != nullptr && !drainer_->WaitIdle(grace)) {
    left = drainer_->in_flight();
    spdlog::warn("shutdown: {} request(s) still in flight after the {} ms grace period", left,
                 absl::ToInt64Milliseconds(grace));
    if (cut_off) cut_off();
  }
  // Requests still running after the grace period are cancelled.
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  return left;
}

}  // namespace helm::rpc
