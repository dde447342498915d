#include "helm/serve/validate.h"

#include "absl/strings/str_cat.h"

namespace helm::serve {
namespace {

absl::Status CheckItems(const google::protobuf::RepeatedField<int64_t>& ids, const char* field,
                        int64_t num_items) {
  for (int i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    if (id < 0 || id >= num_items) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, "[", i, "]: item id ", id, " is outside the catalog [0, ", num_items, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRankRequest(const v1::RankRequest& request, const RequestLimits& limits) {
  if (request.user_id() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("user_id: must be >= 0, got ", request.user_id()));
  }
  const int history = request.history_item_ids_size();
  if (request.history_actions_size() != history ||
      request.history_timestamps_ms_size() != history) {
    return absl::InvalidArgumentError(
        absl::StrCat("history columns must have equal lengths: history_item_ids has ", history,
                     ", history_actions ", request.history_actions_size(),
                     ", history_timestamps_ms ", request.history_timestamps_ms_size()));
  }
  if (history > limits.max_history) {
    return absl::InvalidArgumentError(absl::StrCat("history_item_ids: ", history,
                                                   " events, more than node.max_history (",
                                                   limits.max_history, ")"));
  }
  const int candidates = request.candidate_item_ids_size();
  if (candidates == 0) {
    return absl::InvalidArgumentError("candidate_item_ids: must not be empty");
  }
  if (candidates > limits.max_candidates) {
    return absl::InvalidArgumentError(absl::StrCat("candidate_item_ids: ", candidates,
                                                   " candidates, more than node.max_candidates (",
                                                   limits.max_candidates, ")"));
  }
  if (request.top_k() < 0 || request.top_k() > candidates) {
    return absl::InvalidArgumentError(absl::StrCat("top_k: must be in [0, ", candidates,
                                                   "] (the number of candidates), got ",
                                                   request.top_k()));
  }
  if (absl::Status s = CheckItems(request.history_item_ids(), "history_item_ids", limits.num_items);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckItems(request.candidate_item_ids(), "candidate_item_ids", limits.num_items);
      !s.ok()) {
    return s;
  }
  for (int i = 0; i < history; ++i) {
    const int32_t action = request.history_actions(i);
    if (action < 0 || action >= limits.num_actions) {
      return absl::InvalidArgumentError(absl::StrCat("history_actions[", i, "]: action ", action,
                                                     " is outside [0, ", limits.num_actions, ")"));
    }
  }
  for (int i = 1; i < history; ++i) {
    if (request.history_timestamps_ms(i) < request.history_timestamps_ms(i - 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("history_timestamps_ms[", i, "]: ", request.history_timestamps_ms(i),
                       " is earlier than the event before it (",
                       request.history_timestamps_ms(i - 1), "); history must be oldest first"));
    }
  }
  return absl::OkStatus();
}

}  // namespace helm::serve
