// The admin authorisation decision (rpc/admin_auth.h) and the reading of TLS files
// (rpc/security.h), without gRPC: what a call presents -> OK, UNAUTHENTICATED or PERMISSION_DENIED.
#include "helm/rpc/admin_auth.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "helm/rpc/security.h"

namespace helm::rpc {
namespace {

// A file in the test's temporary directory holding `content`; removed at destruction.
class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    char name[] = "/tmp/helm_admin_auth_XXXXXX";
    const int fd = mkstemp(name);
    EXPECT_GE(fd, 0);
    close(fd);
    path_ = name;
    std::ofstream(path_) << content;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::unique_ptr<AdminAuthorizer> MakeAuthorizer(const AdminOptions& options) {
  auto created = AdminAuthorizer::Create(options);
  EXPECT_TRUE(created.ok()) << created.status();
  return created.ok() ? *std::move(created) : nullptr;
}

AdminPeer Peer(const std::string& address, std::vector<std::string> identities = {},
               std::optional<std::string> authorization = std::nullopt) {
  return AdminPeer{address, std::move(identities), std::move(authorization)};
}

TEST(AdminAuth, RecognisesLoopbackPeers) {
  EXPECT_TRUE(IsLoopbackPeer("ipv4:127.0.0.1:5000"));
  EXPECT_TRUE(IsLoopbackPeer("ipv4:127.8.9.10:1"));
  EXPECT_TRUE(IsLoopbackPeer("ipv6:[::1]:5000"));
  EXPECT_TRUE(IsLoopbackPeer("ipv6:[::ffff:127.0.0.1]:5000"));
  EXPECT_TRUE(IsLoopbackPeer("unix:/tmp/socket"));
  EXPECT_FALSE(IsLoopbackPeer("ipv4:10.0.0.7:5000"));
  EXPECT_FALSE(IsLoopbackPeer("ipv4:128.0.0.1:5000"));
  EXPECT_FALSE(IsLoopbackPeer("ipv6:[fe80::1]:5000"));
  EXPECT_FALSE(IsLoopbackPeer(""));
}

TEST(AdminAuth, UnconfiguredAllowsLoopbackPeersOnlyByDefault) {
  auto auth = MakeAuthorizer(AdminOptions());
  EXPECT_TRUE(auth->Check(Peer("ipv4:127.0.0.1:4000")).ok());
  EXPECT_EQ(auth->Check(Peer("ipv4:10.1.2.3:4000")).code(), absl::StatusCode::kPermissionDenied);
}

TEST(AdminAuth, UnconfiguredAnyAllowsRemotePeers) {
  AdminOptions options;
  options.unauthenticated = "any";
  auto auth = MakeAuthorizer(options);
  EXPECT_TRUE(auth->Check(Peer("ipv4:10.1.2.3:4000")).ok());
}

TEST(AdminAuth, TokenMatchingTheFileIsAllowedAndOthersAreDenied) {
  TempFile token("  s3cret-token\n");
  AdminOptions options;
  options.token_file = token.path();
  auto auth = MakeAuthorizer(options);
  EXPECT_TRUE(auth->Check(Peer("ipv4:10.0.0.1:1", {}, "Bearer s3cret-token")).ok());
  const absl::Status wrong = auth->Check(Peer("ipv4:10.0.0.1:1", {}, "Bearer s3cret-tokeN"));
  EXPECT_EQ(wrong.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(std::string(wrong.message()).find("s3cret"), std::string::npos) << wrong;
  EXPECT_EQ(auth->Check(Peer("ipv4:10.0.0.1:1", {}, "Bearer s3cret")).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth->Check(Peer("ipv4:10.0.0.1:1", {}, "Basic s3cret-token")).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(AdminAuth, ConfiguredAuthRefusesLoopbackWithoutCredentials) {
  TempFile token("t");
  AdminOptions options;
  options.token_file = token.path();
  auto auth = MakeAuthorizer(options);
  EXPECT_EQ(auth->Check(Peer("ipv4:127.0.0.1:1")).code(), absl::StatusCode::kUnauthenticated);
}

TEST(AdminAuth, ListedCertificateIdentityIsAllowedAndAnUnlistedOneDenied) {
  AdminOptions options;
  options.identities = {"helm-admin", "spiffe://helm/admin"};
  auto auth = MakeAuthorizer(options);
  EXPECT_TRUE(auth->Check(Peer("ipv4:10.0.0.1:1", {"helm-admin"})).ok());
  EXPECT_TRUE(auth->Check(Peer("ipv4:10.0.0.1:1", {"client", "spiffe://helm/admin"})).ok());
  EXPECT_EQ(auth->Check(Peer("ipv4:10.0.0.1:1", {"helm-client"})).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth->Check(Peer("ipv4:10.0.0.1:1")).code(), absl::StatusCode::kUnauthenticated);
  // Identities only: any bearer token is wrong.
  EXPECT_EQ(auth->Check(Peer("ipv4:10.0.0.1:1", {}, "Bearer x")).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(AdminAuth, UnreadableOrEmptyTokenFileIsAnErrorNamingTheKey) {
  AdminOptions options;
  options.token_file = "/nonexistent/helm/token";
  auto missing = AdminAuthorizer::Create(options);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("grpc.admin.token_file"), absl::string_view::npos)
      << missing.status();
  TempFile blank(" \n");
  options.token_file = blank.path();
  auto empty = AdminAuthorizer::Create(options);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("grpc.admin.token_file"), absl::string_view::npos);
}

TEST(TlsFiles, UnreadablePathIsAnErrorNamingTheKey) {
  TempFile pem("-----BEGIN CERTIFICATE-----\n");
  TlsOptions options;
  options.cert_file = pem.path();
  options.key_file = pem.path();
  options.ca_file = "/nonexistent/ca.pem";
  auto loaded = LoadTls(options);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("grpc.tls.ca_file"), absl::string_view::npos)
      << loaded.status();
  EXPECT_NE(loaded.status().message().find("/nonexistent/ca.pem"), absl::string_view::npos);
}

TEST(TlsFiles, ClientKeyPairDefaultsToTheServers) {
  TempFile cert("CERT");
  TempFile key("KEY");
  TlsOptions options;
  options.cert_file = cert.path();
  options.key_file = key.path();
  auto loaded = LoadTls(options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->enabled);
  EXPECT_EQ(loaded->client_cert_pem, "CERT");
  EXPECT_EQ(loaded->client_key_pem, "KEY");
  EXPECT_FALSE(LoadTls(TlsOptions())->enabled);
}

TEST(TlsFiles, OptionsRefuseHalfAKeyPairAndMtlsWithoutACa) {
  TlsOptions options;
  options.cert_file = "a.pem";
  EXPECT_FALSE(options.Validate().ok());
  options.key_file = "k.pem";
  EXPECT_TRUE(options.Validate().ok());
  options.require_client_cert = true;
  EXPECT_NE(options.Validate().message().find("require_client_cert"), absl::string_view::npos);
  options.ca_file = "ca.pem";
  EXPECT_TRUE(options.Validate().ok());
}

}  // namespace
}  // namespace helm::rpc
