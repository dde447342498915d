// Routing policies: pick the node for a request from the router's ClusterState.
//
//   helm             score(n) = w_kv * kv(n) + w_emb * emb(n) - w_load * load(n)
//                               - w_mem * (1 - kv(n)) * pressure(n)                 (DESIGN.md §5)
//                    kv: the user's reusable cached prefix on n over the history length; emb: the
//                    share of sampled candidate ids in n's EMB summary; load: ClusterState::Load;
//                    pressure: n's KV memory pressure,
//                      pressure(n) = clamp(max(0, occupancy(n) - mem_knee) / (1 - mem_knee)
//                                          + mem_eviction_weight * eviction_rate(n), 0, 1),
//                    charged in proportion to the K/V the request would add there (1 - kv), so it
//                    repels new users as a queue does while a user's own node keeps its affinity
//                    (w_mem 0: pressure is taken as 0 everywhere, in the bound below too).
//                    K/V binds a user to its nodes only where it spares at least kv_min_share of
//                    the request's token passes (reusable tokens >= kv_min_share x (history +
//                    candidates)): with a short history and many candidates it saves next to
//                    nothing, while following the user makes each node's arrivals as bursty as
//                    the users' own, a queue that costs more (in the paper-table cells, up to 9%
//                    on P99). A user with K/V binding it to no candidate (a new user) is placed
//                    with bounded loads: with placed(n) its recent new-user placements
//                    (ClusterState), T their sum over candidates, headroom(n) = max(0.05, 1 -
//                    pressure(n)) and H their sum, node n is eligible only while
//                      placed(n) + 1 <= ceil((1 + placement_slack) * (T + 1) * headroom(n) / H),
//                    i.e. within (1 + slack) x a share proportional to its memory headroom (equal
//                    shares among equal nodes; with slack 0, equal nodes take new users in turn).
//                    The best score among eligible nodes wins, so EMB locality and load only choose
//                    inside the bound (no herding on the node whose EMB cache is warmest). Should
//                    none be eligible (a race), the node furthest below its share wins. Exact ties
//                    break by rendezvous hashing on the user.
//   round_robin      the next routable node in turn
//   least_loaded     the lowest load
//   consistent_hash  rendezvous (highest random weight) hashing of the user over routable nodes
//   kv_affinity      the node with the longest cached prefix (residency only); on a miss,
//                    consistent hashing (no EMB term, so nothing to herd on: users spread by hash)
//
// Every policy costs O(nodes) per decision plus, for helm, O(emb_sample x nodes / 64) word reads;
// none reads the history, none allocates up to 1024 nodes. Part of the routing core (no gRPC, no
// clock). Thread-safe: Decide/Pick may run concurrently on many threads; they only read the
// cluster state. The caller reports what it dispatched (ClusterState::OnDispatch, and OnPlaced
// for a RouteDecision with new_user set).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "helm/common/hash.h"
#include "helm/route/cluster_state.h"
#include "helm/route/node_set.h"
#include "helm/route/options.h"

namespace helm::route {

// What a routing decision reads of a request.
struct RouteRequest {
  int64_t user_id = 0;
  int32_t history_length = 0;
  uint64_t history_start = 0;  // HistoryStartFingerprint of the first event; 0: unknown
  const int64_t* candidate_ids = nullptr;
  int32_t num_candidates = 0;
  // The ids the helm policy's EMB term reads, when the caller picked them (at most route.
  // emb_sample; the simulator's sampling EMB caches); null: the policy picks them from the
  // candidates (ForEachEmbSampledCandidate).
  const int64_t* emb_ids = nullptr;
  int32_t num_emb_ids = 0;
};

// The candidates the helm policy's EMB term reads: at most `emb_sample` (route.emb_sample),
// evenly spaced. Calls fn(index) for each, in increasing order.
template <class Fn>
void ForEachEmbSampledCandidate(int32_t num_candidates, int32_t emb_sample, Fn fn) {
  const int32_t sampled = std::min(emb_sample, num_candidates);
  for (int32_t i = 0; i < sampled; ++i) {
    fn(static_cast<int32_t>(static_cast<int64_t>(i) * num_candidates / sampled));
  }
}

// A routing decision.
struct RouteDecision {
  int node = -1;  // the node to try; -1: none
  // The user has K/V on no candidate node, so this places it: the caller that dispatches to
  // `node` calls ClusterState::OnPlaced(node), which the helm policy's bounded placement counts.
  // Set by the policies that read residency (helm, kv_affinity); false for the others.
  bool new_user = false;
};

class Policy {
 public:
  virtual ~Policy() = default;
  // The node to try, among routable nodes not in `exclude` (e.g. the nodes a request has tried
  // already); node -1 when there is none. Reads `cluster` only.
  virtual RouteDecision Decide(const RouteRequest& request, const ClusterState& cluster,
                               const NodeSet& exclude) const = 0;
  // Decide(...).node.
  int Pick(const RouteRequest& request, const ClusterState& cluster, const NodeSet& exclude) const {
    return Decide(request, cluster, exclude).node;
  }
  virtual const char* name() const = 0;
};

// The policy named by options.policy. InvalidArgument for an unknown name.
absl::StatusOr<std::unique_ptr<Policy>> CreatePolicy(const RouterOptions& options);

// Rendezvous weight of (user, node): the consistent-hash order of nodes for a user.
uint64_t RendezvousWeight(int64_t user_id, int node);

}  // namespace helm::route
