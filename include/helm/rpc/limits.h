// The size bound of a valid RankRequest, from which servers set their largest accepted message.
// Thread-safe (pure functions).
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

}  // namespace helm::rpc
