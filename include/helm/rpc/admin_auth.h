// Authorisation of the admin RPCs (Node/SetSplit, Node/Drain): who may change a node.
//
// AdminAuthorizer::Check is a plain function of what a call presents (AdminPeer: the peer address,
// the identities of its verified client certificate, its `authorization` metadata), so it is unit
// tested without gRPC; PeerOf reads those from a gRPC call. Decision, with grpc.admin configured
// (identities or token_file):
//   - a verified certificate identity (subject CN or SAN) listed in `identities`: allowed;
//   - `authorization: Bearer <token>` equal to the token file's content: allowed;
//   - a wrong token, a malformed authorization header, or a verified certificate whose identity
//     is not listed: PERMISSION_DENIED;
//   - no credentials at all: UNAUTHENTICATED.
// Without identities or token_file, grpc.admin.unauthenticated decides: "loopback" allows peers
// on 127.0.0.0/8 or ::1 only (PERMISSION_DENIED for others), "any" allows every peer.
// A refused call must change nothing: handlers check before acting.
//
// Thread-safety: immutable after Create; Check is thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/server_context.h"
#include "helm/rpc/options.h"

namespace helm::rpc {

// What one call presents.
struct AdminPeer {
  // gRPC's peer string: "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "unix:/path".
  std::string address;
  // Identities of the client certificate, only when the TLS handshake verified it.
  std::vector<std::string> identities;
  // The `authorization` metadata value, when sent.
  std::optional<std::string> authorization;
};

// True for peers on 127.0.0.0/8, ::1, ::ffff:127.x.x.x or a unix socket.
bool IsLoopbackPeer(absl::string_view address);

class AdminAuthorizer {
 public:
  // Reads the token file. InvalidArgument naming `key_prefix`.token_file when it cannot be read
  // or holds only whitespace.
  static absl::StatusOr<std::unique_ptr<AdminAuthorizer>> Create(
      const AdminOptions& options, const std::string& key_prefix = "grpc.admin");

  // OK when the call may act; UNAUTHENTICATED or PERMISSION_DENIED (see the file comment), with a
  // message that never echoes the token.
  absl::Status Check(const AdminPeer& peer) const;

 private:
  AdminAuthorizer() = default;

  AdminOptions options_;
  std::string token_;  // "" : no token configured
};

// The peer, verified certificate identities and authorization metadata of a gRPC call.
AdminPeer PeerOf(const grpc::ServerContextBase& context);

}  // namespace helm::rpc
