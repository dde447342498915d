// Routing policies: pick the node for a request from the router's ClusterState.
//
//   helm             score(n) = w_kv * kv(n) + w_emb * emb(n) - w_load * load(n)   (DESIGN.md §5)
//                    kv: the user's cached prefix on n over the history length; emb: the share of
//                    sampled candidate ids in n's EMB summary; load: ClusterState::Load. Exact ties
//                    (e.g. an idle cluster and a new user) break by rendezvous hashing on the user,
//                    so new users spread over nodes and come back to the same one.
//   round_robin      the next routable node in turn
//   least_loaded     the lowest load
//   consistent_hash  rendezvous (highest random weight) hashing of the user over routable nodes
//   kv_affinity      the node with the longest cached prefix (residency only); on a miss,
//                    consistent hashing
//
// Every policy costs O(nodes) per decision plus, for helm, O(emb_sample x nodes / 64) word reads;
// none reads the history, none allocates up to 1024 nodes. Part of the routing core (no gRPC, no
// clock). Thread-safe: Pick may run concurrently on many threads.
#pragma once

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
};

class Policy {
 public:
  virtual ~Policy() = default;
  // The node to try, among routable nodes not in `exclude` (e.g. the nodes a request has tried
  // already); -1 when there is none.
  virtual int Pick(const RouteRequest& request, const ClusterState& cluster,
                   const NodeSet& exclude) const = 0;
  virtual const char* name() const = 0;
};

// The policy named by options.policy. InvalidArgument for an unknown name.
absl::StatusOr<std::unique_ptr<Policy>> CreatePolicy(const RouterOptions& options);

// Rendezvous weight of (user, node): the consistent-hash order of nodes for a user.
uint64_t RendezvousWeight(int64_t user_id, int node);

}  // namespace helm::route
