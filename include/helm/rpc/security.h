// TLS credentials of HELM's gRPC servers and channels, built from the `grpc.tls` options.
//
// LoadTls reads the PEM files once (at start: a file that cannot be read is an InvalidArgument
// naming the key, "grpc.tls.ca_file: cannot read '/x': No such file or directory"); the
// credentials are then built from the contents, so a process never re-reads a file. Plaintext
// (TlsOptions::enabled() false) gives insecure credentials, as before TLS existed.
//
// Thread-safety: value types and free functions; the credentials they build are shared, immutable
// gRPC objects.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "helm/rpc/options.h"

namespace helm::rpc {

// The PEM contents of the files TlsOptions names ("" where the path is empty).
struct TlsMaterial {
  bool enabled = false;
  bool require_client_cert = false;
  std::string cert_pem;
  std::string key_pem;
  std::string ca_pem;
  std::string client_cert_pem;  // cert_pem when client_cert_file is empty
  std::string client_key_pem;   // key_pem when client_key_file is empty
  std::string server_name;
};

// Reads the file at `path`; InvalidArgument naming `key` (the config key path) when it cannot be
// read or is empty.
absl::StatusOr<std::string> ReadSecretFile(const std::string& key, const std::string& path);

// Reads every file `options` names. `key_prefix` is the options' key path ("grpc.tls") for errors.
absl::StatusOr<TlsMaterial> LoadTls(const TlsOptions& options,
                                    const std::string& key_prefix = "grpc.tls");

// Server credentials: insecure when TLS is off; else SslServerCredentials with the server's key
// pair, and client certificates required and verified against the CA (require_client_cert),
// verified when presented (a CA without require_client_cert) or not asked for (no CA).
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const TlsMaterial& tls);

// How a client channel is secured: credentials plus the channel arguments they need (the target
// name override). Default: plaintext.
struct ChannelSecurity {
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // null: insecure
  std::string server_name;                                // "": the host dialled

  // Adds what the security needs to `args` (GRPC_SSL_TARGET_NAME_OVERRIDE_ARG).
  void Apply(grpc::ChannelArguments& args) const;
  // The credentials, or insecure ones when null.
  std::shared_ptr<grpc::ChannelCredentials> Credentials() const;
};

// The channel security of HELM's own channels under `tls`: SslCredentials with the CA as roots
// and the client key pair (when the material has one) when TLS is on; plaintext otherwise.
ChannelSecurity ClientSecurity(const TlsMaterial& tls);

// Client-side TLS from explicit PEM contents (helm-ctl's flags, tests): `ca_pem` "" uses the
// system roots; `cert_pem`/`key_pem` "" present no certificate.
ChannelSecurity ClientSecurity(const std::string& ca_pem, const std::string& cert_pem,
                               const std::string& key_pem, const std::string& server_name = "");

// A channel to `target` with `args` plus what `security` needs.
std::shared_ptr<grpc::Channel> CreateChannel(const std::string& target,
                                             const ChannelSecurity& security,
                                             grpc::ChannelArguments args = {});

}  // namespace helm::rpc
