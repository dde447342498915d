#include "helm/rpc/limits.h"

namespace helm::rpc {

int64_t MaxRankRequestBytes(int64_t max_history, int64_t max_candidates) {
  constexpr int64_t kPerEvent = (1 + 8) + (1 + 8) + (1 + 5);  // item id, timestamp, action
  constexpr int64_t kPerCandidate = 1 + 8;
  constexpr int64_t kFixed = 2 * (1 + 10) + 4 * (1 + 5);  // user_id, top_k; 4 length prefixes
  return kPerEvent * max_history + kPerCandidate * max_candidates + kFixed +
         kRankRequestHeadroomBytes;
}

}  // namespace helm::rpc
