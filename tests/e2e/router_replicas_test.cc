// Router replicas: two helm-router processes in front of the same two helm-node processes, each
// subscribed on its own to every node's state stream. The load generator's requests are split so
// that each user's consecutive requests alternate between the routers: a router never saw the
// reply to the user's previous request, and knows where its K/V is only from the nodes' residency
// streams. Both must still send the user to the node holding it, so the KV token hit ratio
// through two routers stays within 10% of the ratio through one (same workload, same seed, a
// fresh cluster for each).
#include <signal.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/grpc_transport.h"
#include "bench/open_loop.h"
#include "bench/sleeper.h"
#include "bench/stats.h"
#include "bench/transport.h"
#include "cluster_support.h"
#include "e2e_support.h"
#include "gtest/gtest.h"
#include "helm/cluster/local_cluster.h"
#include "helm/common/clock.h"
#include "helm/workload/generator.h"

namespace helm::e2e {
namespace {

// Sends each request through one of several transports (one per router): a user's k-th request
// goes to transport (user_id + k) % n, so consecutive requests of a user never share a router.
// Thread-safety: as Transport (Prepare, Send and CancelAll from the core's one thread).
class AlternatingTransport final : public bench::Transport {
 public:
  explicit AlternatingTransport(std::vector<bench::Transport*> transports)
      : transports_(std::move(transports)) {}

  std::unique_ptr<bench::PreparedRequest> Prepare(const workload::Request& request) override {
    const int64_t k = requests_of_user_[request.user_id]++;
    const size_t index = static_cast<size_t>(request.user_id + k) % transports_.size();
    auto prepared = std::make_unique<Prepared>();
    prepared->index = index;
    prepared->inner = transports_[index]->Prepare(request);
    ++sent_per_transport_.try_emplace(index, 0).first->second;
    return prepared;
  }

  void Send(std::unique_ptr<bench::PreparedRequest> request, int64_t deadline_us,
            Done done) override {
    // Only Prepare above makes requests for this transport.
    auto* prepared = static_cast<Prepared*>(request.get());
    transports_[prepared->index]->Send(std::move(prepared->inner), deadline_us, std::move(done));
  }

  void CancelAll() override {
    for (bench::Transport* transport : transports_) transport->CancelAll();
  }

  // Requests prepared for transport `index` so far.
  int64_t prepared_for(size_t index) const {
    auto it = sent_per_transport_.find(index);
    return it == sent_per_transport_.end() ? 0 : it->second;
  }

 private:
  struct Prepared final : bench::PreparedRequest {
    size_t index = 0;
    std::unique_ptr<bench::PreparedRequest> inner;
  };

  const std::vector<bench::Transport*> transports_;
  absl::flat_hash_map<int64_t, int64_t> requests_of_user_;
  absl::flat_hash_map<size_t, int64_t> sent_per_transport_;
};

// A steady Zipf stream of MovieLens-like users: sized for a 2-core machine (a few seconds at a
// small rate), with enough returning users that K/V reuse is the dominant effect.
workload::WorkloadOptions SteadyWorkload() {
  workload::WorkloadOptions options;
  options.profile = "movielens-20m";
  options.regime = "steady";
  options.rate_per_s = 30;
  options.duration_s = 10;
  options.candidates = 32;
  options.max_items = kNumItems;
  options.max_history = 512;
  options.max_users = 300;
  options.seed = static_cast<uint64_t>(::testing::UnitTest::GetInstance()->random_seed());
  options.slo_ms = 1000;
  return options;
}

struct Measured {
  bench::Summary summary;
  std::vector<int64_t> per_router;  // requests sent through each router
};

// Starts a fresh cluster of two nodes behind `num_routers` routers (helm policy), runs the
// workload through them and returns what it measured. Router 0 is the cluster's own; the others
// are started beside it with the same config and node list.
Measured RunThroughRouters(int num_routers, const workload::WorkloadOptions& workload) {
  Measured measured;
  TempDir dir;
  std::unique_ptr<cluster::LocalCluster> local = StartCluster(dir, 2, "helm", ClusterConfig());
  if (local == nullptr) return measured;

  std::vector<std::string> routers = {local->router_address()};
  std::vector<Server> replicas;
  for (int r = 1; r < num_routers; ++r) {
    replicas.push_back(StartServer(
        "helm-router",
        {"--config", dir.Write("router.yaml", ClusterConfig()), "--listen", "127.0.0.1:0",
         "--nodes", absl::StrJoin(local->node_addresses(), ","), "--policy", "helm"},
        dir, absl::StrCat("router-", r, ".log")));
    if (replicas.back().port == 0) return measured;
    EXPECT_TRUE(cluster::WaitServing(replicas.back().address(), absl::Seconds(30)))
        << "router-" << r << " did not become SERVING";
    routers.push_back(replicas.back().address());
  }

  Clock* clock = Clock::Real();
  bench::RealSleeper sleeper(clock);
  // The core goes after the transports: their destructors wait for every callback into it.
  std::unique_ptr<bench::OpenLoop> core;
  std::vector<std::unique_ptr<bench::GrpcTransport>> transports;
  std::vector<bench::Transport*> raw;
  for (const std::string& router : routers) {
    auto transport =
        bench::GrpcTransport::Connect(router, /*connect_timeout_ms=*/5000, /*top_k=*/10, clock);
    EXPECT_TRUE(transport.ok()) << transport.status();
    if (!transport.ok()) return measured;
    raw.push_back(transport->get());
    transports.push_back(*std::move(transport));
  }
  AlternatingTransport split(raw);
  auto generator = workload::Generator::Create(workload);
  EXPECT_TRUE(generator.ok()) << generator.status();
  if (!generator.ok()) return measured;
  bench::OpenLoopOptions core_options;
  core_options.deadline_ms = 5000;
  core_options.slo_ms = workload.slo_ms;
  auto created = bench::OpenLoop::Create(core_options, generator->get(), clock, &sleeper, &split);
  EXPECT_TRUE(created.ok()) << created.status();
  if (!created.ok()) return measured;
  core = *std::move(created);

  const bench::RunResult run = core->Run(clock->NowMicros() + 20'000);
  transports.clear();
  measured.summary = bench::Summarize(run, absl::StrCat(num_routers, " router(s)"), 0,
                                      run.duration_us, workload.slo_ms * 1000);
  for (size_t r = 0; r < routers.size(); ++r) measured.per_router.push_back(split.prepared_for(r));

  for (size_t r = 0; r < replicas.size(); ++r) {
    replicas[r].process->Signal(SIGTERM);
    const std::optional<int> status = replicas[r].process->Wait(absl::Seconds(10));
    EXPECT_TRUE(status.has_value() && ExitCode(*status) == 0) << "router-" << r + 1;
  }
  EXPECT_EQ(local->Stop(absl::Seconds(10)), 0);
  return measured;
}

TEST(RouterReplicas, TwoRoutersReuseKvWithinTenPercentOfOneRouter) {
  const workload::WorkloadOptions workload = SteadyWorkload();
  const Measured one = RunThroughRouters(1, workload);
  const Measured two = RunThroughRouters(2, workload);
  std::printf("workload seed %llu (rerun with --gtest_random_seed=%llu)\n",
              static_cast<unsigned long long>(workload.seed),
              static_cast<unsigned long long>(workload.seed));
  std::printf(
      "KV token hit ratio: one router %.3f (%lld / %lld OK), two routers %.3f (%lld / %lld OK; "
      "%lld and %lld requests through each)\n",
      one.summary.kv_token_hit_ratio, static_cast<long long>(one.summary.ok),
      static_cast<long long>(one.summary.scheduled), two.summary.kv_token_hit_ratio,
      static_cast<long long>(two.summary.ok), static_cast<long long>(two.summary.scheduled),
      static_cast<long long>(two.per_router.size() > 0 ? two.per_router[0] : 0),
      static_cast<long long>(two.per_router.size() > 1 ? two.per_router[1] : 0));
  std::printf("HELM_RESULT replicas_kv_hit_ratio_one_router %.4f\n",
              one.summary.kv_token_hit_ratio);
  std::printf("HELM_RESULT replicas_kv_hit_ratio_two_routers %.4f\n",
              two.summary.kv_token_hit_ratio);
  ASSERT_GT(one.summary.scheduled, 0);
  ASSERT_EQ(two.summary.scheduled, one.summary.scheduled) << "the same workload both times";
  ASSERT_GT(one.summary.ok, 0.95 * one.summary.scheduled);
  ASSERT_GT(two.summary.ok, 0.95 * two.summary.scheduled);
  // Both routers carried a real share of the traffic.
  ASSERT_EQ(two.per_router.size(), 2u);
  EXPECT_GT(two.per_router[0], two.summary.scheduled / 3);
  EXPECT_GT(two.per_router[1], two.summary.scheduled / 3);
  // Residency routing is at work at all (not two equal ratios near zero).
  EXPECT_GT(one.summary.kv_token_hit_ratio, 0.3);
  EXPECT_NEAR(two.summary.kv_token_hit_ratio, one.summary.kv_token_hit_ratio,
              0.1 * one.summary.kv_token_hit_ratio);
}

}  // namespace
}  // namespace helm::e2e
