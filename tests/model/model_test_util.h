// Shared fixtures of the model tests: small dims, random requests, a host/device "KV cache" of
// blocks that a forward's suffix is appended to, and the relative-error measure the tests use.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "helm/model/model.h"

namespace helm::model::testing {

inline uint64_t TestSeed() {
  return static_cast<uint64_t>(::testing::UnitTest::GetInstance()->random_seed()) + 20240601u;
}

// max |a - b| / max |b|: the error relative to the reference's largest magnitude (scores near
// zero make element-wise relative error meaningless).
inline double MaxRelativeError(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double max_diff = 0.0;
  double max_ref = 1e-30;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    max_diff = std::max(max_diff, std::abs(double{a[i]} - b[i]));
    max_ref = std::max(max_ref, std::abs(double{b[i]}));
  }
  return max_diff / max_ref;
}

inline ModelDims SmallDims(Dtype kv_dtype = Dtype::kFp32, int32_t emb_dim = 24,
                           int32_t tokens_per_block = 4) {
  ModelDims d;
  d.num_layers = 3;
  d.num_heads = 2;
  d.d_qk = 8;
  d.d_v = 12;
  d.d_model = 16;
  d.emb_dim = emb_dim;
  d.num_actions = 5;
  d.position_buckets = 8;
  d.time_buckets = 12;
  d.tokens_per_block = tokens_per_block;
  d.kv_dtype = kv_dtype;
  return d;
}

// One user's request, all on the host.
struct RandomRequest {
  std::vector<int32_t> actions;
  std::vector<int64_t> timestamps;
  std::vector<float> history_emb;    // [L, emb_dim]
  std::vector<float> candidate_emb;  // [C, emb_dim]
  int64_t length() const { return static_cast<int64_t>(actions.size()); }
};

inline RandomRequest MakeRequest(const ModelDims& d, int64_t length, int64_t candidates,
                                 std::mt19937_64& rng) {
  RandomRequest r;
  std::uniform_int_distribution<int32_t> action(0, d.num_actions - 1);
  std::uniform_int_distribution<int64_t> gap(0, 5000);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int64_t t = 1700000000;
  for (int64_t i = 0; i < length; ++i) {
    r.actions.push_back(action(rng));
    t += gap(rng) * (i % 7 == 0 ? 50 : 1);
    r.timestamps.push_back(t);
  }
  r.history_emb.resize(length * d.emb_dim);
  for (auto& v : r.history_emb) v = normal(rng);
  r.candidate_emb.resize(candidates * d.emb_dim);
  for (auto& v : r.candidate_emb) v = normal(rng);
  return r;
}

// Backend-memory copy of host floats.
class BackendArray {
 public:
  BackendArray(const Kernels& k, KernelContext& ctx, const void* host, size_t bytes) : k_(k) {
    ptr_ = k.Allocate(std::max<size_t>(bytes, 1)).value();
    EXPECT_TRUE(k.CopyToBackend(ctx, ptr_, host, bytes).ok());
    EXPECT_TRUE(k.Synchronize(ctx).ok());
  }
  ~BackendArray() { k_.Free(ptr_); }
  BackendArray(const BackendArray&) = delete;
  BackendArray& operator=(const BackendArray&) = delete;
  void* get() const { return ptr_; }
  const float* floats() const { return static_cast<const float*>(ptr_); }

 private:
  const Kernels& k_;
  void* ptr_ = nullptr;
};

// A user's KV blocks inside one arena of backend memory (as the pool holds them).
class BlockArena {
 public:
  BlockArena(const Model& model, int64_t num_blocks) : model_(model) {
    block_bytes_ = model.dims().block_bytes();
    arena_ = model.kernels().Allocate(block_bytes_ * num_blocks).value();
    for (int64_t b = 0; b < num_blocks; ++b) free_.push_back(b);
  }
  ~BlockArena() { model_.kernels().Free(arena_); }
  BlockArena(const BlockArena&) = delete;
  BlockArena& operator=(const BlockArena&) = delete;

  // Grows the user's table to hold `tokens` tokens, taking free blocks from the back.
  void Reserve(int64_t tokens) {
    const int64_t tpb = model_.dims().tokens_per_block;
    while (static_cast<int64_t>(table_.size()) * tpb < tokens) {
      ASSERT_FALSE(free_.empty());
      offsets_.push_back(free_.back() * block_bytes_);
      free_.pop_back();
      table_.push_back(Block(offsets_.back()));
    }
  }
  void* Block(int64_t offset) const { return static_cast<char*>(arena_) + offset; }
  std::vector<void*>& table() { return table_; }
  std::vector<const void*> const_table() const { return {table_.begin(), table_.end()}; }
  std::vector<int64_t>& offsets() { return offsets_; }
  std::vector<int64_t>& free_blocks() { return free_; }
  void* arena() const { return arena_; }
  int64_t block_bytes() const { return block_bytes_; }

 private:
  const Model& model_;
  int64_t block_bytes_ = 0;
  void* arena_ = nullptr;
  std::vector<int64_t> free_;
  std::vector<int64_t> offsets_;
  std::vector<void*> table_;
};

// Runs a forward over history [0, length) of `r` with `cached` tokens in `arena`, scoring all
// of r's candidates; when `append` is set, appends the computed suffix to the arena.
inline std::vector<float> RunForward(const Model& model, Workspace& ws, const RandomRequest& r,
                                     int64_t length, int64_t cached, BlockArena* arena, bool append,
                                     int32_t microbatch = 0) {
  const ModelDims& d = model.dims();
  const Kernels& k = model.kernels();
  const int64_t C = static_cast<int64_t>(r.candidate_emb.size()) / d.emb_dim;
  BackendArray suffix(k, ws.context(), r.history_emb.data() + cached * d.emb_dim,
                      sizeof(float) * (length - cached) * d.emb_dim);
  BackendArray cands(k, ws.context(), r.candidate_emb.data(), sizeof(float) * C * d.emb_dim);
  ForwardRequest req;
  req.actions = absl::MakeConstSpan(r.actions.data(), length);
  req.timestamps = absl::MakeConstSpan(r.timestamps.data(), length);
  req.cached_tokens = cached;
  std::vector<const void*> blocks;
  if (arena != nullptr) blocks = arena->const_table();
  req.cached_blocks = blocks;
  req.suffix.rows = suffix.floats();
  req.candidates.rows = cands.floats();
  req.num_candidates = C;
  req.candidate_microbatch = microbatch;
  absl::StatusOr<ForwardResult> result = model.Forward(ws, req);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok()) return {};
  if (append && arena != nullptr) {
    arena->Reserve(length);
    const absl::Status s = model.AppendKv(ws, arena->table(), cached, length - cached);
    EXPECT_TRUE(s.ok()) << s;
  }
  return result->scores;
}

}  // namespace helm::model::testing
