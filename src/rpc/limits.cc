#include "helm/rpc/limits.h"

namespace helm::rpc {

int64_t MaxRankRequestBytes(int64_t max_history, int64_t max_candidates) {
  constexpr int64_t kPerEvent = (1 + 8) + (1 + 8) + (1 + 5);  // item id, timestamp, action
  constexpr int64_t kPerCandidate = 1 + 8;
  constexpr int64_t kFixed = 2 * (1 + 10) + 4 * (1 + 5);  // user_id, top_k; 4 length prefixes
  return kPerEvent * max_history + kPerCandidate * max_candidates + kFixed +
         kRankRequestHeadroomBytes;
}

int64_t MaxRankResponseBytes(int64_t max_candidates) {
  constexpr int64_t kPerItem = 1 + 1 + (1 + 10) + (1 + 4);  // entry tag, length; id; score
  return kPerItem * max_candidates + 2 * kRankRequestHeadroomBytes;
}

int64_t MaxNodeStateBytes(int64_t max_resident_users, int64_t emb_summary_bits) {
  // Entry tag and length; user id; cached tokens (an int32 varint); history_start (fixed64).
  constexpr int64_t kPerEvent = 1 + 1 + (1 + 10) + (1 + 5) + (1 + 8);
  return kPerEvent * 2 * max_resident_users + emb_summary_bits / 8 + kRankRequestHeadroomBytes;
}

}  // namespace helm::rpc
