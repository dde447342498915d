#include "helm/serve/validate.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace helm::serve {
namespace {

using ::testing::HasSubstr;

RequestLimits Limits() {
  RequestLimits limits;
  limits.max_history = 10;
  limits.max_candidates = 4;
  limits.num_items = 100;
  limits.num_actions = 3;
  return limits;
}

v1::RankRequest Good() {
  v1::RankRequest r;
  r.set_user_id(5);
  for (int i = 0; i < 3; ++i) {
    r.add_history_item_ids(10 + i);
    r.add_history_actions(i % 3);
    r.add_history_timestamps_ms(1000 + i);
  }
  r.add_candidate_item_ids(1);
  r.add_candidate_item_ids(2);
  r.set_top_k(1);
  return r;
}

void ExpectInvalid(const v1::RankRequest& r, const std::string& field) {
  const absl::Status s = ValidateRankRequest(r, Limits());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
  EXPECT_THAT(std::string(s.message()), HasSubstr(field));
}

TEST(ValidateRankRequest, AcceptsAWellFormedRequest) {
  EXPECT_TRUE(ValidateRankRequest(Good(), Limits()).ok());
  v1::RankRequest empty_history = Good();
  empty_history.clear_history_item_ids();
  empty_history.clear_history_actions();
  empty_history.clear_history_timestamps_ms();
  EXPECT_TRUE(ValidateRankRequest(empty_history, Limits()).ok());  // a brand-new user
}

TEST(ValidateRankRequest, NamesTheFieldOfEveryViolation) {
  v1::RankRequest r = Good();
  r.add_history_actions(0);
  ExpectInvalid(r, "history_actions 4");
  r = Good();
  r.add_history_timestamps_ms(5000);
  ExpectInvalid(r, "history_timestamps_ms 4");
  r = Good();
  r.set_user_id(-1);
  ExpectInvalid(r, "user_id: must be >= 0");
  r = Good();
  r.set_history_item_ids(1, -3);
  ExpectInvalid(r, "history_item_ids[1]: item id -3");
  r = Good();
  r.set_candidate_item_ids(0, 100);
  ExpectInvalid(r, "candidate_item_ids[0]: item id 100 is outside the catalog [0, 100)");
  r = Good();
  r.clear_candidate_item_ids();
  ExpectInvalid(r, "candidate_item_ids: must not be empty");
  r = Good();
  for (int i = 0; i < 3; ++i) r.add_candidate_item_ids(3);
  ExpectInvalid(r, "candidate_item_ids: 5 candidates, more than node.max_candidates (4)");
  r = Good();
  for (int i = 0; i < 8; ++i) {
    r.add_history_item_ids(1);
    r.add_history_actions(0);
    r.add_history_timestamps_ms(9999);
  }
  ExpectInvalid(r, "history_item_ids: 11 events, more than node.max_history (10)");
  r = Good();
  r.set_top_k(3);
  ExpectInvalid(r, "top_k: must be in [0, 2]");
  r.set_top_k(-1);
  ExpectInvalid(r, "top_k");
  r = Good();
  r.set_history_actions(2, 3);
  ExpectInvalid(r, "history_actions[2]: action 3 is outside [0, 3)");
  r = Good();
  r.set_history_timestamps_ms(2, 10);
  ExpectInvalid(r, "history_timestamps_ms[2]: 10 is earlier than the event before it");
}

}  // namespace
}  // namespace helm::serve
