// Target node_state: the router core fed NodeState messages (its nodes' state streams), then
// asked what a routing decision asks, and the residency- and load-aware policies' decisions.
//
// Input: a 1-byte header (low 2 bits + 1: the number of nodes), then records of [1 byte: node
// index (mod nodes)][2 bytes little-endian: length][length bytes: a serialized v1::NodeState];
// a record cut short by the end of the input takes the bytes that are left.
#include <cstring>
#include <vector>

#include "fuzz_targets.h"
#include "helm/route/cluster_state.h"
#include "helm/route/policy.h"
#include "helm/v1/node.pb.h"
#include "router/node_update_proto.h"

namespace helm::fuzz {

int FuzzNodeState(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int nodes = 1 + (data[0] & 3);
  route::ClusterState cluster;
  for (int n = 0; n < nodes; ++n) {
    HELM_FUZZ_CHECK(cluster.AddNode("node-" + std::to_string(n)) == n);
    cluster.SetHealthy(n, true);
  }
  std::vector<int64_t> users;
  size_t at = 1;
  while (at + 3 <= size) {
    const int node = data[at] % nodes;
    size_t length = data[at + 1] | (size_t{data[at + 2]} << 8);
    at += 3;
    length = std::min(length, size - at);
    v1::NodeState state;
    if (state.ParseFromArray(data + at, static_cast<int>(length))) {
      for (const v1::KvResidencyEvent& e : state.kv_events()) users.push_back(e.user_id());
      (void)cluster.ApplyUpdate(node, router::ToNodeUpdate(std::move(state)));
    }
    at += length;
  }

  // The per-request queries over whatever was applied.
  users.push_back(0);
  std::vector<int32_t> tokens(static_cast<size_t>(nodes));
  for (int64_t user : users) {
    cluster.CachedTokens(user, absl::MakeSpan(tokens));
    for (int32_t t : tokens) HELM_FUZZ_CHECK(t >= 0);
    cluster.ReusableTokens(user, 1 << 14, /*history_start=*/0, absl::MakeSpan(tokens));
  }
  std::vector<int64_t> items(users.begin(), users.end());
  std::vector<int32_t> counts(static_cast<size_t>(nodes), 0);
  cluster.EmbCounts(items.data(), static_cast<int>(items.size()), route::NodeSet::FirstN(nodes),
                    absl::MakeSpan(counts));
  for (int n = 0; n < nodes; ++n) {
    HELM_FUZZ_CHECK(counts[static_cast<size_t>(n)] >= 0 &&
                    counts[static_cast<size_t>(n)] <= static_cast<int32_t>(items.size()));
    const double load = cluster.Load(n);
    HELM_FUZZ_CHECK(load >= 0 && load <= 1);
    (void)cluster.committed_split(n);
    (void)cluster.kv_resident_users(n);
    (void)cluster.draining(n);
  }
  (void)cluster.Routable();

  // Routing decisions over that state: a routable node outside `exclude`, or -1.
  for (const char* name : {"helm", "kv_affinity", "least_loaded"}) {
    route::RouterOptions options;
    options.policy = name;
    absl::StatusOr<std::unique_ptr<route::Policy>> policy = route::CreatePolicy(options);
    HELM_FUZZ_CHECK(policy.ok());
    const route::NodeSet exclude{0};
    for (int64_t user : users) {
      const route::RouteRequest request{.user_id = user,
                                        .history_length = 64,
                                        .history_start = 0,
                                        .candidate_ids = items.data(),
                                        .num_candidates = static_cast<int32_t>(items.size())};
      const route::RouteDecision d = (*policy)->Decide(request, cluster, exclude);
      HELM_FUZZ_CHECK(d.node >= -1 && d.node < nodes);
      HELM_FUZZ_CHECK(d.node != 0);
      if (d.node >= 0) HELM_FUZZ_CHECK(cluster.Routable().Contains(d.node));
      if (d.node >= 0) cluster.OnPlaced(d.node);
    }
  }
  for (int n = 0; n < nodes; ++n) cluster.ForgetStreamedState(n);
  return 0;
}

}  // namespace helm::fuzz
