#include "router/node_update_proto.h"

#include <utility>

namespace helm::router {

route::NodeUpdate ToNodeUpdate(v1::NodeState state) {
  route::NodeUpdate update;
  update.seq = state.seq();
  update.full_snapshot = state.full_snapshot();
  if (state.has_load()) {
    const v1::NodeLoad& load = state.load();
    update.load = route::NodeLoadUpdate{.queue_depth = load.queue_depth(),
                                        .in_flight = load.in_flight(),
                                        .capacity = load.capacity(),
                                        .workers = load.workers(),
                                        .ewma_service_us = load.ewma_service_us(),
                                        .queue_capacity = load.queue_capacity(),
                                        .kv_occupancy = load.kv_occupancy(),
                                        .kv_eviction_rate = load.kv_eviction_rate()};
  }
  update.committed_split = state.committed_split();
  update.target_split = state.target_split();
  update.draining = state.draining();
  update.kv_resident_users = state.kv_resident_users();
  update.kv_events.reserve(state.kv_events_size());
  for (const v1::KvResidencyEvent& event : state.kv_events()) {
    update.kv_events.push_back({.user_id = event.user_id(),
                                .cached_tokens = event.cached_tokens(),
                                .history_start = event.history_start()});
  }
  if (state.has_emb_summary()) {
    v1::EmbSummary* summary = state.mutable_emb_summary();
    update.emb_summary = route::EmbSummaryUpdate{.bits = std::move(*summary->mutable_bits()),
                                                 .num_hashes = summary->num_hashes(),
                                                 .seed = summary->seed(),
                                                 .resident_rows = summary->resident_rows()};
  }
  return update;
}

}  // namespace helm::router
