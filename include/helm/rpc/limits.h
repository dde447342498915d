// Size bounds of HELM's messages, from which servers set their largest accepted message and the
// router its channels to the nodes. Thread-safe (pure functions and a value type).
#pragma once

#include <cstdint>

namespace helm::rpc {

// Bytes left for what MaxRankRequestBytes does not bound by the limits: the optional request_id
// (up to about 60 KiB of it) and unknown fields. Added on top of the bound.
inline constexpr int64_t kRankRequestHeadroomBytes = 64 << 10;

// An upper bound of the encoded size of a RankRequest within the limits (history events and
// candidates), plus kRankRequestHeadroomBytes. Each history event costs at most 24 bytes (item id
// and timestamp as sfixed64 with a one-byte tag each even when sent unpacked: 9 + 9; an action in
// [0, num_actions) as a varint of at most 5 bytes plus its tag: 6), each candidate 9; user_id and
// top_k at most 11 each, packed-field length prefixes at most 6 each. For the defaults (16384
// events, 4096 candidates) that is 0.47 MiB; configs/local.yaml's limits give 0.16 MiB.
int64_t MaxRankRequestBytes(int64_t max_history, int64_t max_candidates);

// An upper bound of the encoded size of a RankResponse to a request within the limits: at most
// max_candidates items of at most 18 bytes each (a length-delimited entry of tag, length, item id
// as a varint of at most 10 bytes with its tag, score as a fixed32 with its tag), plus twice
// kRankRequestHeadroomBytes for the echoed request_id (bounded by the request's headroom) and the
// ServingInfo (node id and a dozen numbers).
int64_t MaxRankResponseBytes(int64_t max_candidates);

// An upper bound of the encoded size of one helm.v1.NodeState message of a node whose KV cache
// holds at most `max_resident_users` users and whose EMB summary has `emb_summary_bits` bits: a
// full snapshot lists every resident user (a KvResidencyEvent: at most 28 bytes with its tag and
// length), a delta each user whose residency changed in one publish interval, counted here as at
// most twice the resident users (the users there at its start leaving, as many arriving); the
// Bloom filter's bits / 8 bytes; plus kRankRequestHeadroomBytes for the fixed fields (node id,
// load, splits, the controller's status).
int64_t MaxNodeStateBytes(int64_t max_resident_users, int64_t emb_summary_bits);

// Message size bounds of a client channel (bytes; gRPC's channel arguments). The defaults are
// gRPC's own receive limit; processes set both from their config (app::NodeChannelLimits).
struct ChannelLimits {
  int32_t max_send_bytes = 4 << 20;     // larger requests fail RESOURCE_EXHAUSTED unsent
  int32_t max_receive_bytes = 4 << 20;  // larger replies / stream messages: RESOURCE_EXHAUSTED
};

}  // namespace helm::rpc
