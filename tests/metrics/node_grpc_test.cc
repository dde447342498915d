// helm-node's gRPC edge with real gRPC on 127.0.0.1, in process: bounded message sizes (an
// oversized request is refused, the server keeps serving; the router's channels to nodes bounded
// by the largest valid messages), cancelled calls that are not computed,
// and the node's /metrics over HTTP.
#include <httplib.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "apps/app.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "helm/common/clock.h"
#include "helm/metrics/exporter.h"
#include "helm/metrics/registry.h"
#include "helm/rpc/limits.h"
#include "helm/rpc/server.h"
#include "helm/serve/node_server.h"
#include "helm/v1/node.pb.h"
#include "helm/v1/recommender.grpc.pb.h"

namespace helm::serve {
namespace {

config::Config SmallConfig(int max_batch, int max_batch_wait_us) {
  config::Config config;
  config.node.id = "node-test";
  config.node.workers = 1;
  config.node.max_batch = max_batch;
  config.node.max_batch_wait_us = max_batch_wait_us;
  config.node.queue_capacity = 16;
  config.node.max_history = 64;
  config.node.max_candidates = 32;
  config.pool.bytes = int64_t{8} << 20;
  config.pool.chunk_bytes = int64_t{256} << 10;
  config.pool.backend = "cpu";
  config.emb.num_items = 20000;
  config.model.kernels = "cpu";
  return config;
}

v1::RankRequest MakeRequest(int64_t user, int history, int candidates) {
  v1::RankRequest request;
  request.set_user_id(user);
  for (int i = 0; i < history; ++i) {
    request.add_history_item_ids((user * 7919 + i * 104729) % 20000);
    request.add_history_actions(static_cast<int32_t>((user + i) % 8));
    request.add_history_timestamps_ms(1'700'000'000'000 + int64_t{i} * 45'000);
  }
  for (int c = 0; c < candidates; ++c)
    request.add_candidate_item_ids((user * 31 + c * 977) % 20000);
  return request;
}

// A node server with real gRPC on 127.0.0.1 (any free port) on an injected clock.
struct TestNode {
  std::unique_ptr<NodeServer> node;
  std::unique_ptr<rpc::Server> server;
  std::unique_ptr<v1::Recommender::Stub> stub;
  metrics::Registry registry;

  TestNode(const config::Config& config, Clock* clock) {
    auto created = NodeServer::Create(config, clock);
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return;
    node = *std::move(created);
    node->RegisterMetrics(&registry);
    rpc::ServerOptions options = app::GrpcServerOptions(config, "127.0.0.1:0");
    options.services = node->services();
    options.drainer = node->drainer();
    auto started = rpc::Server::Start(options);
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return;
    server = *std::move(started);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    stub = v1::Recommender::NewStub(grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(server->port()), grpc::InsecureChannelCredentials(), args));
  }
  ~TestNode() {
    if (server != nullptr) server->Shutdown(absl::Seconds(5), [this] { node->Stop(); });
    if (node != nullptr) node->Stop();
  }
  grpc::Status Rank(const v1::RankRequest& request, v1::RankResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return stub->Rank(&context, request, response);
  }
};

// Polls `done` (wall time, up to 10 s); true once it holds.
template <class F>
bool Eventually(F done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

TEST(GrpcLimits, MaxReceiveBytesIsTheRankRequestBoundPlusHeadroom) {
  const config::Config config = SmallConfig(1, 0);
  const rpc::ServerOptions options = app::GrpcServerOptions(config, "127.0.0.1:0");
  EXPECT_EQ(options.max_receive_bytes, rpc::MaxRankRequestBytes(64, 32));
  EXPECT_EQ(rpc::MaxRankRequestBytes(64, 32),
            24 * 64 + 9 * 32 + 46 + rpc::kRankRequestHeadroomBytes);
  // The largest valid request fits, with a request id of 1 KiB.
  v1::RankRequest largest = MakeRequest(int64_t{1} << 62, 64, 32);
  largest.set_top_k(32);
  largest.set_request_id(std::string(1024, 'r'));
  EXPECT_LT(static_cast<int64_t>(largest.ByteSizeLong()), options.max_receive_bytes);
  // Configured explicitly, the key wins.
  config::Config explicit_limit = config;
  explicit_limit.grpc.max_receive_bytes = 12345;
  EXPECT_EQ(app::GrpcServerOptions(explicit_limit, "x").max_receive_bytes, 12345);
}

TEST(GrpcLimits, RouterChannelsToNodesAreBoundedByTheLargestValidMessages) {
  config::Config config = SmallConfig(1, 0);
  const rpc::ChannelLimits limits = app::NodeChannelLimits(config);
  // Send: what the node's server accepts.
  EXPECT_EQ(limits.max_send_bytes, app::GrpcServerOptions(config, "x").max_receive_bytes);
  // Receive: the largest reply fits (every candidate scored, the largest request id echoed) ...
  v1::RankResponse reply;
  reply.set_request_id(std::string(rpc::kRankRequestHeadroomBytes - 100, 'r'));
  for (int i = 0; i < config.node.max_candidates; ++i) {
    v1::ScoredItem* item = reply.add_items();
    item->set_item_id(std::numeric_limits<int64_t>::max() - i);
    item->set_score(-1.5f);
  }
  reply.mutable_info()->set_node_id(config.node.id);
  reply.mutable_info()->set_cached_tokens(std::numeric_limits<int32_t>::max());
  reply.mutable_info()->set_queue_us(std::numeric_limits<int64_t>::max());
  reply.mutable_info()->set_compute_us(std::numeric_limits<int64_t>::max());
  reply.mutable_info()->set_resident_tokens(std::numeric_limits<int32_t>::max());
  EXPECT_LE(static_cast<int64_t>(reply.ByteSizeLong()), limits.max_receive_bytes);
  // ... and so does a full state snapshot of a node whose KV cache holds as many users as it
  // can (one block each), with its EMB summary.
  const int64_t max_users = config.pool.bytes / config::KvBlockBytes(config.model, config.kv);
  ASSERT_GT(max_users, 0);
  v1::NodeState snapshot;
  snapshot.set_node_id(config.node.id);
  snapshot.set_seq(std::numeric_limits<uint64_t>::max());
  snapshot.set_full_snapshot(true);
  snapshot.mutable_load()->set_in_flight(std::numeric_limits<int32_t>::max());
  snapshot.mutable_load()->set_ewma_service_us(1e9);
  for (int64_t u = 0; u < max_users; ++u) {
    v1::KvResidencyEvent* event = snapshot.add_kv_events();
    event->set_user_id(std::numeric_limits<int64_t>::max() - u);
    event->set_cached_tokens(std::numeric_limits<int32_t>::max());
    event->set_history_start(std::numeric_limits<uint64_t>::max());
  }
  snapshot.mutable_emb_summary()->set_bits(std::string(config.node.emb_summary_bits / 8, '\xff'));
  snapshot.mutable_emb_summary()->set_num_hashes(config.node.emb_summary_hashes);
  snapshot.mutable_emb_summary()->set_resident_rows(std::numeric_limits<int64_t>::max());
  snapshot.mutable_emb_summary()->set_seed(std::numeric_limits<uint64_t>::max());
  snapshot.set_kv_resident_users(max_users);
  EXPECT_LE(static_cast<int64_t>(snapshot.ByteSizeLong()), limits.max_receive_bytes);
  // Far below the 64 MiB the channels had before: the bound follows the config.
  EXPECT_LT(limits.max_receive_bytes, 4 << 20);
  // A bigger pool holds more users; the receive bound grows with it.
  config.pool.bytes *= 4;
  EXPECT_GT(app::NodeChannelLimits(config).max_receive_bytes, limits.max_receive_bytes);
  // An explicit grpc.max_receive_bytes sets the send bound too.
  config.grpc.max_receive_bytes = 12345;
  EXPECT_EQ(app::NodeChannelLimits(config).max_send_bytes, 12345);
}

TEST(GrpcLimits, OversizedRequestGetsResourceExhaustedAndTheServerKeepsServing) {
  FakeClock clock(1'000'000);
  TestNode t(SmallConfig(/*max_batch=*/1, /*max_batch_wait_us=*/0), &clock);
  ASSERT_NE(t.stub, nullptr);
  // 10000 events: far past max_receive_bytes (about 66 KiB here), about 240 KB on the wire.
  v1::RankResponse response;
  const grpc::Status oversized = t.Rank(MakeRequest(1, 10000, 8), &response);
  EXPECT_EQ(oversized.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << oversized.error_message();
  const grpc::Status valid = t.Rank(MakeRequest(2, 40, 8), &response);
  EXPECT_TRUE(valid.ok()) << valid.error_message();
  EXPECT_EQ(response.items_size(), 8);
  EXPECT_EQ(t.node->core().counters().completions, 1);
}

// One Rank call made asynchronously; its status once done.
struct AsyncRank {
  grpc::ClientContext context;
  v1::RankRequest request;
  v1::RankResponse response;
  absl::Mutex mu;
  std::optional<grpc::Status> status ABSL_GUARDED_BY(mu);

  void Start(v1::Recommender::Stub* stub) {
    stub->async()->Rank(&context, &request, &response, [this](grpc::Status s) {
      absl::MutexLock lock(&mu);
      status = std::move(s);
    });
  }
  grpc::Status Wait() {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](std::optional<grpc::Status>* s) { return s->has_value(); }, &status));
    return *status;
  }
};

class CancelledCall : public ::testing::TestWithParam<bool> {};

// A call waits in the queue for its batch to fill (max_batch 2, and the fake clock never lets the
// batch wait run out). Its client gives up: it cancels, or its deadline passes. The next request
// fills the batch; the cancelled call is answered CANCELLED without being computed.
TEST_P(CancelledCall, WhileQueuedIsNotComputed) {
  const bool by_deadline = GetParam();
  FakeClock clock(1'000'000);
  TestNode t(SmallConfig(/*max_batch=*/2, /*max_batch_wait_us=*/1'000'000), &clock);
  ASSERT_NE(t.stub, nullptr);

  AsyncRank abandoned;
  abandoned.request = MakeRequest(7, 40, 8);
  if (by_deadline) {
    abandoned.context.set_deadline(std::chrono::system_clock::now() +
                                   std::chrono::milliseconds(200));
  }
  abandoned.Start(t.stub.get());
  ASSERT_TRUE(Eventually([&] { return t.node->core().Load().queue_depth == 1; }));
  if (!by_deadline) abandoned.context.TryCancel();
  const grpc::Status client_status = abandoned.Wait();
  EXPECT_EQ(client_status.error_code(),
            by_deadline ? grpc::StatusCode::DEADLINE_EXCEEDED : grpc::StatusCode::CANCELLED);
  // The node saw the cancel (gRPC tells the server asynchronously).
  ASSERT_TRUE(Eventually([&] { return t.node->cancelled_calls() == 1; }));
  EXPECT_EQ(t.node->core().Load().queue_depth, 1);  // still queued

  v1::RankResponse response;
  const grpc::Status second = t.Rank(MakeRequest(8, 40, 8), &response);
  ASSERT_TRUE(second.ok()) << second.error_message();
  EXPECT_EQ(response.info().batch_size(), 1);  // computed alone

  // A batch is counted after its replies are sent.
  ASSERT_TRUE(Eventually([&] { return t.node->core().counters().batches == 1; }));
  const NodeCounters counters = t.node->core().counters();
  EXPECT_EQ(counters.completions, 1);
  EXPECT_EQ(counters.failures, 1);
  EXPECT_EQ(counters.batches, 1);
  EXPECT_EQ(counters.batched_requests, 1);
  const std::string text = t.registry.Render();
  EXPECT_NE(text.find("helm_requests_total{method=\"Rank\",status=\"CANCELLED\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("helm_requests_total{method=\"Rank\",status=\"OK\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("helm_cancelled_calls_total 1\n"), std::string::npos);
  EXPECT_NE(text.find("helm_batch_size_count 1\n"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(ByClient, CancelledCall, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Deadline" : "Cancel"; });

TEST(NodeMetrics, MetricsOverHttpCountTheRequestsServed) {
  FakeClock clock(1'000'000);
  TestNode t(SmallConfig(/*max_batch=*/1, /*max_batch_wait_us=*/0), &clock);
  ASSERT_NE(t.stub, nullptr);
  auto exporter = metrics::Exporter::Start(metrics::ExporterOptions{}, &t.registry);
  ASSERT_TRUE(exporter.ok()) << exporter.status();

  constexpr int kRequests = 5;
  for (int i = 0; i < kRequests; ++i) {
    v1::RankResponse response;
    ASSERT_TRUE(t.Rank(MakeRequest(100 + i, 30, 4), &response).ok());
  }
  v1::RankResponse response;
  EXPECT_EQ(t.Rank(MakeRequest(-1, 30, 4), &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // A batch is counted after its replies are sent.
  ASSERT_TRUE(Eventually([&] { return t.node->core().counters().batches == kRequests; }));
  httplib::Client client("127.0.0.1", (*exporter)->port());
  const httplib::Result got = client.Get("/metrics");
  ASSERT_TRUE(got) << "GET /metrics failed";
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->get_header_value("Content-Type"), metrics::kTextContentType);
  const std::string& body = got->body;
  EXPECT_NE(body.find("helm_requests_total{method=\"Rank\",status=\"OK\"} 5\n"), std::string::npos)
      << body;
  EXPECT_NE(body.find("helm_requests_total{method=\"Rank\",status=\"INVALID_ARGUMENT\"} 1\n"),
            std::string::npos);
  EXPECT_NE(body.find("helm_request_latency_seconds_count 5\n"), std::string::npos);
  EXPECT_NE(body.find("helm_queue_time_seconds_count 5\n"), std::string::npos);
  EXPECT_NE(body.find("helm_compute_time_seconds_count 5\n"), std::string::npos);
  EXPECT_NE(body.find("helm_batches_total 5\n"), std::string::npos);
  EXPECT_NE(body.find("helm_kv_requested_tokens_total 150\n"), std::string::npos);
  EXPECT_NE(body.find("helm_pool_emb_share{kind=\"target\"}"), std::string::npos);
  // The cold cache fetched every row the first requests looked up: time was spent on it.
  const size_t fetch = body.find("\nhelm_emb_fetch_seconds_total ");
  ASSERT_NE(fetch, std::string::npos) << body;
  EXPECT_GT(std::stod(body.substr(fetch + 30)), 0.0) << body.substr(fetch, 60);
  // The ghost lists' counters are exported (they count only once a cache has evicted).
  EXPECT_NE(body.find("\nhelm_emb_ghost_hits_total "), std::string::npos) << body;
  EXPECT_NE(body.find("\nhelm_kv_ghost_hit_tokens_total "), std::string::npos) << body;
  EXPECT_EQ(client.Get("/other")->status, 404);
}

TEST(NodeMetrics, TheSplitControllersDecisionsFreezeAndModeAreExported) {
  FakeClock clock(1'000'000);
  config::Config config = SmallConfig(/*max_batch=*/1, /*max_batch_wait_us=*/0);
  config.control.policy = "heuristic";
  config.control.interval_ms = 3'600'000;  // the control thread stays out of the way
  TestNode t(config, &clock);
  ASSERT_NE(t.node, nullptr);
  StatsWindow settled;
  settled.committed_split = settled.target_split = 0.5;
  settled.requests.completions = 500;
  settled.latency_us.RecordN(10'000, 500);
  t.node->core().Control(settled);
  t.node->core().FreezeControl(true);
  const std::string text = t.registry.Render();
  EXPECT_NE(text.find("helm_control_decisions_total 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("helm_control_reversals_total 0\n"), std::string::npos);
  EXPECT_NE(text.find("helm_control_frozen 1\n"), std::string::npos);
  EXPECT_NE(text.find("helm_control_mode{policy=\"heuristic\",mode=\"heuristic\"} 1\n"),
            std::string::npos);
}

}  // namespace
}  // namespace helm::serve
