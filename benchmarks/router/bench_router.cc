// helm_bench_router: the cost of one routing decision over 32 (and 256) nodes with realistic state.
//
// State: N routable nodes; 400K users resident (each on one or two nodes, as helm routing leaves
// them); every node's EMB summary a 2^20-bit Bloom filter over ~100K resident item ids; loads set.
// Requests: Zipf(1.0) users, 128 candidates (Zipf items), history 2K. Each policy picks for the
// same request stream. Ends with HELM_RESULT route_decision_ns_32_nodes and
// route_decision_ns_256_nodes (the helm policy's mean decision time), and
// route_decision_ns_32_nodes_new_users: the same requests from users with K/V on no node, placed
// with bounded loads (the decision plus ClusterState::OnPlaced, as the router's dispatch does).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "helm/common/bloom.h"
#include "helm/common/process.h"
#include "helm/route/node_update.h"
#include "helm/route/policy.h"

namespace helm::route {
namespace {

constexpr int kUsers = 400000;
constexpr int kItems = 1000000;
constexpr int kCandidates = 128;
constexpr int kRequests = 4096;

void Check(const absl::Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "helm_bench_router: %s\n", status.ToString().c_str());
    std::exit(1);
  }
}

// Zipf(s) sampler over [0, n) by inverse CDF on a precomputed table.
class Zipf {
 public:
  Zipf(int n, double s) : cdf_(n) {
    double sum = 0;
    for (int i = 0; i < n; ++i) cdf_[i] = (sum += 1.0 / std::pow(i + 1, s));
    for (double& c : cdf_) c /= sum;
  }
  int operator()(std::mt19937_64& rng) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<int>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

struct World {
  ClusterState cluster;
  std::vector<int64_t> users;
  std::vector<std::vector<int64_t>> candidates;

  explicit World(int nodes) {
    std::mt19937_64 rng(1);
    for (int n = 0; n < nodes; ++n) {
      cluster.AddNode("10.0.0." + std::to_string(n) + ":50061");
      cluster.SetHealthy(n, true);
    }
    const Zipf items(kItems, 1.0);
    for (int n = 0; n < nodes; ++n) {
      NodeUpdate state;
      state.load = NodeLoadUpdate{.in_flight = static_cast<int>(rng() % 12), .capacity = 8};
      BloomFilter filter(1 << 20, 2, 17);
      for (int i = 0; i < 100000; ++i) filter.Add(items(rng));
      state.emb_summary = EmbSummaryUpdate{.bits = filter.ToBytes(), .num_hashes = 2, .seed = 17};
      for (int64_t u = n; u < kUsers; u += nodes) {
        state.kv_events.push_back(
            {.user_id = u, .cached_tokens = static_cast<int32_t>(100 + rng() % 2000)});
        if (rng() % 4 == 0) {  // a quarter also hold a prefix on a second node
          NodeUpdate other;
          other.kv_events.push_back({.user_id = u, .cached_tokens = 50});
          Check(cluster.ApplyUpdate(static_cast<int>((n + 1) % nodes), other));
        }
      }
      Check(cluster.ApplyUpdate(n, state));
    }
    const Zipf user_dist(kUsers, 1.0);
    for (int r = 0; r < kRequests; ++r) {
      users.push_back(user_dist(rng));
      std::vector<int64_t> c(kCandidates);
      for (auto& id : c) id = items(rng);
      candidates.push_back(std::move(c));
    }
  }
};

World& TheWorld(int nodes) {
  static World* world32 = new World(32);
  if (nodes == 32) return *world32;
  static World* world256 = new World(256);
  return *world256;
}

// What the router reads of request `r` (a 2048-event history; its start fingerprint computed per
// request, as the router does). `new_user`: from a user resident nowhere.
RouteRequest RequestFor(const World& world, int r, bool new_user = false) {
  const int64_t user = world.users[r] + (new_user ? kUsers : 0);
  return RouteRequest{.user_id = user,
                      .history_length = 2048,
                      .history_start = HistoryStartFingerprint(user, 0, 0),
                      .candidate_ids = world.candidates[r].data(),
                      .num_candidates = kCandidates};
}

double MeasurePolicyNs(const Policy& policy, int nodes, int rounds, bool new_users = false) {
  World& world = TheWorld(nodes);
  int64_t sink = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < rounds; ++round) {
    for (int r = 0; r < kRequests; ++r) {
      const RouteDecision decision =
          policy.Decide(RequestFor(world, r, new_users), world.cluster, {});
      if (decision.new_user) world.cluster.OnPlaced(decision.node);
      sink += decision.node;
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  benchmark::DoNotOptimize(sink);
  return std::chrono::duration<double, std::nano>(elapsed).count() / (double(rounds) * kRequests);
}

void BM_Route(benchmark::State& state, const char* name) {
  RouterOptions options;
  options.policy = name;
  auto policy = CreatePolicy(options);
  World& world = TheWorld(32);
  const NodeSet none;
  int r = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(policy.value()->Pick(RequestFor(world, r), world.cluster, none));
    r = (r + 1) % kRequests;
  }
}
BENCHMARK_CAPTURE(BM_Route, helm, "helm");
BENCHMARK_CAPTURE(BM_Route, round_robin, "round_robin");
BENCHMARK_CAPTURE(BM_Route, least_loaded, "least_loaded");
BENCHMARK_CAPTURE(BM_Route, consistent_hash, "consistent_hash");
BENCHMARK_CAPTURE(BM_Route, kv_affinity, "kv_affinity");

}  // namespace
}  // namespace helm::route

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  helm::route::RouterOptions options;
  options.policy = "helm";
  auto helm_policy = helm::route::CreatePolicy(options);
  options.policy = "round_robin";
  auto rr_policy = helm::route::CreatePolicy(options);
  double helm_ns[2], rr_ns[2];
  const int sizes[2] = {32, 256};
  for (int i = 0; i < 2; ++i) {
    helm::route::MeasurePolicyNs(*helm_policy.value(), sizes[i], 2);  // warm up
    helm_ns[i] = helm::route::MeasurePolicyNs(*helm_policy.value(), sizes[i], 25);
    rr_ns[i] = helm::route::MeasurePolicyNs(*rr_policy.value(), sizes[i], 25);
    std::printf(
        "\nrouting decision over %d nodes, 400K resident users, 128 candidates (16 sampled):\n"
        "  helm %.0f ns, round_robin %.0f ns (mean of %d decisions each)\n",
        sizes[i], helm_ns[i], rr_ns[i], 25 * helm::route::kRequests);
  }
  const double new_user_ns = helm::route::MeasurePolicyNs(*helm_policy.value(), 32, 25, true);
  std::printf("  helm, users with K/V on no node (bounded-load placement): %.0f ns over 32 nodes\n",
              new_user_ns);
  std::printf("HELM_RESULT route_decision_ns_32_nodes %.0f\n", helm_ns[0]);
  std::printf("HELM_RESULT route_decision_ns_256_nodes %.0f\n", helm_ns[1]);
  std::printf("HELM_RESULT route_decision_ns_32_nodes_new_users %.0f\n", new_user_ns);
  return 0;
}
