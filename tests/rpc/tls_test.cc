// TLS, mTLS and admin authorisation with real gRPC on 127.0.0.1 (rpc/security.h,
// rpc/admin_auth.h, the node's admin handlers, the router's channels to nodes).
//
// Throw-away certificates are made by openssl once per run in a temporary directory: a CA, a
// server certificate (SAN IP:127.0.0.1, DNS:localhost), a client certificate (CN helm-client), an
// admin client certificate (CN helm-admin) and a second, unrelated CA with a certificate that
// also calls itself helm-admin. Every call has a deadline, so each test is bounded in time.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "apps/app.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "helm/common/subprocess.h"
#include "helm/router/router.h"
#include "helm/rpc/security.h"
#include "helm/rpc/server.h"
#include "helm/serve/node_server.h"
#include "helm/v1/node.grpc.pb.h"
#include "helm/v1/recommender.grpc.pb.h"

namespace helm {
namespace {

namespace fs = std::filesystem;

constexpr char kToken[] = "admin-token-4f1c9e";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The certificates, made once for the whole test program.
class Certs {
 public:
  static const Certs& Get() {
    static const Certs* certs = new Certs();
    return *certs;
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::string Pem(const std::string& name) const { return ReadFile(Path(name)); }
  bool ok() const { return ok_; }
  const std::string& log() const { return log_; }

 private:
  Certs() {
    char pattern[] = "/tmp/helm_tls_test_XXXXXX";
    dir_ = mkdtemp(pattern);
    static std::string* to_remove = new std::string(dir_);
    std::atexit([] { fs::remove_all(*to_remove); });
    // EC keys: fast to generate. `leaf NAME CA EXT` makes NAME.key/NAME.pem signed by CA.
    const std::string script = absl::StrCat(
        "set -e\ncd '", dir_, "'\n",
        "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
        "ca() { openssl req -x509 $ec -keyout $1.key -out $1.pem -days 2 -subj \"/CN=$2\"; }\n"
        "leaf() {\n"
        "  openssl req $ec -keyout $1.key -out $1.csr -subj \"/CN=$2\"\n"
        "  printf '%b' \"$4\" > $1.ext\n"
        "  openssl x509 -req -in $1.csr -CA $3.pem -CAkey $3.key -CAcreateserial -CAserial $1.srl "
        "\\\n"
        "    -days 2 -extfile $1.ext -out $1.pem\n"
        "}\n"
        "ca ca helm-test-ca\n"
        "ca other_ca helm-other-ca\n"
        "leaf server helm-node ca "
        "'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth,clientAuth'\n"
        "leaf client helm-client ca 'extendedKeyUsage=clientAuth'\n"
        "leaf admin helm-admin ca 'extendedKeyUsage=clientAuth'\n"
        "leaf rogue helm-admin other_ca 'extendedKeyUsage=clientAuth'\n",
        "printf '%s\\n' '", kToken, "' > token\n");
    std::ofstream(dir_ + "/make.sh") << script;
    const int rc = std::system(
        absl::StrCat("sh '", dir_, "/make.sh' > '", dir_, "/openssl.log' 2>&1").c_str());
    ok_ = rc == 0;
    log_ = ReadFile(dir_ + "/openssl.log");
  }

  std::string dir_;
  bool ok_ = false;
  std::string log_;
};

config::Config NodeConfig() {
  config::Config config;
  config.node.id = "node-tls";
  config.node.workers = 1;
  config.node.max_batch = 4;
  config.node.max_batch_wait_us = 0;
  config.node.queue_capacity = 16;
  config.node.max_history = 64;
  config.node.max_candidates = 32;
  config.pool.bytes = int64_t{8} << 20;
  config.pool.chunk_bytes = int64_t{256} << 10;
  config.pool.backend = "cpu";
  config.emb.num_items = 20000;
  config.model.kernels = "cpu";
  config.control.policy = "static";
  return config;
}

// Server TLS with the test CA; mTLS when `require_client_cert`. Admin: the helm-admin identity
// and the token file.
config::Config TlsNodeConfig(bool require_client_cert) {
  const Certs& certs = Certs::Get();
  config::Config config = NodeConfig();
  config.grpc.tls.cert_file = certs.Path("server.pem");
  config.grpc.tls.key_file = certs.Path("server.key");
  config.grpc.tls.ca_file = certs.Path("ca.pem");
  config.grpc.tls.require_client_cert = require_client_cert;
  config.grpc.admin.identities = {"helm-admin"};
  config.grpc.admin.token_file = certs.Path("token");
  return config;
}

v1::RankRequest MakeRequest(int64_t user) {
  v1::RankRequest request;
  request.set_user_id(user);
  for (int i = 0; i < 16; ++i) {
    request.add_history_item_ids((user * 7919 + i * 104729) % 20000);
    request.add_history_actions(i % 8);
    request.add_history_timestamps_ms(1'700'000'000'000 + int64_t{i} * 45'000);
  }
  for (int c = 0; c < 8; ++c) request.add_candidate_item_ids((user * 31 + c * 977) % 20000);
  return request;
}

std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "") {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
  return context;
}

// The client side: which CA verifies the server and which certificate (if any) is presented.
rpc::ChannelSecurity Client(const std::string& ca, const std::string& cert = "") {
  const Certs& certs = Certs::Get();
  return rpc::ClientSecurity(certs.Pem(ca + ".pem"), cert.empty() ? "" : certs.Pem(cert + ".pem"),
                             cert.empty() ? "" : certs.Pem(cert + ".key"));
}

// A node server with real gRPC on 127.0.0.1 (any free port).
class TestNode {
 public:
  explicit TestNode(const config::Config& config) {
    auto created = serve::NodeServer::Create(config);
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return;
    node_ = *std::move(created);
    rpc::ServerOptions options = app::GrpcServerOptions(config, "127.0.0.1:0");
    options.services = node_->services();
    options.drainer = node_->drainer();
    auto started = rpc::Server::Start(options);
    EXPECT_TRUE(started.ok()) << started.status();
    if (started.ok()) server_ = *std::move(started);
  }
  ~TestNode() {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(5), [this] { node_->Stop(); });
    if (node_ != nullptr) node_->Stop();
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", server_->port()); }
  double target_split() { return node_->engine().pool().Snapshot().target_split; }
  bool draining() { return node_->core().draining(); }

  grpc::Status Rank(const rpc::ChannelSecurity& security) {
    auto stub = v1::Recommender::NewStub(rpc::CreateChannel(address(), security));
    v1::RankResponse response;
    auto context = Context();
    return stub->Rank(context.get(), MakeRequest(7), &response);
  }
  grpc::Status SetSplit(const rpc::ChannelSecurity& security, double share,
                        const std::string& token = "") {
    auto stub = v1::Node::NewStub(rpc::CreateChannel(address(), security));
    v1::SetSplitRequest request;
    request.set_emb_share(share);
    v1::SetSplitResponse response;
    auto context = Context(token);
    return stub->SetSplit(context.get(), request, &response);
  }
  grpc::Status Drain(const rpc::ChannelSecurity& security, const std::string& token = "") {
    auto stub = v1::Node::NewStub(rpc::CreateChannel(address(), security));
    v1::DrainResponse response;
    auto context = Context(token);
    return stub->Drain(context.get(), v1::DrainRequest(), &response);
  }

 private:
  std::unique_ptr<serve::NodeServer> node_;
  std::unique_ptr<rpc::Server> server_;
};

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Certs::Get().ok()) << "openssl failed:\n" << Certs::Get().log();
  }
};

TEST_F(TlsTest, TlsServerServesAClientThatTrustsItsCa) {
  TestNode node(TlsNodeConfig(/*require_client_cert=*/false));
  const grpc::Status status = node.Rank(Client("ca"));
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(TlsTest, PlaintextClientIsRefusedByATlsServer) {
  TestNode node(TlsNodeConfig(false));
  const grpc::Status status = node.Rank(rpc::ChannelSecurity());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(TlsTest, ClientTrustingAnotherCaRefusesTheServer) {
  TestNode node(TlsNodeConfig(false));
  const grpc::Status status = node.Rank(Client("other_ca", "client"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(TlsTest, MtlsRefusesAClientWithoutACertificate) {
  TestNode node(TlsNodeConfig(/*require_client_cert=*/true));
  const grpc::Status status = node.Rank(Client("ca"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(TlsTest, MtlsRefusesAClientCertificateFromAnotherCa) {
  TestNode node(TlsNodeConfig(true));
  const grpc::Status status = node.Rank(Client("ca", "rogue"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(TlsTest, MtlsServesAClientWithACertificateFromItsCa) {
  TestNode node(TlsNodeConfig(true));
  const grpc::Status status = node.Rank(Client("ca", "client"));
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(TlsTest, AdminCallsWithoutCredentialsAreUnauthenticatedAndChangeNothing) {
  TestNode node(TlsNodeConfig(false));
  const double before = node.target_split();
  EXPECT_EQ(node.SetSplit(Client("ca"), 0.25).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(node.Drain(Client("ca")).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(node.target_split(), before);
  EXPECT_FALSE(node.draining());
  EXPECT_TRUE(node.Rank(Client("ca")).ok());
}

TEST_F(TlsTest, AdminCallsWithWrongCredentialsArePermissionDeniedAndChangeNothing) {
  TestNode node(TlsNodeConfig(false));
  const double before = node.target_split();
  EXPECT_EQ(node.SetSplit(Client("ca"), 0.25, "wrong-token").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(node.Drain(Client("ca"), "wrong-token").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // A verified certificate whose identity is not an admin one.
  EXPECT_EQ(node.SetSplit(Client("ca", "client"), 0.25).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(node.Drain(Client("ca", "client")).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(node.target_split(), before);
  EXPECT_FALSE(node.draining());
}

TEST_F(TlsTest, AdminCertificateFromAnotherCaCannotConnect) {
  // helm-admin signed by the unrelated CA: the handshake fails before any admin check.
  TestNode node(TlsNodeConfig(false));
  const double before = node.target_split();
  EXPECT_EQ(node.SetSplit(Client("ca", "rogue"), 0.25).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(node.target_split(), before);
}

TEST_F(TlsTest, BearerTokenAuthorisesSetSplitAndDrain) {
  TestNode node(TlsNodeConfig(false));
  ASSERT_NE(node.target_split(), 0.25);
  const grpc::Status set = node.SetSplit(Client("ca"), 0.25, kToken);
  EXPECT_TRUE(set.ok()) << set.error_message();
  EXPECT_DOUBLE_EQ(node.target_split(), 0.25);
  const grpc::Status drain = node.Drain(Client("ca"), kToken);
  EXPECT_TRUE(drain.ok()) << drain.error_message();
  EXPECT_TRUE(node.draining());
}

TEST_F(TlsTest, AdminCertificateIdentityAuthorisesSetSplitAndDrainUnderMtls) {
  TestNode node(TlsNodeConfig(/*require_client_cert=*/true));
  ASSERT_NE(node.target_split(), 0.3);
  const grpc::Status set = node.SetSplit(Client("ca", "admin"), 0.3);
  EXPECT_TRUE(set.ok()) << set.error_message();
  EXPECT_DOUBLE_EQ(node.target_split(), 0.3);
  const grpc::Status drain = node.Drain(Client("ca", "admin"));
  EXPECT_TRUE(drain.ok()) << drain.error_message();
  EXPECT_TRUE(node.draining());
}

TEST_F(TlsTest, UnconfiguredAdminStaysOpenToLoopbackPeersOverPlaintext) {
  TestNode node(NodeConfig());
  EXPECT_TRUE(node.SetSplit(rpc::ChannelSecurity(), 0.25).ok());
  EXPECT_DOUBLE_EQ(node.target_split(), 0.25);
}

// A router in process, TLS on its own port, forwarding to a node that requires client
// certificates: with its client certificate the node is routable and Rank works end to end.
TEST_F(TlsTest, RouterReachesAnMtlsNodeWithItsClientCertificate) {
  const config::Config config = TlsNodeConfig(true);
  TestNode node(config);
  route::RouterOptions options;
  options.nodes = {node.address()};
  options.health_check_interval_ms = 50;
  auto router = router::Router::Create(options, nullptr, app::ClientSecurityOrExit(config));
  ASSERT_TRUE(router.ok()) << router.status();
  rpc::ServerOptions server_options = app::GrpcServerOptions(config, "127.0.0.1:0");
  server_options.services = {(*router)->service()};
  server_options.drainer = (*router)->drainer();
  auto server = rpc::Server::Start(server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  (*router)->Start();
  EXPECT_TRUE((*router)->WaitForRoutable(1, absl::Seconds(10)));
  auto stub = v1::Recommender::NewStub(
      rpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()), Client("ca", "client")));
  v1::RankResponse response;
  auto context = Context();
  const grpc::Status status = stub->Rank(context.get(), MakeRequest(11), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_GT(response.items_size(), 0);
  (*server)->Shutdown(absl::Seconds(5));
  (*router)->Stop();
}

TEST_F(TlsTest, RouterWithoutAClientCertificateCannotReachAnMtlsNode) {
  TestNode node(TlsNodeConfig(true));
  route::RouterOptions options;
  options.nodes = {node.address()};
  options.health_check_interval_ms = 50;
  auto router = router::Router::Create(options, nullptr, Client("ca"));
  ASSERT_TRUE(router.ok()) << router.status();
  (*router)->Start();
  EXPECT_FALSE((*router)->WaitForRoutable(1, absl::Seconds(1)));
  (*router)->Stop();
}

// helm-node as a process: a TLS path that cannot be read stops it at start with exit status 2 and
// a message naming the key, before it opens a port.
TEST_F(TlsTest, NodeWithAnUnreadableTlsFileExitsTwoNamingTheKey) {
  const std::string dir = fs::path(Certs::Get().Path("x")).parent_path();
  const std::string config_path = dir + "/bad_tls.yaml";
  std::ofstream(config_path) << "grpc:\n  tls:\n    cert_file: " << dir
                             << "/server.pem\n    key_file: /nonexistent/helm/server.key\n";
  const char* bin = std::getenv("HELM_BIN_DIR");
  Subprocess::Options options;
  options.argv = {absl::StrCat(bin != nullptr ? bin : "build/bin", "/helm-node"), "--config",
                  config_path};
  options.output_path = dir + "/bad_tls.log";
  auto process = Subprocess::Start(options);
  ASSERT_TRUE(process.ok()) << process.status();
  const std::optional<int> status = (*process)->Wait(absl::Seconds(30));
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2) << (*process)->Output();
  EXPECT_NE((*process)->Output().find("grpc.tls.key_file"), std::string::npos)
      << (*process)->Output();
}

}  // namespace
}  // namespace helm
