// What a node tells the router about itself, as plain C++ values: the routing core's input.
//
// helm-router converts each helm.v1.NodeState of a node's state stream into a NodeUpdate once, at
// its gRPC edge (src/router/); the simulator builds NodeUpdates directly. A node's core fills
// NodeLoadUpdate and EmbSummaryUpdate itself (serve::NodeLoad, serve::EmbSummary). Field meanings
// follow proto/helm/v1/node.proto (NodeState, NodeLoad, KvResidencyEvent, EmbSummary).
//
// Value types; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace helm::route {

// A node's load as it reports it.
struct NodeLoadUpdate {
  int32_t queue_depth = 0;  // requests admitted and waiting
  int32_t in_flight = 0;    // requests admitted and not yet answered (queued + computing)
  // Requests the node computes at once: workers x max batch (a batch is one forward, so that many
  // really are in compute together).
  int32_t capacity = 0;
  int32_t workers = 0;  // compute workers
  // Smoothed compute time of a batch (us): what a request waits once its batch starts.
  double ewma_service_us = 0;
  int32_t queue_capacity = 0;  // admitted requests beyond which new ones are refused
  // KV memory pressure: blocks in use over capacity, in [0, 1] (1 with no KV capacity), and blocks
  // evicted per second over the last statistics window as a share of the capacity.
  double kv_occupancy = 0;
  double kv_eviction_rate = 0;
};

// A change of one user's cached KV length on the node (cached_tokens 0: the user's KV was dropped).
struct KvResidencyUpdate {
  int64_t user_id = 0;
  int32_t cached_tokens = 0;
  // HistoryStartFingerprint (include/helm/common/hash.h) of the cached history's first event;
  // 0: unknown (keeps the fingerprint already recorded).
  uint64_t history_start = 0;
};

// The node's EMB hot-set summary: a helm::BloomFilter over the resident item ids.
struct EmbSummaryUpdate {
  // The filter's bits as little-endian 64-bit words, byte for byte (BloomFilter::ToBytes):
  // a power of two of words, the same number on every node of a cluster.
  std::string bits;
  int32_t num_hashes = 0;  // probes per id, in [1, kMaxEmbHashes]
  uint64_t seed = 0;
  int64_t resident_rows = 0;  // rows in the node's EMB cache (informational)
};

// Upper bound on EmbSummaryUpdate::num_hashes (helm::BloomFilter's own bound).
inline constexpr int kMaxEmbHashes = 16;

// One message of a node's state stream.
struct NodeUpdate {
  uint64_t seq = 0;            // increases with every message the node sends (informational)
  bool full_snapshot = false;  // true: replaces everything the node said before
  std::optional<NodeLoadUpdate> load;  // absent: load unchanged
  double committed_split = 0;          // EMB chunks / all chunks, as committed
  double target_split = 0;             // where the pool is moving to
  bool draining = false;
  int64_t kv_resident_users = 0;
  std::vector<KvResidencyUpdate> kv_events;
  std::optional<EmbSummaryUpdate> emb_summary;  // present when it changed since the last message
};

}  // namespace helm::route
