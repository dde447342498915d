// The router's view of its nodes, kept up to date from each node's state stream and from the
// router's own dispatches, and read on every routing decision.
//
// Built for per-request cost independent of history length and linear (with a tiny constant) in
// nodes: a user's KV residency on all nodes is one hash lookup (a user -> per-node cached tokens
// index), and EMB locality of an item on all nodes is a few word reads (the nodes' Bloom summaries
// are stored bit-sliced: for each filter bit, the mask of nodes that have it set).
//
// Thread-safety: every method is thread-safe. Queries take a shared lock or read atomics; updates
// from state streams take a writer lock for the time it takes to apply one message.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/synchronization/mutex.h"
#include "helm/v1/node.pb.h"

namespace helm::route {

inline constexpr int kMaxNodes = 64;
using NodeMask = uint64_t;

class ClusterState {
 public:
  ClusterState() = default;
  ClusterState(const ClusterState&) = delete;
  ClusterState& operator=(const ClusterState&) = delete;

  // Adds a node (unhealthy until SetHealthy(true)); returns its index (stable; never reused), or
  // -1 when kMaxNodes nodes exist already.
  int AddNode(const std::string& address);
  int num_nodes() const { return num_nodes_.load(std::memory_order_acquire); }
  const std::string& address(int node) const { return nodes_[node]->address; }

  // --- Health -------------------------------------------------------------------------------
  void SetHealthy(int node, bool healthy);
  bool healthy(int node) const;
  // Nodes that may receive requests: healthy and not draining.
  NodeMask RoutableMask() const;

  // --- State stream ---------------------------------------------------------------------------
  // Applies one NodeState message of `node` (a full snapshot replaces what was known).
  void ApplyState(int node, const v1::NodeState& state);
  // A reply of `node` said it now holds `tokens` of `user_id`'s history (ServingInfo
  // resident_tokens; 0: none), for a request whose history starts with `history_start` (see
  // HistoryStartFingerprint; 0: unknown). Its state stream would report the tokens within a
  // publish interval; this makes the user's next request, often sent at once, find them. Stream
  // events carry the node's own fingerprint of the cached history's start. A fingerprint of 0
  // (unknown), from a reply or an event, keeps the one already recorded.
  void NoteResidency(int node, int64_t user_id, int32_t tokens, uint64_t history_start);
  // Forgets what `node` streamed (its stream broke; it may have restarted empty).
  void ForgetStreamedState(int node);

  // --- Dispatch accounting (every path: success, error, retry) -------------------------------
  void OnDispatch(int node) {
    nodes_[node]->router_in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  void OnComplete(int node) {
    nodes_[node]->router_in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  int router_in_flight(int node) const {
    return nodes_[node]->router_in_flight.load(std::memory_order_relaxed);
  }

  // --- Queries (per request) ------------------------------------------------------------------
  // Cached KV tokens of `user_id` on every node, as reported (0 where none): out[0 ..
  // num_nodes()).
  void CachedTokens(int64_t user_id, std::array<int32_t, kMaxNodes>* out) const;
  // Of those, the tokens a request with a `history_length`-event history starting with
  // `history_start` (HistoryStartFingerprint; 0: unknown) can reuse. A node's cache counts 0 when
  // it is longer than the history or known to start differently: either way the client has since
  // dropped the user's oldest events, so the node's prefix hash would miss.
  void ReusableTokens(int64_t user_id, int32_t history_length, uint64_t history_start,
                      std::array<int32_t, kMaxNodes>* out) const;
  // For each node in `nodes`, how many of `item_ids` its EMB summary may hold (Bloom: no false
  // negatives): out[n] for n in `nodes`, others untouched. Lock-free.
  void EmbCounts(const int64_t* item_ids, int count, NodeMask nodes,
                 std::array<int32_t, kMaxNodes>* out) const;
  // Load in [0, 1]: outstanding requests (the larger of the router's own count and the node's
  // last report) over twice the node's compute capacity.
  double Load(int node) const;
  double committed_split(int node) const;
  int64_t kv_resident_users(int node) const;

 private:
  struct Node {
    std::string address;
    std::atomic<bool> healthy{false};
    std::atomic<bool> draining{false};
    std::atomic<int> router_in_flight{0};
    std::atomic<int> reported_in_flight{0};
    std::atomic<int> capacity{1};
    std::atomic<double> committed_split{0.0};
    std::atomic<int64_t> kv_resident_users{0};
  };
  struct ResidencyEntry {
    int8_t node;
    int32_t tokens;
    uint64_t history_start;  // fingerprint of the cached history's first event; 0: unknown
  };
  using Residency = absl::InlinedVector<ResidencyEntry, 2>;

  // `history_start`: the fingerprint to record; 0 (unknown) keeps the entry's.
  void SetResidencyLocked(int node, int64_t user_id, int32_t tokens, uint64_t history_start)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyEmbSummary(int node, const v1::EmbSummary& summary);

  std::array<std::unique_ptr<Node>, kMaxNodes> nodes_;
  std::atomic<int> num_nodes_{0};
  absl::Mutex add_mu_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<int64_t, Residency> residency_ ABSL_GUARDED_BY(mu_);

  // Bit-sliced Bloom summaries: emb_slices_[p] has bit n set when node n's filter has bit p set.
  // Shaped by the first summary seen (then emb_ready_ is set and the shape never changes);
  // summaries of another shape are ignored. Readers take no lock: slices are atomics, and an
  // update only touches the words where a node's filter changed.
  absl::Mutex emb_update_mu_;  // serialises writers
  std::vector<std::atomic<NodeMask>> emb_slices_;
  int emb_hashes_ = 0;
  uint64_t emb_seed_ = 0;
  std::atomic<bool> emb_ready_{false};
  std::atomic<NodeMask> emb_nodes_{0};  // nodes with a summary applied
  std::array<std::vector<uint64_t>, kMaxNodes> emb_last_words_ ABSL_GUARDED_BY(emb_update_mu_);
};

}  // namespace helm::route
