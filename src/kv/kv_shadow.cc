#include "helm/kv/kv_shadow.h"

#include <algorithm>

namespace helm::kv {

KvShadow::KvShadow(const KvOptions& options, double attention_ratio, int64_t capacity_blocks)
    : tokens_per_block_(std::max(1, options.tokens_per_block)),
      allow_trim_(options.allow_trim),
      capacity_blocks_(std::max<int64_t>(0, capacity_blocks)),
      priority_(options.eviction == "cost_aware", attention_ratio) {}

// Each step is the cache's own (kv_cache.cc): Acquire, then Reserve and Commit of the suffix.
int64_t KvShadow::Request(int64_t user_id, int64_t history_tokens, uint64_t history_start) {
  User& u = users_[user_id];
  // A shorter history than the cached one matches whole blocks only (the cache checks a partial
  // block's hash at the cached length alone).
  const int64_t prefix = u.start != history_start ? 0
                         : u.cached <= history_tokens
                             ? u.cached
                             : history_tokens / tokens_per_block_ * tokens_per_block_;
  ++u.requests;
  Reprioritize(user_id, u, /*used=*/true);
  if (prefix < history_tokens) {
    // A cached tail the history disagrees with goes before the suffix is appended.
    if (u.cached > prefix) Trim(user_id, u, Blocks(prefix), /*keep_user=*/true);
    u.cached = std::min(u.cached, prefix);
    if (MakeRoom(Blocks(history_tokens) - Blocks(u.cached), user_id)) {
      User& again = users_.find(user_id)->second;  // MakeRoom may rehash the table
      used_blocks_ += Blocks(history_tokens) - Blocks(again.cached);
      if (prefix == 0) again.start = history_start;
      again.cached = history_tokens;
      Reprioritize(user_id, again, /*used=*/false);
    }
  }
  User& after = users_.find(user_id)->second;
  if (after.cached == 0) {
    by_priority_.erase({after.priority, user_id});
    users_.erase(user_id);
  }
  return prefix;
}

void KvShadow::Reprioritize(int64_t user_id, User& u, bool used) {
  by_priority_.erase({u.priority, user_id});
  u.priority = priority_.Next(u.priority, u.requests, u.cached, used);
  by_priority_.insert({u.priority, user_id});
}

void KvShadow::Trim(int64_t user_id, User& u, int64_t keep_blocks, bool keep_user) {
  const int64_t held = Blocks(u.cached);
  if (held <= keep_blocks) return;
  used_blocks_ -= held - keep_blocks;
  u.cached = std::min(u.cached, keep_blocks * tokens_per_block_);
  Reprioritize(user_id, u, /*used=*/false);
  if (u.cached == 0 && !keep_user) {
    by_priority_.erase({u.priority, user_id});
    users_.erase(user_id);
  }
}

bool KvShadow::MakeRoom(int64_t blocks, int64_t protect) {
  while (capacity_blocks_ - used_blocks_ < blocks) {
    const int64_t shortfall = blocks - (capacity_blocks_ - used_blocks_);
    auto victim = by_priority_.begin();
    // Every other user in the order holds blocks (one left with none is forgotten).
    while (victim != by_priority_.end() && victim->second == protect) ++victim;
    if (victim == by_priority_.end()) return false;
    const auto [priority, user_id] = *victim;
    User& u = users_.find(user_id)->second;
    const int64_t held = Blocks(u.cached);
    const int64_t keep =
        priority_.cost_aware() && allow_trim_ && held > shortfall ? held - shortfall : 0;
    priority_.Evicted(priority);
    Trim(user_id, u, keep, /*keep_user=*/false);
  }
  return true;
}

}  // namespace helm::kv
