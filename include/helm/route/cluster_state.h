// The router's view of its nodes, kept up to date from each node's state stream (as NodeUpdate
// values, node_update.h) and from the router's own dispatches, and read on every routing decision.
// Part of the routing core: no gRPC, no protobuf, no threads, no clock of its own; helm-router and
// the simulator both drive it.
//
// Built for per-request cost independent of history length and linear (with a tiny constant) in
// nodes: a user's KV residency on all nodes is one hash lookup (a user -> per-node cached tokens
// index), and EMB locality of an item on all nodes is a few word reads per 64 nodes (the nodes'
// Bloom summaries are stored bit-sliced: for each filter bit, the set of nodes that have it set, as
// consecutive 64-bit words).
//
// Up to kMaxNodes (options.h) nodes; indices are dense, stable and never reused.
//
// Thread-safety: every method is thread-safe. Queries take a shared lock or read atomics; updates
// from state streams take a writer lock for the time it takes to apply one message. The EMB
// summaries' readers take no lock at all (see EmbCounts).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "helm/route/node_set.h"
#include "helm/route/node_update.h"
#include "helm/route/options.h"

namespace helm::route {

class ClusterState {
 public:
  ClusterState() = default;
  ClusterState(const ClusterState&) = delete;
  ClusterState& operator=(const ClusterState&) = delete;

  // Adds a node (unhealthy until SetHealthy(true)); returns its index (stable; never reused), or
  // -1 when kMaxNodes nodes exist already.
  int AddNode(const std::string& address);
  int num_nodes() const { return num_nodes_.load(std::memory_order_acquire); }
  // REQUIRES (for every per-node method): 0 <= node < num_nodes().
  const std::string& address(int node) const { return NodeAt(node).address; }

  // --- Health -------------------------------------------------------------------------------
  // Set by the router's health logic (NodeHealth); the cluster state only records it.
  void SetHealthy(int node, bool healthy);
  bool healthy(int node) const;
  bool draining(int node) const;
  // Nodes that may receive requests: healthy and not draining.
  NodeSet Routable() const;

  // --- State stream ---------------------------------------------------------------------------
  // Applies one state message of `node` (a full snapshot replaces what was known). Everything
  // valid in it is applied; an EMB summary that cannot be used (num_hashes outside [1,
  // kMaxEmbHashes], a bitset that is empty, not whole 64-bit words or not a power of two of
  // them, or a shape other than the one the cluster's summaries already use) is rejected: the
  // node keeps its previous summary, the rejection is logged here (once per node until the node
  // sends a good one or another error) and returned as InvalidArgument, which callers need not
  // log again.
  absl::Status ApplyUpdate(int node, const NodeUpdate& update);
  // A reply of `node` said it now holds `tokens` of `user_id`'s history (ServingInfo
  // resident_tokens; 0: none), for a request whose history starts with `history_start` (see
  // HistoryStartFingerprint; 0: unknown). Its state stream would report the tokens within a
  // publish interval; this makes the user's next request, often sent at once, find them. Stream
  // events carry the node's own fingerprint of the cached history's start. A fingerprint of 0
  // (unknown), from a reply or an event, keeps the one already recorded.
  void NoteResidency(int node, int64_t user_id, int32_t tokens, uint64_t history_start);
  // Forgets what `node` streamed (its stream broke; it may have restarted empty): residency,
  // reported load and EMB summary.
  void ForgetStreamedState(int node);

  // --- Dispatch accounting (every path: success, error, retry) -------------------------------
  void OnDispatch(int node) {
    NodeAt(node).router_in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  void OnComplete(int node) {
    NodeAt(node).router_in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  int router_in_flight(int node) const {
    return NodeAt(node).router_in_flight.load(std::memory_order_relaxed);
  }

  // --- New-user placements (bounded-load placement, policy.h) ---------------------------------
  // Placements are counted in a window that decays by count, not by time: once
  // kPlacementWindowPerNode x num_nodes() placements have been made since the last decay, every
  // node's count halves (O(nodes), amortised O(1) per placement).
  static constexpr int kPlacementWindowPerNode = 32;
  // The router dispatched a user that had K/V on no candidate node (RouteDecision::new_user) to
  // `node`. Called on the dispatch path, once per such dispatch (retries included). Lock-free.
  void OnPlaced(int node);
  // New-user placements on `node` in the decaying window.
  int32_t recent_placements(int node) const {
    return NodeAt(node).placements.load(std::memory_order_relaxed);
  }

  // --- Queries (per request) ------------------------------------------------------------------
  // Cached KV tokens of `user_id` on every node, as reported (0 where none): out[n] for every n
  // < out.size() (nodes at or past out.size() are left out).
  void CachedTokens(int64_t user_id, absl::Span<int32_t> out) const;
  // The same, sized num_nodes().
  std::vector<int32_t> CachedTokens(int64_t user_id) const;
  // Of those, the tokens a request with a `history_length`-event history starting with
  // `history_start` (HistoryStartFingerprint; 0: unknown) can reuse. A node's cache counts 0 when
  // it is longer than the history or known to start differently: either way the client has since
  // dropped the user's oldest events, so the node's prefix hash would miss. Fills out as above.
  void ReusableTokens(int64_t user_id, int32_t history_length, uint64_t history_start,
                      absl::Span<int32_t> out) const;
  std::vector<int32_t> ReusableTokens(int64_t user_id, int32_t history_length,
                                      uint64_t history_start) const;
  // For each node in `nodes` (below out.size()), adds how many of `item_ids` its EMB summary may
  // hold (Bloom: no false negatives) to out[n]; other entries untouched. Lock-free; O(count x
  // hashes x words of nodes).
  void EmbCounts(const int64_t* item_ids, int count, const NodeSet& nodes,
                 absl::Span<int32_t> out) const;
  // Load in [0, 1]: outstanding requests (the larger of the router's own count and the node's
  // last report) over twice the node's compute capacity. Inline: policies call it per node.
  double Load(int node) const {
    const Node& n = NodeAt(node);
    const int outstanding = std::max(n.router_in_flight.load(std::memory_order_relaxed),
                                     n.reported_in_flight.load(std::memory_order_relaxed));
    return std::min(1.0, outstanding * n.inv_twice_capacity.load(std::memory_order_relaxed));
  }
  // KV memory pressure as the node last reported it (0 before any report or once its stream is
  // forgotten): blocks in use over capacity, in [0, 1]; blocks evicted per second over capacity
  // in the node's last statistics window, >= 0. Inline: policies call them per node.
  double kv_occupancy(int node) const {
    return NodeAt(node).kv_occupancy.load(std::memory_order_relaxed);
  }
  double kv_eviction_rate(int node) const {
    return NodeAt(node).kv_eviction_rate.load(std::memory_order_relaxed);
  }
  double committed_split(int node) const;
  double target_split(int node) const;
  int64_t kv_resident_users(int node) const;
  // Whether the node's EMB summary is in use (one was applied and not forgotten since).
  bool has_emb_summary(int node) const;

 private:
  struct Node {
    std::string address;
    std::atomic<int> router_in_flight{0};
    std::atomic<int> reported_in_flight{0};
    std::atomic<double> inv_twice_capacity{0.5};  // 1 / (2 * capacity), capacity >= 1
    std::atomic<double> committed_split{0.0};
    std::atomic<double> target_split{0.0};
    std::atomic<int64_t> kv_resident_users{0};
    std::atomic<double> kv_occupancy{0.0};
    std::atomic<double> kv_eviction_rate{0.0};
    std::atomic<int32_t> placements{0};  // recent new-user placements (decaying)
  };
  struct ResidencyEntry {
    int32_t node;
    int32_t tokens;
    uint64_t history_start;  // fingerprint of the cached history's first event; 0: unknown
  };
  using Residency = absl::InlinedVector<ResidencyEntry, 2>;

  // One layout of the bit-sliced summaries: bit p of the filter has its node set in
  // slices[p * words_per_bit .. + words_per_bit) (node n: bit n % 64 of word n / 64). The shape
  // (bits, num_hashes, seed) is fixed by the first summary accepted; a table is replaced by a
  // wider copy when a node past its width sends a summary. Tables are never freed before the
  // ClusterState, so a reader holding an old one reads valid (if briefly stale) memory.
  struct FreeSlices {
    void operator()(std::atomic<uint64_t>* slices) const;
  };
  struct EmbTable {
    int64_t bits = 0;
    int words_per_bit = 0;
    int num_hashes = 0;
    uint64_t seed = 0;
    // bits * words_per_bit words, zeroed; on huge pages where the OS allows, as every routing
    // decision reads a few dozen random words of it (megabytes) and would miss the TLB each time.
    std::unique_ptr<std::atomic<uint64_t>[], FreeSlices> slices;
  };
  static std::unique_ptr<std::atomic<uint64_t>[], FreeSlices> AllocateSlices(int64_t words);

  static constexpr int kBlockNodes = 64;
  static constexpr int kWords = kMaxNodes / 64;

  Node& NodeAt(int node) const { return blocks_[node / kBlockNodes][node % kBlockNodes]; }
  static void SetBit(std::array<std::atomic<uint64_t>, kWords>& words, int node, bool value);
  // `history_start`: the fingerprint to record; 0 (unknown) keeps the entry's.
  void SetResidencyLocked(int node, int64_t user_id, int32_t tokens, uint64_t history_start)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropResidencyLocked(int node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ApplyEmbSummary(int node, const EmbSummaryUpdate& summary);
  absl::Status CheckEmbSummary(const EmbSummaryUpdate& summary) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(emb_update_mu_);
  // The table, widened first when it cannot hold `node`.
  EmbTable* TableFor(int node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(emb_update_mu_);
  void ClearEmbLocked(int node) ABSL_EXCLUSIVE_LOCKS_REQUIRED(emb_update_mu_);

  // Nodes live in blocks of kBlockNodes, allocated as nodes are added and published by
  // num_nodes_ (release), so readers index them without a lock.
  std::array<std::unique_ptr<Node[]>, kMaxNodes / kBlockNodes> blocks_;
  std::atomic<int> num_nodes_{0};
  absl::Mutex add_mu_;
  // Placements since every node's count last halved.
  std::atomic<int64_t> placements_since_decay_{0};
  // Node sets as atomic words (bit n % 64 of word n / 64).
  std::array<std::atomic<uint64_t>, kWords> healthy_{};
  std::array<std::atomic<uint64_t>, kWords> draining_{};

  mutable absl::Mutex mu_;
  absl::flat_hash_map<int64_t, Residency> residency_ ABSL_GUARDED_BY(mu_);

  // EMB summaries. Writers serialise on emb_update_mu_; readers load emb_table_ (acquire) and read
  // its atomic slices, and an update only touches the words where a node's filter changed.
  absl::Mutex emb_update_mu_;
  std::atomic<const EmbTable*> emb_table_{nullptr};
  std::vector<std::unique_ptr<EmbTable>> emb_tables_ ABSL_GUARDED_BY(emb_update_mu_);  // last: live
  std::array<std::atomic<uint64_t>, kWords> emb_nodes_{};  // nodes with a summary applied
  // Each node's filter words as last applied (empty: none).
  std::vector<std::vector<uint64_t>> emb_last_words_ ABSL_GUARDED_BY(emb_update_mu_);
  // The last rejection logged per node ("" : none since its last good summary).
  std::vector<std::string> emb_last_error_ ABSL_GUARDED_BY(emb_update_mu_);
};

}  // namespace helm::route
