#include "helm/rpc/admin_auth.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "grpc/grpc_security_constants.h"
#include "grpcpp/security/auth_context.h"
#include "helm/rpc/security.h"

namespace helm::rpc {
namespace {

// Compares in time independent of where the strings differ (the token is a secret).
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

}  // namespace

bool IsLoopbackPeer(absl::string_view address) {
  if (absl::StartsWith(address, "unix:")) return true;
  if (absl::ConsumePrefix(&address, "ipv4:")) return absl::StartsWith(address, "127.");
  if (absl::ConsumePrefix(&address, "ipv6:")) {
    return absl::StartsWith(address, "[::1]") || absl::StartsWith(address, "[::ffff:127.");
  }
  return false;
}

absl::StatusOr<std::unique_ptr<AdminAuthorizer>> AdminAuthorizer::Create(
    const AdminOptions& options, const std::string& key_prefix) {
  std::unique_ptr<AdminAuthorizer> auth(new AdminAuthorizer());
  auth->options_ = options;
  if (!options.token_file.empty()) {
    const std::string key = absl::StrCat(key_prefix, ".token_file");
    absl::StatusOr<std::string> token = ReadSecretFile(key, options.token_file);
    if (!token.ok()) return token.status();
    auth->token_ = std::string(absl::StripAsciiWhitespace(*token));
    if (auth->token_.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": '", options.token_file, "' holds no token"));
    }
  }
  return auth;
}

absl::Status AdminAuthorizer::Check(const AdminPeer& peer) const {
  if (!options_.configured()) {
    if (options_.unauthenticated == "any" || IsLoopbackPeer(peer.address)) {
      return absl::OkStatus();
    }
    return absl::PermissionDeniedError(
        "admin calls are allowed from loopback peers only (configure grpc.admin.identities or "
        "grpc.admin.token_file for remote admin)");
  }
  for (const std::string& identity : peer.identities) {
    if (std::find(options_.identities.begin(), options_.identities.end(), identity) !=
        options_.identities.end()) {
      return absl::OkStatus();
    }
  }
  if (peer.authorization.has_value()) {
    absl::string_view value = *peer.authorization;
    if (!absl::ConsumePrefix(&value, "Bearer ") && !absl::ConsumePrefix(&value, "bearer ")) {
      return absl::PermissionDeniedError("authorization: expected 'Bearer <token>'");
    }
    if (!token_.empty() && ConstantTimeEquals(absl::StripAsciiWhitespace(value), token_)) {
      return absl::OkStatus();
    }
    return absl::PermissionDeniedError("admin call refused: the bearer token is not valid");
  }
  if (!peer.identities.empty()) {
    return absl::PermissionDeniedError(absl::StrCat("admin call refused: certificate identity '",
                                                    peer.identities.front(),
                                                    "' is not in grpc.admin.identities"));
  }
  return absl::UnauthenticatedError(
      "admin call needs credentials: an admin client certificate or 'authorization: Bearer "
      "<token>'");
}

AdminPeer PeerOf(const grpc::ServerContextBase& context) {
  AdminPeer peer;
  peer.address = context.peer();
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    for (const char* property : {GRPC_X509_CN_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME}) {
      for (const grpc::string_ref& value : auth->FindPropertyValues(property)) {
        peer.identities.emplace_back(value.data(), value.size());
      }
    }
  }
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    peer.authorization = std::string(it->second.data(), it->second.size());
  }
  return peer;
}

}  // namespace helm::rpc
