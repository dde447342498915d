#include "helm/route/cluster_state.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "helm/common/bloom.h"
#include "spdlog/spdlog.h"

namespace helm::route {

int ClusterState::AddNode(const std::string& address) {
  absl::MutexLock lock(&add_mu_);
  const int index = num_nodes_.load(std::memory_order_relaxed);
  if (index >= kMaxNodes) return -1;
  nodes_[index] = std::make_unique<Node>();
  nodes_[index]->address = address;
  num_nodes_.store(index + 1, std::memory_order_release);
  return index;
}

void ClusterState::SetHealthy(int node, bool healthy) {
  nodes_[node]->healthy.store(healthy, std::memory_order_relaxed);
}

bool ClusterState::healthy(int node) const {
  return nodes_[node]->healthy.load(std::memory_order_relaxed);
}

NodeMask ClusterState::RoutableMask() const {
  NodeMask mask = 0;
  const int n = num_nodes();
  for (int i = 0; i < n; ++i) {
    const Node& node = *nodes_[i];
    if (node.healthy.load(std::memory_order_relaxed) &&
        !node.draining.load(std::memory_order_relaxed)) {
      mask |= NodeMask{1} << i;
    }
  }
  return mask;
}

void ClusterState::SetResidencyLocked(int node, int64_t user_id, int32_t tokens,
                                      uint64_t history_start) {
  auto it = residency_.find(user_id);
  if (it == residency_.end()) {
    if (tokens <= 0) return;
    it = residency_.try_emplace(user_id).first;
  }
  Residency& entries = it->second;
  auto e = std::find_if(entries.begin(), entries.end(),
                        [node](const ResidencyEntry& r) { return r.node == node; });
  if (tokens <= 0) {
    if (e != entries.end()) entries.erase(e);
    if (entries.empty()) residency_.erase(it);
    return;
  }
  if (e == entries.end()) e = entries.insert(entries.end(), {static_cast<int8_t>(node), 0, 0});
  e->tokens = tokens;
  if (history_start != 0) e->history_start = history_start;
}

void ClusterState::ApplyState(int node, const v1::NodeState& state) {
  Node& n = *nodes_[node];
  if (state.has_load()) {
    n.reported_in_flight.store(state.load().in_flight(), std::memory_order_relaxed);
    n.capacity.store(std::max(1, state.load().capacity()), std::memory_order_relaxed);
  }
  n.committed_split.store(state.committed_split(), std::memory_order_relaxed);
  n.draining.store(state.draining(), std::memory_order_relaxed);
  n.kv_resident_users.store(state.kv_resident_users(), std::memory_order_relaxed);
  if (state.full_snapshot() || state.kv_events_size() > 0) {
    absl::MutexLock lock(&mu_);
    if (state.full_snapshot()) {
      // Drop everything this node said before; the snapshot is the whole truth.
      for (auto it = residency_.begin(); it != residency_.end();) {
        Residency& entries = it->second;
        entries.erase(std::remove_if(entries.begin(), entries.end(),
                                     [node](const ResidencyEntry& e) { return e.node == node; }),
                      entries.end());
        if (entries.empty()) {
          residency_.erase(it++);
        } else {
          ++it;
        }
      }
    }
    for (const v1::KvResidencyEvent& event : state.kv_events()) {
      // A node that cannot tell (0) leaves what a reply taught the router in place.
      SetResidencyLocked(node, event.user_id(), event.cached_tokens(), event.history_start());
    }
  }
  if (state.has_emb_summary()) ApplyEmbSummary(node, state.emb_summary());
}

void ClusterState::NoteResidency(int node, int64_t user_id, int32_t tokens,
                                 uint64_t history_start) {
  absl::MutexLock lock(&mu_);
  SetResidencyLocked(node, user_id, tokens, history_start);
}

void ClusterState::ForgetStreamedState(int node) {
  v1::NodeState empty;
  empty.set_full_snapshot(true);
  ApplyState(node, empty);
  nodes_[node]->reported_in_flight.store(0, std::memory_order_relaxed);
  absl::MutexLock lock(&emb_update_mu_);
  const NodeMask bit = NodeMask{1} << node;
  emb_nodes_.fetch_and(~bit, std::memory_order_relaxed);
  std::vector<uint64_t>& last = emb_last_words_[node];
  for (size_t w = 0; w < last.size(); ++w) {
    for (uint64_t word = last[w]; word != 0; word &= word - 1) {
      emb_slices_[w * 64 + std::countr_zero(word)].fetch_and(~bit, std::memory_order_relaxed);
    }
  }
  last.clear();
}

void ClusterState::ApplyEmbSummary(int node, const v1::EmbSummary& summary) {
  const size_t words = summary.bits().size() / 8;
  if (words == 0 || summary.bits().size() % 8 != 0 || !std::has_single_bit(words)) return;
  absl::MutexLock lock(&emb_update_mu_);
  if (!emb_ready_.load(std::memory_order_relaxed)) {
    emb_slices_ = std::vector<std::atomic<NodeMask>>(words * 64);
    emb_hashes_ = summary.num_hashes();
    emb_seed_ = summary.seed();
    emb_ready_.store(true, std::memory_order_release);
  }
  if (emb_slices_.size() != words * 64 || emb_hashes_ != summary.num_hashes() ||
      emb_seed_ != summary.seed()) {
    spdlog::warn(
        "router: EMB summary of {} ({} bits, {} hashes) differs from the cluster's ({}, "
        "{}); ignoring it (give every node the same node.emb_summary_* settings)",
        nodes_[node]->address, words * 64, summary.num_hashes(), emb_slices_.size(), emb_hashes_);
    return;
  }
  const NodeMask bit = NodeMask{1} << node;
  std::vector<uint64_t>& last = emb_last_words_[node];
  last.resize(words, 0);
  const char* data = summary.bits().data();
  for (size_t w = 0; w < words; ++w) {
    uint64_t word;
    std::memcpy(&word, data + w * 8, 8);
    // Only bits that changed since this node's last summary touch the shared slices.
    for (uint64_t changed = word ^ last[w]; changed != 0; changed &= changed - 1) {
      const int b = std::countr_zero(changed);
      std::atomic<NodeMask>& slice = emb_slices_[w * 64 + b];
      if ((word >> b) & 1) {
        slice.fetch_or(bit, std::memory_order_relaxed);
      } else {
        slice.fetch_and(~bit, std::memory_order_relaxed);
      }
    }
    last[w] = word;
  }
  emb_nodes_.fetch_or(bit, std::memory_order_relaxed);
}

void ClusterState::CachedTokens(int64_t user_id, std::array<int32_t, kMaxNodes>* out) const {
  out->fill(0);
  absl::ReaderMutexLock lock(&mu_);
  auto it = residency_.find(user_id);
  if (it == residency_.end()) return;
  for (const ResidencyEntry& e : it->second) (*out)[e.node] = e.tokens;
}

void ClusterState::ReusableTokens(int64_t user_id, int32_t history_length, uint64_t history_start,
                                  std::array<int32_t, kMaxNodes>* out) const {
  out->fill(0);
  absl::ReaderMutexLock lock(&mu_);
  auto it = residency_.find(user_id);
  if (it == residency_.end()) return;
  for (const ResidencyEntry& e : it->second) {
    const bool other_start =
        history_start != 0 && e.history_start != 0 && e.history_start != history_start;
    (*out)[e.node] = e.tokens <= history_length && !other_start ? e.tokens : 0;
  }
}

void ClusterState::EmbCounts(const int64_t* item_ids, int count, NodeMask nodes,
                             std::array<int32_t, kMaxNodes>* out) const {
  if (!emb_ready_.load(std::memory_order_acquire)) return;
  nodes &= emb_nodes_.load(std::memory_order_relaxed);
  if (nodes == 0) return;
  const int64_t bits = static_cast<int64_t>(emb_slices_.size());
  // Positions of every id first, prefetched, so the (likely cache-missing) slice reads overlap.
  constexpr int kBatch = 64;
  int64_t positions[kBatch * 16];
  for (int begin = 0; begin < count; begin += kBatch) {
    const int end = std::min(count, begin + kBatch);
    for (int i = begin; i < end; ++i) {
      int64_t* p = positions + (i - begin) * emb_hashes_;
      BloomFilter::Positions(item_ids[i], bits, emb_hashes_, emb_seed_, p);
      for (int h = 0; h < emb_hashes_; ++h) __builtin_prefetch(&emb_slices_[p[h]]);
    }
    for (int i = begin; i < end; ++i) {
      const int64_t* p = positions + (i - begin) * emb_hashes_;
      NodeMask holders = nodes;
      for (int h = 0; h < emb_hashes_; ++h) {
        holders &= emb_slices_[p[h]].load(std::memory_order_relaxed);
      }
      for (; holders != 0; holders &= holders - 1) ++(*out)[std::countr_zero(holders)];
    }
  }
}

double ClusterState::Load(int node) const {
  const Node& n = *nodes_[node];
  const int outstanding = std::max(n.router_in_flight.load(std::memory_order_relaxed),
                                   n.reported_in_flight.load(std::memory_order_relaxed));
  const int capacity = n.capacity.load(std::memory_order_relaxed);
  return std::min(1.0, static_cast<double>(outstanding) / (2.0 * capacity));
}

double ClusterState::committed_split(int node) const {
  return nodes_[node]->committed_split.load(std::memory_order_relaxed);
}

int64_t ClusterState::kv_resident_users(int node) const {
  return nodes_[node]->kv_resident_users.load(std::memory_order_relaxed);
}

}  // namespace helm::route
