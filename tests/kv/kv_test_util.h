// Helpers shared by the KV tests: histories, and K/V contents written the way the model writes
// them (through the offsets Reserve returns) so that tests can check every cached byte later.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "helm/kv/kv_cache.h"
#include "helm/pool/storage.h"

namespace helm::kv::testutil {

struct UserHistory {
  std::vector<int64_t> items;
  std::vector<int32_t> actions;
  std::vector<int64_t> timestamps;

  History View() const { return History{items, actions, timestamps}; }
  int64_t size() const { return static_cast<int64_t>(items.size()); }
  void Append(int64_t item, int32_t action, int64_t ts) {
    items.push_back(item);
    actions.push_back(action);
    timestamps.push_back(ts);
  }
};

inline uint64_t Mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ull;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dull;
  return x ^ (x >> 33);
}

// The 4-byte word stored for (user, token content, layer, K/V half, element): any change of the
// token's event changes it.
inline uint32_t Word(int64_t user, const UserHistory& h, int64_t t, int layer, int half, int j) {
  const uint64_t token = Mix(static_cast<uint64_t>(h.items[t]) * 31 + h.timestamps[t]);
  return static_cast<uint32_t>(Mix(token ^ (static_cast<uint64_t>(user) << 20) ^
                                   (static_cast<uint64_t>(layer) << 12) ^
                                   (static_cast<uint64_t>(half) << 10) ^ static_cast<uint64_t>(j)));
}

// The layers inside a block, which the cache itself does not know: tests write and verify every
// element the way the model's kernels lay them out. fp32 only in tests.
// A CPU-backed pool of 16 chunks of `chunk_bytes`, `kv_chunks` of them the KV cache's, resized at
// most `max_step_bytes` a step.
inline pool::PoolOptions SixteenChunks(int kv_chunks, int64_t chunk_bytes = 64 << 10,
                                       int64_t max_step_bytes = 64 << 10) {
  pool::PoolOptions po;
  po.bytes = 16 * chunk_bytes;
  po.chunk_bytes = chunk_bytes;
  po.initial_split = 1.0 - kv_chunks / 16.0;
  po.r_min = 0.0;
  po.r_max = 1.0;
  po.backend = "cpu";
  po.max_step_bytes = max_step_bytes;
  return po;
}

// Blocks of `tokens_per_block` tokens under `eviction`, trimming tails or not.
inline KvOptions Eviction(int tokens_per_block, const std::string& eviction, bool allow_trim) {
  KvOptions ko;
  ko.tokens_per_block = tokens_per_block;
  ko.eviction = eviction;
  ko.allow_trim = allow_trim;
  return ko;
}

struct BlockShape {
  int num_layers = 1;
  int num_heads = 1;
  int d_qk = 8;
  int d_v = 8;
};

// Bytes of a block of `tpb` tokens: layout [num_layers][2][tpb][num_heads][d] of fp32.
inline int64_t BlockBytes(const BlockShape& m, int tpb) {
  return int64_t{m.num_layers} * tpb * m.num_heads * (m.d_qk + m.d_v) * 4;
}

// KvCache::Create's options for blocks of `m` (kv.dtype must be fp32).
inline KvCacheOptions CacheOptions(const KvOptions& kv, const BlockShape& m,
                                   double attention_ratio) {
  KvCacheOptions o;
  o.kv = kv;
  o.block_bytes = BlockBytes(m, kv.tokens_per_block);
  o.attention_ratio = attention_ratio;
  return o;
}

// Elements of one token in one (layer, half) run.
inline int TokenElems(const BlockShape& m, int half) {
  return m.num_heads * (half == 0 ? m.d_qk : m.d_v);
}

// Byte offset of token slot `s`, (layer, half) inside a block: layout
// [num_layers][2][tokens_per_block][num_heads][d].
inline int64_t InBlockOffset(const BlockShape& m, int tpb, int layer, int half, int s) {
  const int64_t k_bytes = int64_t{tpb} * TokenElems(m, 0) * 4;
  const int64_t v_bytes = int64_t{tpb} * TokenElems(m, 1) * 4;
  return layer * (k_bytes + v_bytes) + (half == 0 ? 0 : k_bytes) +
         int64_t{s} * TokenElems(m, half) * 4;
}

// Writes tokens [r.first_token, r.first_token + r.num_tokens) of `h` into the reserved blocks.
inline absl::Status WriteTokens(pool::Storage* storage, const BlockShape& m, int tpb, int64_t user,
                                const UserHistory& h, const KvReservation& r) {
  std::vector<uint32_t> words;
  for (int64_t t = r.first_token; t < r.first_token + r.num_tokens; ++t) {
    const int64_t block = r.block_offsets[t / tpb - r.first_token / tpb];
    for (int layer = 0; layer < m.num_layers; ++layer) {
      for (int half = 0; half < 2; ++half) {
        const int n = TokenElems(m, half);
        words.resize(n);
        for (int j = 0; j < n; ++j) words[j] = Word(user, h, t, layer, half, j);
        const int64_t at = block + InBlockOffset(m, tpb, layer, half, static_cast<int>(t % tpb));
        pool::HostCopy c{at, words.data(), int64_t{n} * 4};
        absl::Status s = storage->CopyHostToPool({&c, 1});
        if (!s.ok()) return s;
      }
    }
  }
  return absl::OkStatus();
}

// Checks tokens [0, tokens) of `h` in `blocks` (block i holds tokens [i*tpb, (i+1)*tpb)).
inline absl::Status VerifyTokens(pool::Storage* storage, const BlockShape& m, int tpb, int64_t user,
                                 const UserHistory& h, const std::vector<int64_t>& blocks,
                                 int64_t tokens) {
  if (!storage->has_payload()) return absl::OkStatus();
  std::vector<uint32_t> words;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int layer = 0; layer < m.num_layers; ++layer) {
      for (int half = 0; half < 2; ++half) {
        const int n = TokenElems(m, half);
        words.resize(n);
        const int64_t at =
            blocks[t / tpb] + InBlockOffset(m, tpb, layer, half, static_cast<int>(t % tpb));
        absl::Status s = storage->CopyPoolToHost(at, words.data(), int64_t{n} * 4);
        if (!s.ok()) return s;
        for (int j = 0; j < n; ++j) {
          if (words[j] != Word(user, h, t, layer, half, j)) {
            return absl::DataLossError(absl::StrCat("user ", user, " token ", t, " layer ", layer,
                                                    " half ", half, " element ", j, " differs"));
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace helm::kv::testutil
