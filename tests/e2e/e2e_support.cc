#include "e2e_support.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/reflection.grpc.pb.h"

namespace helm::e2e {

std::string BinDir() {
  const char* dir = std::getenv("HELM_BIN_DIR");
  return dir != nullptr ? dir : "build/bin";
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "helm-e2e-XXXXXX").string();
  path_ = mkdtemp(pattern.data());
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::Write(const std::string& name, const std::string& content) const {
  const std::string path = path_ + "/" + name;
  std::ofstream(path) << content;
  return path;
}

Server StartServer(const std::string& program, const std::vector<std::string>& args,
                   const TempDir& dir, const std::string& log_name) {
  Server server;
  Subprocess::Options options;
  options.argv = {BinDir() + "/" + program};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.output_path = dir.path() + "/" + log_name;
  absl::StatusOr<std::unique_ptr<Subprocess>> started = Subprocess::Start(options);
  if (!started.ok()) {
    ADD_FAILURE() << started.status();
    return server;
  }
  server.process = *std::move(started);
  const std::optional<std::string> line =
      server.process->WaitForOutput("LISTENING ", absl::Seconds(60));
  if (!line.has_value()) {
    ADD_FAILURE() << program << " did not start listening; output:\n" << server.process->Output();
    return server;
  }
  absl::string_view port_text(*line);
  port_text = port_text.substr(port_text.find("LISTENING ") + 10);
  if (!absl::SimpleAtoi(port_text, &server.port)) ADD_FAILURE() << "bad line: " << *line;
  return server;
}

std::shared_ptr<grpc::Channel> Connect(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

std::string HealthStatus(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return "error: " + status.error_message();
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

std::vector<std::string> ReflectedServices(const std::shared_ptr<grpc::Channel>& channel) {
  using grpc::reflection::v1alpha::ServerReflection;
  using grpc::reflection::v1alpha::ServerReflectionRequest;
  using grpc::reflection::v1alpha::ServerReflectionResponse;
  auto stub = ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->ServerReflectionInfo(&context);
  ServerReflectionRequest request;
  request.set_list_services("");
  ServerReflectionResponse response;
  if (!stream->Write(request) || !stream->Read(&response)) {
    return {"error: " + stream->Finish().error_message()};
  }
  stream->WritesDone();
  std::vector<std::string> names;
  for (const auto& service : response.list_services_response().service()) {
    names.push_back(service.name());
  }
  stream->Finish();
  std::sort(names.begin(), names.end());
  return names;
}

std::string ClusterConfig(const std::string& node_section, const std::string& router_keys) {
  return absl::StrCat("log:\n  level: warn\nnode:\n", node_section, R"(pool:
  bytes: 16MiB
  chunk_bytes: 512KiB
  initial_split: 0.5
emb:
  num_items: )",
                      kNumItems, R"(
router:
  health_check_interval_ms: 200
  failures_to_eject: 2
)",
                      router_keys);
}

std::string MakeTestCertificates(const TempDir& dir) {
  // `leaf NAME CN CA EXT` makes NAME.key / NAME.pem signed by CA with the extensions EXT.
  const std::string script = absl::StrCat(
      "set -e\ncd '", dir.path(), "'\n",
      "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
      "ca() { openssl req -x509 $ec -keyout $1.key -out $1.pem -days 2 -subj \"/CN=$2\"; }\n"
      "leaf() {\n"
      "  openssl req $ec -keyout $1.key -out $1.csr -subj \"/CN=$2\"\n"
      "  printf '%b' \"$4\" > $1.ext\n"
      "  openssl x509 -req -in $1.csr -CA $3.pem -CAkey $3.key -CAcreateserial -CAserial $1.srl "
      "-days 2 -extfile $1.ext -out $1.pem\n"
      "}\n"
      "ca ca helm-test-ca\n"
      "ca other_ca helm-other-ca\n"
      "leaf server helm-node ca "
      "'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth,clientAuth'\n"
      "leaf client helm-client ca 'extendedKeyUsage=clientAuth'\n");
  dir.Write("make_certs.sh", script);
  const std::string log = dir.path() + "/openssl.log";
  const int rc =
      std::system(absl::StrCat("sh '", dir.path(), "/make_certs.sh' > '", log, "' 2>&1").c_str());
  if (rc == 0) return "";
  std::ifstream in(log);
  return absl::StrCat("openssl failed (status ", rc, "):\n",
                      std::string(std::istreambuf_iterator<char>(in), {}));
}

std::string TlsSection(const TempDir& dir, bool require_client_cert) {
  const std::string& d = dir.path();
  return absl::StrCat("grpc:\n  tls:\n    cert_file: ", d, "/server.pem\n    key_file: ", d,
                      "/server.key\n    ca_file: ", d,
                      "/ca.pem\n    require_client_cert: ", require_client_cert ? "true" : "false",
                      "\n");
}

}  // namespace helm::e2e
