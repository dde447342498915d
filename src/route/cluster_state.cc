#include "helm/route/cluster_state.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "helm/common/bloom.h"
#include "spdlog/spdlog.h"

namespace helm::route {

void ClusterState::FreeSlices::operator()(std::atomic<uint64_t>* slices) const {
  std::free(slices);
}

std::unique_ptr<std::atomic<uint64_t>[], ClusterState::FreeSlices> ClusterState::AllocateSlices(
    int64_t words) {
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t bytes = static_cast<size_t>(words) * sizeof(std::atomic<uint64_t>);
  const size_t alignment = bytes >= kHugePage ? kHugePage : alignof(std::max_align_t);
  void* memory = std::aligned_alloc(alignment, (bytes + alignment - 1) / alignment * alignment);
  if (memory == nullptr) throw std::bad_alloc();
  // A hint: without transparent huge pages it changes nothing.
  if (alignment == kHugePage) madvise(memory, bytes, MADV_HUGEPAGE);
  auto* slices = static_cast<std::atomic<uint64_t>*>(memory);
  for (int64_t i = 0; i < words; ++i) new (&slices[i]) std::atomic<uint64_t>(0);
  return std::unique_ptr<std::atomic<uint64_t>[], FreeSlices>(slices);
}

int ClusterState::AddNode(const std::string& address) {
  absl::MutexLock lock(&add_mu_);
  const int index = num_nodes_.load(std::memory_order_relaxed);
  if (index >= kMaxNodes) return -1;
  std::unique_ptr<Node[]>& block = blocks_[index / kBlockNodes];
  if (block == nullptr) block = std::make_unique<Node[]>(kBlockNodes);
  block[index % kBlockNodes].address = address;
  num_nodes_.store(index + 1, std::memory_order_release);
  return index;
}

void ClusterState::SetBit(std::array<std::atomic<uint64_t>, kWords>& words, int node, bool value) {
  const uint64_t bit = uint64_t{1} << (node % 64);
  if (value) {
    words[node / 64].fetch_or(bit, std::memory_order_relaxed);
  } else {
    words[node / 64].fetch_and(~bit, std::memory_order_relaxed);
  }
}

void ClusterState::SetHealthy(int node, bool healthy) { SetBit(healthy_, node, healthy); }

bool ClusterState::healthy(int node) const {
  return (healthy_[node / 64].load(std::memory_order_relaxed) >> (node % 64)) & 1;
}

bool ClusterState::draining(int node) const {
  return (draining_[node / 64].load(std::memory_order_relaxed) >> (node % 64)) & 1;
}

NodeSet ClusterState::Routable() const {
  const size_t words = NodeSet::WordsFor(num_nodes());
  std::array<uint64_t, kWords> routable;
  for (size_t w = 0; w < words; ++w) {
    routable[w] =
        healthy_[w].load(std::memory_order_relaxed) & ~draining_[w].load(std::memory_order_relaxed);
  }
  return NodeSet::FromWords(absl::MakeConstSpan(routable.data(), words));
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
  if (e == entries.end()) e = entries.insert(entries.end(), {node, 0, 0});
  e->tokens = tokens;
  if (history_start != 0) e->history_start = history_start;
}

void ClusterState::DropResidencyLocked(int node) {
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

absl::Status ClusterState::ApplyUpdate(int node, const NodeUpdate& update) {
  Node& n = NodeAt(node);
  if (update.load.has_value()) {
    n.reported_in_flight.store(update.load->in_flight, std::memory_order_relaxed);
    n.inv_twice_capacity.store(0.5 / std::max(1, update.load->capacity), std::memory_order_relaxed);
    // Out-of-range or NaN reports count as no pressure rather than poisoning every score.
    const double occupancy = update.load->kv_occupancy;
    const double eviction_rate = update.load->kv_eviction_rate;
    n.kv_occupancy.store(occupancy > 0 ? std::min(1.0, occupancy) : 0.0, std::memory_order_relaxed);
    n.kv_eviction_rate.store(
        eviction_rate > 0 && std::isfinite(eviction_rate) ? eviction_rate : 0.0,
        std::memory_order_relaxed);
  }
  n.committed_split.store(update.committed_split, std::memory_order_relaxed);
  n.target_split.store(update.target_split, std::memory_order_relaxed);
  SetBit(draining_, node, update.draining);
  n.kv_resident_users.store(update.kv_resident_users, std::memory_order_relaxed);
  if (update.full_snapshot || !update.kv_events.empty()) {
    absl::MutexLock lock(&mu_);
    // A snapshot is the whole truth: drop everything this node said before.
    if (update.full_snapshot) DropResidencyLocked(node);
    for (const KvResidencyUpdate& event : update.kv_events) {
      // A node that cannot tell (0) leaves what a reply taught the router in place.
      SetResidencyLocked(node, event.user_id, event.cached_tokens, event.history_start);
    }
  }
  if (update.emb_summary.has_value()) return ApplyEmbSummary(node, *update.emb_summary);
  return absl::OkStatus();
}

void ClusterState::NoteResidency(int node, int64_t user_id, int32_t tokens,
                                 uint64_t history_start) {
  absl::MutexLock lock(&mu_);
  SetResidencyLocked(node, user_id, tokens, history_start);
}

void ClusterState::ForgetStreamedState(int node) {
  NodeUpdate empty;
  empty.full_snapshot = true;
  ApplyUpdate(node, empty).IgnoreError();  // carries no summary: cannot fail
  Node& n = NodeAt(node);
  n.reported_in_flight.store(0, std::memory_order_relaxed);
  n.kv_occupancy.store(0.0, std::memory_order_relaxed);
  n.kv_eviction_rate.store(0.0, std::memory_order_relaxed);
  absl::MutexLock lock(&emb_update_mu_);
  ClearEmbLocked(node);
}

void ClusterState::OnPlaced(int node) {
  NodeAt(node).placements.fetch_add(1, std::memory_order_relaxed);
  const int nodes = num_nodes();
  int64_t since = placements_since_decay_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (since < static_cast<int64_t>(kPlacementWindowPerNode) * nodes) return;
  // One thread decays: the one whose count is still the latest (a loser leaves it to the next
  // placement). Halving with a CAS keeps concurrent increments.
  if (!placements_since_decay_.compare_exchange_strong(since, 0, std::memory_order_relaxed)) {
    return;
  }
  for (int i = 0; i < nodes; ++i) {
    std::atomic<int32_t>& count = NodeAt(i).placements;
    int32_t c = count.load(std::memory_order_relaxed);
    while (c > 0 && !count.compare_exchange_weak(c, c / 2, std::memory_order_relaxed)) {
    }
  }
}

void ClusterState::ClearEmbLocked(int node) {
  SetBit(emb_nodes_, node, false);
  if (static_cast<size_t>(node) >= emb_last_words_.size()) return;
  std::vector<uint64_t>& last = emb_last_words_[node];
  if (last.empty()) return;
  // The table is live (a node has words only once one exists) and wide enough for `node`.
  const EmbTable& table = *emb_tables_.back();
  const uint64_t bit = uint64_t{1} << (node % 64);
  std::atomic<uint64_t>* column = table.slices.get() + node / 64;
  for (size_t w = 0; w < last.size(); ++w) {
    for (uint64_t word = last[w]; word != 0; word &= word - 1) {
      const int64_t p = static_cast<int64_t>(w) * 64 + std::countr_zero(word);
      column[p * table.words_per_bit].fetch_and(~bit, std::memory_order_relaxed);
    }
  }
  last.clear();
}

absl::Status ClusterState::CheckEmbSummary(const EmbSummaryUpdate& summary) const {
  if (summary.num_hashes < 1 || summary.num_hashes > kMaxEmbHashes) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_hashes must be in [1, ", kMaxEmbHashes, "], got ", summary.num_hashes));
  }
  const size_t bytes = summary.bits.size();
  if (bytes == 0 || bytes % 8 != 0 || !std::has_single_bit(bytes / 8)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bits must be a power of two of 64-bit words, got ", bytes, " bytes"));
  }
  if (!emb_tables_.empty()) {
    const EmbTable& table = *emb_tables_.back();
    const int64_t bits = static_cast<int64_t>(bytes) * 8;
    if (bits != table.bits || summary.num_hashes != table.num_hashes ||
        summary.seed != table.seed) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape (", bits, " bits, ", summary.num_hashes, " hashes, seed ", summary.seed,
          ") differs from the cluster's (", table.bits, ", ", table.num_hashes, ", ", table.seed,
          "); give every node the same node.emb_summary_* settings"));
    }
  }
  return absl::OkStatus();
}

ClusterState::EmbTable* ClusterState::TableFor(int node) {
  const int needed_words = static_cast<int>(NodeSet::WordsFor(std::max(node + 1, num_nodes())));
  EmbTable* old = emb_tables_.back().get();
  if (old->words_per_bit >= needed_words) return old;
  auto table = std::make_unique<EmbTable>();
  table->bits = old->bits;
  table->num_hashes = old->num_hashes;
  table->seed = old->seed;
  table->words_per_bit = static_cast<int>(std::bit_ceil(static_cast<unsigned>(needed_words)));
  const int64_t size = table->bits * table->words_per_bit;
  table->slices = AllocateSlices(size);
  for (int64_t p = 0; p < table->bits; ++p) {
    for (int w = 0; w < table->words_per_bit; ++w) {
      const uint64_t v =
          w < old->words_per_bit
              ? old->slices[p * old->words_per_bit + w].load(std::memory_order_relaxed)
              : 0;
      table->slices[p * table->words_per_bit + w].store(v, std::memory_order_relaxed);
    }
  }
  emb_tables_.push_back(std::move(table));
  emb_table_.store(emb_tables_.back().get(), std::memory_order_release);
  return emb_tables_.back().get();
}

absl::Status ClusterState::ApplyEmbSummary(int node, const EmbSummaryUpdate& summary) {
  absl::MutexLock lock(&emb_update_mu_);
  if (static_cast<size_t>(node) >= emb_last_words_.size()) {
    emb_last_words_.resize(node + 1);
    emb_last_error_.resize(node + 1);
  }
  if (absl::Status status = CheckEmbSummary(summary); !status.ok()) {
    // Handled here (the node keeps its previous summary), so logged here; once per node and
    // error, as a misconfigured node repeats it with every summary it publishes.
    std::string message(status.message());
    if (emb_last_error_[node] != message) {
      spdlog::error(
          "router: rejected the EMB summary of node {} ({}): {}; keeping its previous one", node,
          address(node), message);
      emb_last_error_[node] = std::move(message);
    }
    return absl::InvalidArgumentError(
        absl::StrCat("EMB summary of node ", node, ": ", status.message()));
  }
  emb_last_error_[node].clear();
  const size_t words = summary.bits.size() / 8;
  if (emb_tables_.empty()) {
    auto table = std::make_unique<EmbTable>();
    table->bits = static_cast<int64_t>(words) * 64;
    table->num_hashes = summary.num_hashes;
    table->seed = summary.seed;
    table->words_per_bit = static_cast<int>(
        std::bit_ceil(static_cast<unsigned>(NodeSet::WordsFor(std::max(node + 1, num_nodes())))));
    table->slices = AllocateSlices(table->bits * table->words_per_bit);
    emb_tables_.push_back(std::move(table));
    emb_table_.store(emb_tables_.back().get(), std::memory_order_release);
  }
  EmbTable& table = *TableFor(node);
  const uint64_t bit = uint64_t{1} << (node % 64);
  std::atomic<uint64_t>* column = table.slices.get() + node / 64;
  std::vector<uint64_t>& last = emb_last_words_[node];
  last.resize(words, 0);
  const char* data = summary.bits.data();
  for (size_t w = 0; w < words; ++w) {
    uint64_t word;
    std::memcpy(&word, data + w * 8, 8);
    // Only bits that changed since this node's last summary touch the shared slices.
    for (uint64_t changed = word ^ last[w]; changed != 0; changed &= changed - 1) {
      const int b = std::countr_zero(changed);
      std::atomic<uint64_t>& slice =
          column[(static_cast<int64_t>(w) * 64 + b) * table.words_per_bit];
      if ((word >> b) & 1) {
        slice.fetch_or(bit, std::memory_order_relaxed);
      } else {
        slice.fetch_and(~bit, std::memory_order_relaxed);
      }
    }
    last[w] = word;
  }
  SetBit(emb_nodes_, node, true);
  return absl::OkStatus();
}

void ClusterState::CachedTokens(int64_t user_id, absl::Span<int32_t> out) const {
  std::fill(out.begin(), out.end(), 0);
  absl::ReaderMutexLock lock(&mu_);
  auto it = residency_.find(user_id);
  if (it == residency_.end()) return;
  for (const ResidencyEntry& e : it->second) {
    if (static_cast<size_t>(e.node) < out.size()) out[e.node] = e.tokens;
  }
}

std::vector<int32_t> ClusterState::CachedTokens(int64_t user_id) const {
  std::vector<int32_t> out(num_nodes());
  CachedTokens(user_id, absl::MakeSpan(out));
  return out;
}

void ClusterState::ReusableTokens(int64_t user_id, int32_t history_length, uint64_t history_start,
                                  absl::Span<int32_t> out) const {
  std::fill(out.begin(), out.end(), 0);
  absl::ReaderMutexLock lock(&mu_);
  auto it = residency_.find(user_id);
  if (it == residency_.end()) return;
  for (const ResidencyEntry& e : it->second) {
    if (static_cast<size_t>(e.node) >= out.size()) continue;
    const bool other_start =
        history_start != 0 && e.history_start != 0 && e.history_start != history_start;
    out[e.node] = e.tokens <= history_length && !other_start ? e.tokens : 0;
  }
}

std::vector<int32_t> ClusterState::ReusableTokens(int64_t user_id, int32_t history_length,
                                                  uint64_t history_start) const {
  std::vector<int32_t> out(num_nodes());
  ReusableTokens(user_id, history_length, history_start, absl::MakeSpan(out));
  return out;
}

void ClusterState::EmbCounts(const int64_t* item_ids, int count, const NodeSet& nodes,
                             absl::Span<int32_t> out) const {
  const EmbTable* table = emb_table_.load(std::memory_order_acquire);
  if (table == nullptr || count <= 0) return;
  // The words of `nodes` that name nodes with a summary (and fit `out`), and which they are.
  const int stride = table->words_per_bit;
  const int usable_words =
      std::min({stride, static_cast<int>(nodes.words().size()),
                static_cast<int>(NodeSet::WordsFor(static_cast<int>(out.size())))});
  std::array<uint64_t, kWords> mask;
  std::array<int, kWords> active;
  int num_active = 0;
  for (int w = 0; w < usable_words; ++w) {
    uint64_t m = nodes.words()[w] & emb_nodes_[w].load(std::memory_order_relaxed);
    if (static_cast<size_t>(w + 1) * 64 > out.size() && out.size() % 64 != 0) {
      m &= (uint64_t{1} << (out.size() % 64)) - 1;
    }
    if (m != 0) {
      mask[num_active] = m;
      active[num_active++] = w;
    }
  }
  if (num_active == 0) return;
  const int hashes = table->num_hashes;  // validated: in [1, kMaxEmbHashes]
  const std::atomic<uint64_t>* slices = table->slices.get();
  // Raw: the masks above keep every index below out.size(), and Span's checked operator[]
  // costs a branch per hit.
  int32_t* const counts = out.data();
  // Positions of every id first, prefetched, so the (likely cache-missing) slice reads overlap.
  constexpr int kBatch = 64;
  int64_t positions[kBatch * kMaxEmbHashes];
  for (int begin = 0; begin < count; begin += kBatch) {
    const int end = std::min(count, begin + kBatch);
    for (int i = begin; i < end; ++i) {
      int64_t* p = positions + (i - begin) * hashes;
      BloomFilter::Positions(item_ids[i], table->bits, hashes, table->seed, p);
      for (int h = 0; h < hashes; ++h) {
        p[h] *= stride;
        __builtin_prefetch(&slices[p[h] + active[0]]);
        // A wide table (over 512 nodes) spreads a bit's node set over more than one cache line.
        if (num_active > 1) __builtin_prefetch(&slices[p[h] + active[num_active - 1]]);
      }
    }
    for (int i = begin; i < end; ++i) {
      const int64_t* p = positions + (i - begin) * hashes;
      for (int a = 0; a < num_active; ++a) {
        const int w = active[a];
        uint64_t holders = mask[a];
        for (int h = 0; h < hashes && holders != 0; ++h) {
          holders &= slices[p[h] + w].load(std::memory_order_relaxed);
        }
        for (; holders != 0; holders &= holders - 1) ++counts[w * 64 + std::countr_zero(holders)];
      }
    }
  }
}

double ClusterState::committed_split(int node) const {
  return NodeAt(node).committed_split.load(std::memory_order_relaxed);
}

double ClusterState::target_split(int node) const {
  return NodeAt(node).target_split.load(std::memory_order_relaxed);
}

int64_t ClusterState::kv_resident_users(int node) const {
  return NodeAt(node).kv_resident_users.load(std::memory_order_relaxed);
}

bool ClusterState::has_emb_summary(int node) const {
  return (emb_nodes_[node / 64].load(std::memory_order_relaxed) >> (node % 64)) & 1;
}

}  // namespace helm::route
