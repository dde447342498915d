#include "helm/rpc/security.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"

namespace helm::rpc {

absl::StatusOr<std::string> ReadSecretFile(const std::string& key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": cannot read '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": cannot read '", path, "'"));
  }
  if (contents.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": '", path, "' is empty"));
  }
  return contents.str();
}

absl::StatusOr<TlsMaterial> LoadTls(const TlsOptions& options, const std::string& key_prefix) {
  TlsMaterial tls;
  tls.enabled = options.enabled();
  tls.require_client_cert = options.require_client_cert;
  tls.server_name = options.server_name;
  auto read = [&](const char* key, const std::string& path, std::string* out) -> absl::Status {
    if (path.empty()) return absl::OkStatus();
    absl::StatusOr<std::string> pem = ReadSecretFile(absl::StrCat(key_prefix, ".", key), path);
    if (!pem.ok()) return pem.status();
    *out = *std::move(pem);
    return absl::OkStatus();
  };
  for (const absl::Status& status :
       {read("cert_file", options.cert_file, &tls.cert_pem),
        read("key_file", options.key_file, &tls.key_pem),
        read("ca_file", options.ca_file, &tls.ca_pem),
        read("client_cert_file", options.client_cert_file, &tls.client_cert_pem),
        read("client_key_file", options.client_key_file, &tls.client_key_pem)}) {
    if (!status.ok()) return status;
  }
  if (tls.client_cert_pem.empty()) {
    tls.client_cert_pem = tls.cert_pem;
    tls.client_key_pem = tls.key_pem;
  }
  return tls;
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const TlsMaterial& tls) {
  if (!tls.enabled) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      tls.require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
      : !tls.ca_pem.empty()   ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                              : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_root_certs = tls.ca_pem;
  options.pem_key_cert_pairs.push_back({tls.key_pem, tls.cert_pem});
  return grpc::SslServerCredentials(options);
}

void ChannelSecurity::Apply(grpc::ChannelArguments& args) const {
  if (credentials != nullptr && !server_name.empty()) args.SetSslTargetNameOverride(server_name);
}

std::shared_ptr<grpc::ChannelCredentials> ChannelSecurity::Credentials() const {
  return credentials != nullptr ? credentials : grpc::InsecureChannelCredentials();
}

ChannelSecurity ClientSecurity(const std::string& ca_pem, const std::string& cert_pem,
                               const std::string& key_pem, const std::string& server_name) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ca_pem;
  options.pem_cert_chain = cert_pem;
  options.pem_private_key = key_pem;
  ChannelSecurity security;
  security.credentials = grpc::SslCredentials(options);
  security.server_name = server_name;
  return security;
}

ChannelSecurity ClientSecurity(const TlsMaterial& tls) {
  if (!tls.enabled) return ChannelSecurity();
  return ClientSecurity(tls.ca_pem, tls.client_cert_pem, tls.client_key_pem, tls.server_name);
}

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& target,
                                             const ChannelSecurity& security,
                                             grpc::ChannelArguments args) {
  security.Apply(args);
  return grpc::CreateCustomChannel(target, security.Credentials(), args);
}

}  // namespace helm::rpc
