// helm-node and helm-router as real processes with /metrics on (--metrics-port -1: any free port,
// printed as "METRICS <port>"): after N requests, GET /metrics counts exactly those.
#include <httplib.h>
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "e2e_support.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "helm/v1/recommender.grpc.pb.h"

namespace helm::e2e {
namespace {

// The port of the process's "METRICS <port>" line; 0 when there is none.
int MetricsPort(Subprocess* process) {
  const std::optional<std::string> line = process->WaitForOutput("METRICS ", absl::Seconds(5));
  int port = 0;
  if (!line.has_value() || !absl::SimpleAtoi(line->substr(line->find("METRICS ") + 8), &port)) {
    return 0;
  }
  return port;
}

std::string Scrape(int port) {
  httplib::Client client("127.0.0.1", port);
  const httplib::Result result = client.Get("/metrics");
  if (!result || result->status != 200) return "error: GET /metrics failed";
  return result->body;
}

// Sends `count` valid Rank requests (users from `first_user`) to `address`; returns how many
// answered OK.
int SendRequests(const std::string& address, int first_user, int count) {
  auto stub = v1::Recommender::NewStub(Connect(address));
  int ok = 0;
  for (int i = 0; i < count; ++i) {
    const int64_t user = first_user + i;
    v1::RankRequest request;
    request.set_user_id(user);
    for (int e = 0; e < 30; ++e) {
      request.add_history_item_ids((user * 7919 + e * 104729) % 500000);
      request.add_history_actions(static_cast<int32_t>((user + e) % 8));
      request.add_history_timestamps_ms(1'700'000'000'000 + int64_t{e} * 45'000);
    }
    for (int c = 0; c < 16; ++c) request.add_candidate_item_ids((user * 31 + c * 977) % 500000);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::RankResponse response;
    if (stub->Rank(&context, request, &response).ok()) ++ok;
  }
  return ok;
}

TEST(MetricsProcess, NodeAndRouterCountTheRequestsTheyServed) {
  TempDir dir;
  Server node = StartServer("helm-node", {"--listen", "127.0.0.1:0", "--metrics-port", "-1"}, dir,
                            "node.log");
  ASSERT_GT(node.port, 0);
  const int node_metrics = MetricsPort(node.process.get());
  ASSERT_GT(node_metrics, 0) << node.process->Output();
  Server router = StartServer(
      "helm-router", {"--listen", "127.0.0.1:0", "--nodes", node.address(), "--metrics-port", "-1"},
      dir, "router.log");
  ASSERT_GT(router.port, 0);
  const int router_metrics = MetricsPort(router.process.get());
  ASSERT_GT(router_metrics, 0) << router.process->Output();

  constexpr int kViaRouter = 6;
  constexpr int kDirect = 4;
  ASSERT_EQ(SendRequests(router.address(), 1, kViaRouter), kViaRouter);
  ASSERT_EQ(SendRequests(node.address(), 100, kDirect), kDirect);

  const std::string node_text = Scrape(node_metrics);
  EXPECT_NE(node_text.find(absl::StrCat("helm_requests_total{method=\"Rank\",status=\"OK\"} ",
                                        kViaRouter + kDirect, "\n")),
            std::string::npos)
      << node_text;
  EXPECT_NE(node_text.find(
                absl::StrCat("helm_request_latency_seconds_count ", kViaRouter + kDirect, "\n")),
            std::string::npos);

  const std::string router_text = Scrape(router_metrics);
  EXPECT_NE(router_text.find(absl::StrCat("helm_requests_total{method=\"Rank\",status=\"OK\"} ",
                                          kViaRouter, "\n")),
            std::string::npos)
      << router_text;
  EXPECT_NE(router_text.find(absl::StrCat("helm_router_decisions_total{policy=\"helm\",node=\"",
                                          node.address(), "\"} ", kViaRouter, "\n")),
            std::string::npos)
      << router_text;
  EXPECT_NE(router_text.find(absl::StrCat("helm_router_node_state{node=\"", node.address(),
                                          "\",state=\"healthy\"} 1\n")),
            std::string::npos);
  EXPECT_NE(router_text.find("helm_router_retries_total 0\n"), std::string::npos);

  router.process->Signal(SIGTERM);
  node.process->Signal(SIGTERM);
  for (Subprocess* p : {router.process.get(), node.process.get()}) {
    const std::optional<int> status = p->Wait(absl::Seconds(30));
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(ExitCode(*status), 0) << p->Output();
  }
}

}  // namespace
}  // namespace helm::e2e
