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

// One request's inputs in backend memory, ready for Forward or ForwardBatch: history [0, length)
// of `r` with `cached` tokens in `arena` (nullptr: none), all of r's candidates. Embeddings come as
// rows, or when `by_location` are gathered: the suffix from the request's own arena (reversed
// rows, one row gap), the candidates from its own staging buffer (reversed rows). REQUIRES: fp32
// embeddings. The block table is `arena`'s at construction.
class BackendRequest {
 public:
  BackendRequest(const Model& model, KernelContext& ctx, const RandomRequest& r, int64_t length,
                 int64_t cached, const BlockArena* arena, bool by_location,
                 int32_t microbatch = 0) {
    const ModelDims& d = model.dims();
    const Kernels& k = model.kernels();
    EXPECT_EQ(d.emb_dtype, Dtype::kFp32);
    const int64_t S = length - cached;
    const int64_t C = static_cast<int64_t>(r.candidate_emb.size()) / d.emb_dim;
    const int64_t row_floats = d.emb_dim;
    if (by_location) {
      std::vector<float> arena_rows(std::max<int64_t>(1, 2 * S) * row_floats, 0.0f);
      std::vector<float> staging_rows(std::max<int64_t>(1, C) * row_floats, 0.0f);
      for (int64_t i = 0; i < S; ++i) {
        const int64_t slot = 2 * (S - 1 - i) + 1;
        std::copy_n(r.history_emb.data() + (cached + i) * row_floats, row_floats,
                    arena_rows.data() + slot * row_floats);
        hist_locs_.push_back(slot * row_floats * int64_t{sizeof(float)});
      }
      for (int64_t c = 0; c < C; ++c) {
        const int64_t row = C - 1 - c;
        std::copy_n(r.candidate_emb.data() + c * row_floats, row_floats,
                    staging_rows.data() + row * row_floats);
        cand_locs_.push_back(-(row + 1));
      }
      suffix_ = std::make_unique<BackendArray>(k, ctx, arena_rows.data(),
                                               sizeof(float) * arena_rows.size());
      cands_ = std::make_unique<BackendArray>(k, ctx, staging_rows.data(),
                                              sizeof(float) * staging_rows.size());
      req_.suffix = {nullptr, suffix_->get(), nullptr, hist_locs_.data()};
      req_.candidates = {nullptr, nullptr, cands_->get(), cand_locs_.data()};
    } else {
      suffix_ = std::make_unique<BackendArray>(k, ctx, r.history_emb.data() + cached * row_floats,
                                               sizeof(float) * S * row_floats);
      cands_ = std::make_unique<BackendArray>(k, ctx, r.candidate_emb.data(),
                                              sizeof(float) * C * row_floats);
      req_.suffix.rows = suffix_->floats();
      req_.candidates.rows = cands_->floats();
    }
    if (arena != nullptr) blocks_ = arena->const_table();
    req_.actions = absl::MakeConstSpan(r.actions.data(), length);
    req_.timestamps = absl::MakeConstSpan(r.timestamps.data(), length);
    req_.cached_tokens = cached;
    req_.cached_blocks = blocks_;
    req_.num_candidates = C;
    req_.candidate_microbatch = microbatch;
  }
  BackendRequest(const BackendRequest&) = delete;
  BackendRequest& operator=(const BackendRequest&) = delete;
  const ForwardRequest& request() const { return req_; }

 private:
  std::unique_ptr<BackendArray> suffix_, cands_;
  std::vector<int64_t> hist_locs_, cand_locs_;
  std::vector<const void*> blocks_;
  ForwardRequest req_;
};

// The K/V of tokens [0, tokens) of every layer as the user's blocks in `arena` hold them, as fp32
// on the host: [tokens][num_layers][2: K then V][num_heads * d].
inline std::vector<float> ReadKv(const Model& model, KernelContext& ctx, const BlockArena& arena,
                                 int64_t tokens) {
  const ModelDims& d = model.dims();
  const int64_t tpb = d.tokens_per_block;
  const int64_t k_row = int64_t{d.num_heads} * d.d_qk;
  const int64_t v_row = int64_t{d.num_heads} * d.d_v;
  const std::vector<const void*> table = arena.const_table();
  std::vector<char> block(d.block_bytes());
  std::vector<float> out;
  for (int64_t t = 0; t < tokens; ++t) {
    if (t % tpb == 0) {
      EXPECT_TRUE(model.kernels().CopyToHost(ctx, block.data(), table[t / tpb], block.size()).ok());
    }
    const int64_t slot = t % tpb;
    for (int64_t l = 0; l < d.num_layers; ++l) {
      const int64_t layer = l * d.block_layer_elems();
      for (int64_t e = 0; e < k_row; ++e) {
        out.push_back(LoadAsFloat(block.data(), d.kv_dtype, layer + slot * k_row + e));
      }
      for (int64_t e = 0; e < v_row; ++e) {
        out.push_back(
            LoadAsFloat(block.data(), d.kv_dtype, layer + tpb * k_row + slot * v_row + e));
      }
    }
  }
  return out;
}

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

// A batch of requests of every shape a node sees, in a seeded random order: cold (nothing cached),
// partly cached on and off block boundaries, fully cached (no suffix), empty history, no
// candidates, neither suffix nor candidates, own microbatch sizes, embeddings as rows or gathered
// by location. Each is run alone (Forward, then AppendKv into one copy of its cached blocks) and
// all together (ForwardBatch, then AppendKv(ws, i, ...) into another copy): the batch's scores and
// each request's appended K/V must agree within `tolerance` (relative to the largest magnitude).
inline void ExpectBatchMatchesOneByOne(const Model& model, uint64_t seed, double tolerance) {
  std::mt19937_64 rng(seed);
  const ModelDims& d = model.dims();
  const int64_t tpb = d.tokens_per_block;
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  struct Case {
    int64_t length, cached, candidates;
    int32_t microbatch;
    bool by_location;
  };
  std::vector<Case> cases;
  int64_t L = uniform(1, 6 * tpb);
  cases.push_back({L, 0, uniform(1, 9), 0, false});  // cold
  L = uniform(2 * tpb + 2, 8 * tpb);
  cases.push_back({L, uniform(1, L / tpb - 1) * tpb + uniform(1, tpb - 1), uniform(1, 9), 2,
                   true});  // partly cached, off a block boundary
  L = uniform(tpb, 6 * tpb);
  cases.push_back({L, L / tpb * tpb, uniform(1, 9), 0, false});  // on a boundary
  L = uniform(1, 6 * tpb);
  cases.push_back({L, L, uniform(1, 9), 0, true});  // fully cached: no suffix
  cases.push_back({0, 0, uniform(1, 6), 3, true});  // empty history
  L = uniform(1, 6 * tpb);
  cases.push_back({L, uniform(0, L - 1), 0, 0, false});  // no candidates
  L = uniform(1, 4 * tpb);
  cases.push_back({L, L, 0, 0, false});  // nothing to compute
  std::shuffle(cases.begin(), cases.end(), rng);

  auto ws = model.NewWorkspace().value();
  KernelContext& ctx = ws->context();
  const int64_t num_blocks = 8 + 1;
  std::vector<RandomRequest> users;
  std::vector<std::unique_ptr<BlockArena>> alone_arenas, batch_arenas;
  std::vector<std::unique_ptr<BackendRequest>> requests;
  std::vector<ForwardRequest> batch;
  for (const Case& c : cases) {
    users.push_back(MakeRequest(d, c.length, c.candidates, rng));
    // Two copies of the user's cached prefix, each built the way a node does (a cold forward of
    // the prefix, its K/V appended).
    for (auto* arenas : {&alone_arenas, &batch_arenas}) {
      arenas->push_back(std::make_unique<BlockArena>(model, num_blocks));
      RunForward(model, *ws, users.back(), c.cached, 0, arenas->back().get(), true);
    }
    requests.push_back(std::make_unique<BackendRequest>(model, ctx, users.back(), c.length,
                                                        c.cached, alone_arenas.back().get(),
                                                        c.by_location, c.microbatch));
    batch.push_back(requests.back()->request());
  }
  // The batch reads the blocks of its own copies.
  std::vector<std::vector<const void*>> batch_tables;
  for (size_t i = 0; i < cases.size(); ++i) {
    batch_tables.push_back(batch_arenas[i]->const_table());
    batch[i].cached_blocks = batch_tables.back();
  }

  std::vector<std::vector<float>> alone(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    absl::StatusOr<ForwardResult> r = model.Forward(*ws, requests[i]->request());
    ASSERT_TRUE(r.ok()) << r.status();
    alone[i] = r->scores;
    alone_arenas[i]->Reserve(c.length);
    ASSERT_TRUE(model.AppendKv(*ws, alone_arenas[i]->table(), c.cached, c.length - c.cached).ok());
  }

  absl::StatusOr<std::vector<ForwardResult>> together = model.ForwardBatch(*ws, batch);
  ASSERT_TRUE(together.ok()) << together.status();
  ASSERT_EQ(together->size(), cases.size());
  EXPECT_EQ(ws->new_kv_requests(), static_cast<int64_t>(cases.size()));
  // Scores are compared relative to the batch's largest: a request with one candidate whose score
  // is near zero (a dot product that cancels) would make a per-request measure element-wise.
  std::vector<float> all_alone, all_together;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(::testing::Message() << "request " << i << ": length " << c.length << " cached "
                                      << c.cached << " candidates " << c.candidates);
    const ForwardResult& r = (*together)[i];
    EXPECT_EQ(r.cached_tokens, c.cached);
    EXPECT_EQ(r.suffix_tokens, c.length - c.cached);
    ASSERT_EQ(r.scores.size(), static_cast<size_t>(c.candidates));
    all_alone.insert(all_alone.end(), alone[i].begin(), alone[i].end());
    all_together.insert(all_together.end(), r.scores.begin(), r.scores.end());
    EXPECT_EQ(ws->new_kv_of(static_cast<int64_t>(i)).first_token, c.cached);
    EXPECT_EQ(ws->new_kv_of(static_cast<int64_t>(i)).tokens, c.length - c.cached);
  }
  EXPECT_LE(MaxRelativeError(all_together, all_alone), tolerance);
  // Appended in reverse order: each request's K/V stay addressable whatever was appended before.
  for (int64_t i = static_cast<int64_t>(cases.size()) - 1; i >= 0; --i) {
    const Case& c = cases[i];
    batch_arenas[i]->Reserve(c.length);
    const absl::Status s =
        model.AppendKv(*ws, i, batch_arenas[i]->table(), c.cached, c.length - c.cached);
    ASSERT_TRUE(s.ok()) << s;
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "request " << i << " K/V");
    const std::vector<float> want = ReadKv(model, ctx, *alone_arenas[i], cases[i].length);
    const std::vector<float> got = ReadKv(model, ctx, *batch_arenas[i], cases[i].length);
    EXPECT_LE(MaxRelativeError(got, want), tolerance);
  }
}

}  // namespace helm::model::testing
