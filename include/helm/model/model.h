// The HSTU inference runtime (DESIGN.md §6): a forward that reuses a user's cached K/V prefix,
// prefills only the uncached history suffix, and scores candidates M-FALCON style.
//
// Model. Per layer, for x of width D:
//   X̂ = LayerNorm(x);  U, V, Q, K = split(SiLU(X̂·W_uvqk + b));
//   per head A = SiLU(α·Q·Kᵀ + rab) / N ⊙ mask (no softmax), O = A·V;
//   y = x + (LayerNorm(O) ⊙ U)·W_o + b_o.
//  - α = 1/sqrt(d_qk). N = the number of keys the query sees (history token at position p: p + 1;
//    candidate: L + 1), so it depends on the query's position only and a cached prefix and a full
//    recompute agree.
//  - rab = pos_bias[h][bucket(p_q - p_k)] + time_bias[h][bucket(t_q - t_k)], buckets by
//    floor(log2(distance)) + 1 (0 for distance 0), clamped to the last bucket (types.h).
//  - Inputs: history token i = item embedding (projected to D when emb.dim != D) + action_emb[a_i];
//    candidate = projected item embedding (no action). Candidates sit at position L with the
//    timestamp of the last history event (0 for an empty history).
//  - Mask: causal over the history; a candidate sees every history token and itself, never other
//    candidates (M-FALCON), so candidate attention runs in microbatches whose size does not change
//    the scores. The forward is layer-major: each layer's dense math runs as one GEMM over the
//    suffix and candidate rows together; attention then tells them apart.
//  - Batches: ForwardBatch runs several users' requests as one forward. The dense math runs once
//    over the rows of all of them (every suffix, then every candidate); attention runs per
//    request over that request's own K/V, so nothing crosses requests.
//  - Scoring head: score_c = < final_norm(y_c), head.weight · x0_c + head.bias >, with y_c the
//    candidate's final state and x0_c its projected item embedding (its layer-0 input).
//  - History tokens need no output from the last layer (only their K/V), so it is skipped.
//
// Caches are glued in by the caller through raw pointers (no dependency on the cache code):
// embeddings are read by int64 locations (GatherArgs in kernels.h), K/V through block pointers in
// the KV block layout (types.h). Memory spaces are the kernel path's (host for reference/cpu,
// device for cuda) unless a comment says "host".
//
// Thread-safety: a Model is immutable and shared by all workers; each concurrent forward uses
// its own Workspace (per-call scratch and the kernel context: a CUDA stream, a cuBLAS handle).
// There is no global mutable state.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "helm/emb/options.h"
#include "helm/kv/options.h"
#include "helm/model/kernels.h"
#include "helm/model/options.h"
#include "helm/model/types.h"
#include "helm/model/weights.h"

namespace helm::model {

// The dims a set of options describes. InvalidArgument naming the key for a bad value.
absl::StatusOr<ModelDims> DimsFromOptions(const ModelOptions& model, const emb::EmbOptions& emb,
                                          const kv::KvOptions& kv);

// Where the item embeddings of some tokens come from: either rows already gathered (fp32), or
// locations the forward gathers from (loc >= 0: byte offset into the arena; loc < 0: row
// -(loc + 1) of the staging buffer; rows of emb_dim values of emb_dtype).
struct EmbeddingInput {
  const float* rows = nullptr;         // [n, emb_dim] fp32, backend memory; or nullptr and:
  const void* arena_base = nullptr;    // pool arena, backend memory
  const void* staging_base = nullptr;  // [staging rows, emb_dim] of emb_dtype, backend memory
  const int64_t* locations = nullptr;  // [n] host
};

struct ForwardRequest {
  // The whole history, oldest first: L events.
  absl::Span<const int32_t> actions;     // [L] host, each in [0, num_actions)
  absl::Span<const int64_t> timestamps;  // [L] host, seconds
  // The user's cached prefix: tokens [0, cached_tokens) in blocks (block b holds tokens
  // [b*tpb, (b+1)*tpb)); 0 <= cached_tokens <= L.
  int64_t cached_tokens = 0;
  absl::Span<const void* const> cached_blocks;  // host array of >= ceil(cached/tpb) block pointers
  EmbeddingInput suffix;      // L - cached_tokens rows (history tokens cached..L-1)
  EmbeddingInput candidates;  // num_candidates rows
  int64_t num_candidates = 0;
  // Candidates per microbatch (>= 0); 0: the model's candidate_microbatch option.
  int32_t candidate_microbatch = 0;
};

struct ForwardResult {
  std::vector<float> scores;  // [num_candidates], candidate order
  int64_t cached_tokens = 0;  // tokens read from the cache
  int64_t suffix_tokens = 0;  // tokens computed (their K/V wait in the workspace for AppendKv)
};

// Per-thread scratch of a forward, grown on demand and reused; owned by the caller.
class Workspace {
 public:
  // Where one request's suffix K/V sit in new_kv().
  struct NewKv {
    int64_t first_token = 0;  // the request's cached_tokens: the user position of its first token
    int64_t tokens = 0;       // its suffix tokens
    int64_t row = 0;          // the row of new_kv() that holds its first token
  };
  virtual ~Workspace() = default;
  // The K/V of the last forward's suffixes (ForwardBatch: every request's, in request order;
  // Forward: its one request's), fp32 in backend memory:
  // [num_layers][2: K then V][new_kv_tokens()][num_heads][d] (d = d_qk for K, d_v for V). For a
  // single request this is [num_layers][2][suffix_tokens][num_heads][d].
  virtual const float* new_kv() const = 0;
  // Rows of new_kv(): the suffix tokens of all requests of the last forward.
  virtual int64_t new_kv_tokens() const = 0;
  // Requests of the last forward (0 before the first one or after a failed one).
  virtual int64_t new_kv_requests() const = 0;
  // Request `request`'s part of new_kv(). REQUIRES: 0 <= request < new_kv_requests().
  virtual NewKv new_kv_of(int64_t request) const = 0;
  // Request 0's cached_tokens (the position of its first token in new_kv()); 0 when the last
  // forward had no request.
  virtual int64_t new_kv_first_token() const = 0;
  virtual KernelContext& context() = 0;
};

class Model {
 public:
  // Builds the model the options describe: weights from model.weights_path, or seeded random
  // weights when it is ""; kernels from model.kernels. Errors name the option or the tensor.
  static absl::StatusOr<std::unique_ptr<Model>> Create(const ModelOptions& model,
                                                       const emb::EmbOptions& emb,
                                                       const kv::KvOptions& kv);
  // Builds a model from explicit parts (tests, benchmarks). `candidate_microbatch` >= 1.
  static absl::StatusOr<std::unique_ptr<Model>> Create(std::shared_ptr<const Weights> weights,
                                                       std::shared_ptr<const Kernels> kernels,
                                                       int32_t candidate_microbatch);
  ~Model();

  // A fresh workspace for one worker thread.
  absl::StatusOr<std::unique_ptr<Workspace>> NewWorkspace() const;

  // Runs `requests` as one forward: every layer's dense math runs as one GEMM over the suffix and
  // candidate rows of all requests; attention runs per request over that request's own K/V.
  // result[i] is request i's, identical (up to fp rounding of the GEMM blocking) to Forward on it
  // alone. The suffix K/V of request i stay in `ws` until the next forward, for AppendKv(ws, i,
  // ...). InvalidArgument naming the request index and the field for a malformed request (then
  // nothing runs). Reads every cached prefix's K/V from its blocks, never writes them. On return
  // every device operation has completed. An empty batch returns no results.
  absl::StatusOr<std::vector<ForwardResult>> ForwardBatch(
      Workspace& ws, absl::Span<const ForwardRequest> requests) const;

  // ForwardBatch of the one request: scores its candidates; its suffix K/V wait in `ws` as
  // request 0's.
  absl::StatusOr<ForwardResult> Forward(Workspace& ws, const ForwardRequest& request) const;

  // Writes tokens of request `request`'s suffix K/V from the last ForwardBatch (or Forward:
  // request 0) into its blocks: the first `num_tokens` of them, at the user's token positions
  // [first_token, first_token + num_tokens), converting to kv.dtype.
  // `blocks`: host array indexed by block number from the user's token 0 (block b holds tokens
  // [b*tpb, (b+1)*tpb)); entries for blocks that receive tokens must be set (backend memory).
  // REQUIRES-as-error: 0 <= request < ws.new_kv_requests(), first_token ==
  // ws.new_kv_of(request).first_token, num_tokens <= ws.new_kv_of(request).tokens.
  absl::Status AppendKv(Workspace& ws, int64_t request, absl::Span<void* const> blocks,
                        int64_t first_token, int64_t num_tokens) const;
  // AppendKv of request 0 (the shorthand after Forward).
  absl::Status AppendKv(Workspace& ws, absl::Span<void* const> blocks, int64_t first_token,
                        int64_t num_tokens) const;

  // Gathers `n` embedding rows into `out` ([n, emb_dim] fp32, backend memory).
  absl::Status GatherEmbeddings(Workspace& ws, const EmbeddingInput& input, int64_t n,
                                float* out) const;

  // Moves KV blocks inside an arena (as a pool resize does): see Kernels::RelocateBlocks.
  absl::Status RelocateBlocks(Workspace& ws, void* arena, absl::Span<const int64_t> src_offsets,
                              absl::Span<const int64_t> dst_offsets) const;

  const ModelDims& dims() const { return dims_; }
  const Kernels& kernels() const { return *kernels_; }
  int32_t candidate_microbatch() const { return candidate_microbatch_; }

  // Multiply-adds of the dense layers (projections, U|V|Q|K, output, head) of a forward with
  // `suffix_tokens` computed history tokens and `candidates` candidates.
  int64_t DenseMacs(int64_t suffix_tokens, int64_t candidates) const;

 private:
  struct DeviceWeights;
  Model() = default;

  ModelDims dims_;
  std::shared_ptr<const Weights> weights_;
  std::shared_ptr<const Kernels> kernels_;
  std::unique_ptr<DeviceWeights> device_;
  int32_t candidate_microbatch_ = 64;
};

// Indices of the k highest scores, best first; ties go to the lower index. k is clamped to
// [0, scores.size()].
std::vector<int32_t> TopK(absl::Span<const float> scores, int64_t k);

}  // namespace helm::model
