#include "router/node_update_proto.h"

#include "gtest/gtest.h"

namespace helm::router {
namespace {

TEST(ToNodeUpdate, CarriesEveryFieldTheCoreReads) {
  v1::NodeState state;
  state.set_seq(17);
  state.set_full_snapshot(true);
  state.set_committed_split(0.25);
  state.set_target_split(0.5);
  state.set_draining(true);
  state.set_kv_resident_users(3);
  v1::NodeLoad* load = state.mutable_load();
  load->set_queue_depth(1);
  load->set_in_flight(2);
  load->set_capacity(4);
  load->set_workers(5);
  load->set_ewma_service_us(6.5);
  load->set_queue_capacity(7);
  load->set_kv_occupancy(0.75);
  load->set_kv_eviction_rate(0.125);
  auto* e = state.add_kv_events();
  e->set_user_id(-9);
  e->set_cached_tokens(128);
  e->set_history_start(0xfeedull << 40);
  state.add_kv_events()->set_user_id(10);
  v1::EmbSummary* summary = state.mutable_emb_summary();
  summary->set_bits(std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  summary->set_num_hashes(3);
  summary->set_seed(99);
  summary->set_resident_rows(1000);

  const route::NodeUpdate update = ToNodeUpdate(state);
  EXPECT_EQ(update.seq, 17u);
  EXPECT_TRUE(update.full_snapshot);
  EXPECT_DOUBLE_EQ(update.committed_split, 0.25);
  EXPECT_DOUBLE_EQ(update.target_split, 0.5);
  EXPECT_TRUE(update.draining);
  EXPECT_EQ(update.kv_resident_users, 3);
  ASSERT_TRUE(update.load.has_value());
  EXPECT_EQ(update.load->queue_depth, 1);
  EXPECT_EQ(update.load->in_flight, 2);
  EXPECT_EQ(update.load->capacity, 4);
  EXPECT_EQ(update.load->workers, 5);
  EXPECT_DOUBLE_EQ(update.load->ewma_service_us, 6.5);
  EXPECT_EQ(update.load->queue_capacity, 7);
  EXPECT_DOUBLE_EQ(update.load->kv_occupancy, 0.75);
  EXPECT_DOUBLE_EQ(update.load->kv_eviction_rate, 0.125);
  ASSERT_EQ(update.kv_events.size(), 2u);
  EXPECT_EQ(update.kv_events[0].user_id, -9);
  EXPECT_EQ(update.kv_events[0].cached_tokens, 128);
  EXPECT_EQ(update.kv_events[0].history_start, 0xfeedull << 40);
  EXPECT_EQ(update.kv_events[1].user_id, 10);
  EXPECT_EQ(update.kv_events[1].cached_tokens, 0);
  ASSERT_TRUE(update.emb_summary.has_value());
  EXPECT_EQ(update.emb_summary->bits, std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  EXPECT_EQ(update.emb_summary->num_hashes, 3);
  EXPECT_EQ(update.emb_summary->seed, 99u);
  EXPECT_EQ(update.emb_summary->resident_rows, 1000);
}

TEST(ToNodeUpdate, AbsentMessagesStayAbsent) {
  const route::NodeUpdate update = ToNodeUpdate(v1::NodeState());
  EXPECT_FALSE(update.load.has_value());
  EXPECT_FALSE(update.emb_summary.has_value());
  EXPECT_TRUE(update.kv_events.empty());
  EXPECT_FALSE(update.full_snapshot);
}

}  // namespace
}  // namespace helm::router
