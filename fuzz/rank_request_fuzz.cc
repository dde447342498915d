// Target rank_request: what a node does with a Rank request's bytes before any work.
#include <vector>

#include "fuzz_targets.h"
#include "helm/common/hash.h"
#include "helm/kv/kv_cache.h"
#include "helm/serve/validate.h"
#include "helm/v1/recommender.pb.h"

namespace helm::fuzz {

int FuzzRankRequest(const uint8_t* data, size_t size) {
  v1::RankRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  const serve::RequestLimits limits{
      .max_history = 512, .max_candidates = 64, .num_items = 1000, .num_actions = 4};
  if (!serve::ValidateRankRequest(request, limits).ok()) return 0;

  // Everything validate.h promises about an accepted request.
  const int history = request.history_item_ids_size();
  const int candidates = request.candidate_item_ids_size();
  HELM_FUZZ_CHECK(request.user_id() >= 0);
  HELM_FUZZ_CHECK(request.history_actions_size() == history);
  HELM_FUZZ_CHECK(request.history_timestamps_ms_size() == history);
  HELM_FUZZ_CHECK(history <= limits.max_history);
  HELM_FUZZ_CHECK(candidates >= 1 && candidates <= limits.max_candidates);
  HELM_FUZZ_CHECK(request.top_k() >= 0 && request.top_k() <= candidates);
  for (int i = 0; i < history; ++i) {
    HELM_FUZZ_CHECK(request.history_item_ids(i) >= 0 &&
                    request.history_item_ids(i) < limits.num_items);
    HELM_FUZZ_CHECK(request.history_actions(i) >= 0 &&
                    request.history_actions(i) < limits.num_actions);
    if (i > 0) {
      HELM_FUZZ_CHECK(request.history_timestamps_ms(i) >= request.history_timestamps_ms(i - 1));
    }
  }
  for (int i = 0; i < candidates; ++i) {
    HELM_FUZZ_CHECK(request.candidate_item_ids(i) >= 0 &&
                    request.candidate_item_ids(i) < limits.num_items);
  }

  // What the node computes from an accepted history next: the KV prefix hashes and the
  // fingerprint of its first event.
  const kv::History view{absl::MakeConstSpan(request.history_item_ids().data(), history),
                         absl::MakeConstSpan(request.history_actions().data(), history),
                         absl::MakeConstSpan(request.history_timestamps_ms().data(), history)};
  std::vector<uint64_t> hashes;
  kv::HistoryHashes(view, &hashes);
  HELM_FUZZ_CHECK(hashes.size() == static_cast<size_t>(history) + 1);
  if (history > 0) {
    (void)HistoryStartFingerprint(view.item_ids[0], view.actions[0], view.timestamps_ms[0]);
  }
  return 0;
}

}  // namespace helm::fuzz
