// Options of HELM's gRPC servers and channels (the `grpc` section): the largest message accepted,
// the server's grpc::ResourceQuota, TLS (`grpc.tls`) and who may call the admin RPCs
// (`grpc.admin`). Every helm-node, helm-router, helm-bench and helm-cluster of a deployment reads
// the same section, so that servers and the channels between them agree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "helm/config/describe.h"

namespace helm::rpc {

// TLS on every gRPC port and on the channels HELM's processes open (router -> node, helm-bench).
// Paths to PEM files; all empty: plaintext. Files are read once at start; a path that cannot be
// read is a config error naming the key (see rpc/security.h).
struct TlsOptions {
  // The server's certificate chain and private key. Both set: every gRPC server port speaks TLS and
  // HELM's own channels (router -> node, helm-bench -> router) use TLS. Both empty: plaintext.
  std::string cert_file;
  std::string key_file;
  // CA certificates that verify peers: the servers' certificates on HELM's channels, and client
  // certificates on the servers. Empty: the system's roots verify servers, and client
  // certificates are not asked for.
  std::string ca_file;
  // mTLS: a client without a certificate signed by ca_file is refused at the handshake. False
  // with ca_file set: a client certificate is verified when one is presented (so that an admin
  // identity can be read) but not required.
  bool require_client_cert = false;
  // The certificate and key HELM's channels present as clients (router -> node under mTLS).
  // Empty: cert_file / key_file are presented (a cluster's processes share one certificate).
  std::string client_cert_file;
  std::string client_key_file;
  // Name checked against the servers' certificates instead of the host of the address dialled
  // (e.g. node addresses are IPs and the certificates name a DNS name). Empty: the address's host.
  std::string server_name;

  bool enabled() const { return !cert_file.empty(); }

  template <class V>
  void Describe(V& v) {
    v.Field("cert_file", cert_file, "server certificate chain, PEM (\"\": plaintext)");
    v.Field("key_file", key_file, "server private key, PEM (\"\": plaintext)");
    v.Field("ca_file", ca_file,
            "CA certificates verifying peers, PEM (\"\": system roots, no client certificates)");
    v.Field("require_client_cert", require_client_cert,
            "mTLS: refuse clients without a certificate signed by ca_file");
    v.Field("client_cert_file", client_cert_file,
            "certificate HELM's channels present as clients, PEM (\"\": cert_file)");
    v.Field("client_key_file", client_key_file,
            "key HELM's channels present as clients, PEM (\"\": key_file)");
    v.Field("server_name", server_name,
            "name checked in servers' certificates (\"\": the host dialled)");
  }

  absl::Status Validate() const {
    if (cert_file.empty() != key_file.empty()) {
      return absl::InvalidArgumentError(
          "cert_file: cert_file and key_file must be set together (or both empty)");
    }
    if (require_client_cert && ca_file.empty()) {
      return absl::InvalidArgumentError(
          "require_client_cert: needs ca_file (the CA that signs client certificates)");
    }
    if (require_client_cert && !enabled()) {
      return absl::InvalidArgumentError("require_client_cert: needs cert_file and key_file");
    }
    if (client_cert_file.empty() != client_key_file.empty()) {
      return absl::InvalidArgumentError(
          "client_cert_file: client_cert_file and client_key_file must be set together");
    }
    return absl::OkStatus();
  }
};

// Who may call the node's admin RPCs (Node/SetSplit, Node/Drain): a client whose verified
// certificate names one of `identities` (CN or a SAN), or one sending `authorization: Bearer
// <token>` with the token in token_file. Neither configured: `unauthenticated` decides.
struct AdminOptions {
  // Certificate identities allowed (subject CN or a DNS/IP/URI SAN of a certificate verified by
  // grpc.tls.ca_file).
  std::vector<std::string> identities;
  // File holding the bearer token (surrounding whitespace ignored; must not be empty).
  std::string token_file;
  // With no identities and no token_file: "loopback" (admin calls only from 127.0.0.0/8 and ::1:
  // a local dev cluster), "any" (admin open to every peer: a trusted network only).
  std::string unauthenticated = "loopback";

  bool configured() const { return !identities.empty() || !token_file.empty(); }

  template <class V>
  void Describe(V& v) {
    v.Field("identities", identities,
            "client certificate identities (CN or SAN) allowed to call SetSplit and Drain");
    v.Field("token_file", token_file,
            "file with the bearer token allowed to call SetSplit and Drain (\"\": none)");
    v.Field("unauthenticated", unauthenticated,
            "admin calls when neither identities nor token_file is set: loopback peers only, or "
            "any peer",
            config::OneOf({"loopback", "any"}));
  }
};

struct GrpcOptions {
  // Largest request a server accepts (bytes); larger ones get RESOURCE_EXHAUSTED before any
  // handler runs. 0: derived from the request limits, MaxRankRequestBytes(node.max_history,
  // node.max_candidates) (rpc/limits.h).
  int64_t max_receive_bytes = 0;
  // Memory gRPC may use for its buffers and calls (bytes; grpc::ResourceQuota::Resize).
  int64_t quota_memory_bytes = int64_t{1} << 30;
  // Threads gRPC may run for the server (grpc::ResourceQuota::SetMaxThreads).
  int32_t quota_max_threads = 64;
  TlsOptions tls;
  AdminOptions admin;

  template <class V>
  void Describe(V& v) {
    v.Field("max_receive_bytes", max_receive_bytes,
            "largest request accepted (bytes; 0: derived from node.max_history/max_candidates)",
            config::InRange<int64_t>(0, int64_t{1} << 30));
    v.Field("quota_memory_bytes", quota_memory_bytes,
            "memory the gRPC server may use (bytes; grpc::ResourceQuota)",
            config::InRange<int64_t>(int64_t{1} << 20, int64_t{1} << 40));
    v.Field("quota_max_threads", quota_max_threads,
            "threads the gRPC server may use (grpc::ResourceQuota)",
            config::InRange<int32_t>(4, 4096));
    v.Section("tls", tls, "TLS on every gRPC port and channel (all paths empty: plaintext)");
    v.Section("admin", admin, "authorisation of the admin RPCs (SetSplit, Drain)");
  }
};

}  // namespace helm::rpc
