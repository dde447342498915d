#include "helm/model/model.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "helm/common/status.h"

namespace helm::model {

// The model's tensors in backend memory (host pointers into Weights on the CPU paths, one
// device copy on CUDA).
struct Model::DeviceWeights {
  struct Layer {
    const float* norm_in_w;
    const float* norm_in_b;
    const float* uvqk_w;
    const float* uvqk_b;
    const float* pos_bias;
    const float* time_bias;
    const float* norm_attn_w;
    const float* norm_attn_b;
    const float* out_w;
    const float* out_b;
  };
  const float* item_proj_w = nullptr;
  const float* item_proj_b = nullptr;
  const float* action_emb = nullptr;
  std::vector<Layer> layers;
  const float* final_norm_w = nullptr;
  const float* final_norm_b = nullptr;
  const float* head_w = nullptr;
  const float* head_b = nullptr;
  void* device_block = nullptr;  // owned device copy (CUDA)
  const Kernels* kernels = nullptr;
  ~DeviceWeights() {
    if (device_block != nullptr) kernels->Free(device_block);
  }
};

namespace {

// One growable buffer of backend memory.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (ptr_ != nullptr) kernels_->Free(ptr_);
  }
  // Backend memory of at least `bytes`, contents undefined after growth. Growth waits for the
  // work queued on `ctx` first: a kernel queued earlier may still use the old memory.
  absl::StatusOr<void*> Get(const Kernels& kernels, KernelContext& ctx, size_t bytes) {
    if (bytes > bytes_ || ptr_ == nullptr) {
      // Grow by at least half, so a slowly growing request size reallocates rarely.
      const size_t grown = std::max(bytes, bytes_ + bytes_ / 2);
      if (ptr_ != nullptr) {
        HELM_RETURN_IF_ERROR(kernels.Synchronize(ctx));
        kernels.Free(ptr_);
      }
      ptr_ = nullptr;
      bytes_ = 0;
      HELM_ASSIGN_OR_RETURN(ptr_, kernels.Allocate(std::max<size_t>(grown, 256)));
      bytes_ = std::max<size_t>(grown, 256);
      kernels_ = &kernels;
    }
    return ptr_;
  }
  template <typename T>
  absl::StatusOr<T*> GetAs(const Kernels& kernels, KernelContext& ctx, int64_t count) {
    HELM_ASSIGN_OR_RETURN(void* p, Get(kernels, ctx, sizeof(T) * static_cast<size_t>(count)));
    return static_cast<T*>(p);
  }
  void* data() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  const Kernels* kernels_ = nullptr;
};

class WorkspaceImpl : public Workspace {
 public:
  WorkspaceImpl(const Kernels& kernels, std::unique_ptr<KernelContext> ctx)
      : kernels_(kernels), ctx_(std::move(ctx)) {}
  const float* new_kv() const override { return static_cast<const float*>(kv.data()); }
  int64_t new_kv_tokens() const override { return kv_tokens; }
  int64_t new_kv_first_token() const override { return kv_first; }
  KernelContext& context() override { return *ctx_; }

  const Kernels& kernels_;
  std::unique_ptr<KernelContext> ctx_;
  Buffer timestamps, actions, block_table, locations, emb_hist, emb_cand, x, norm, uvqk, attn, gate,
      kv, x0_cand, head, scores, dst_table;
  int64_t kv_tokens = 0;
  int64_t kv_first = 0;
};

// Host data in backend memory: the host pointer itself on the CPU paths, else a copy.
template <typename T>
absl::StatusOr<const T*> ToBackend(const Kernels& k, KernelContext& ctx, Buffer& buf, const T* host,
                                   int64_t count) {
  if (!k.on_device() || count == 0) return host;
  HELM_ASSIGN_OR_RETURN(T * dst, buf.GetAs<T>(k, ctx, count));
  HELM_RETURN_IF_ERROR(k.CopyToBackend(ctx, dst, host, sizeof(T) * count));
  return dst;
}

// Checks dims however they were built (options or by hand), naming the option of each field.
absl::Status ValidateDims(const ModelDims& d) {
  const std::pair<const char*, int32_t> positive[] = {
      {"model.num_layers", d.num_layers},
      {"model.num_heads", d.num_heads},
      {"model.d_qk", d.d_qk},
      {"model.d_v", d.d_v},
      {"model.d_model", d.d_model},
      {"emb.dim", d.emb_dim},
      {"model.num_actions", d.num_actions},
      {"model.position_buckets", d.position_buckets},
      {"model.time_buckets", d.time_buckets},
      {"kv.tokens_per_block", d.tokens_per_block}};
  for (const auto& [key, value] : positive) {
    if (value <= 0)
      return absl::InvalidArgumentError(absl::StrCat(key, ": must be >= 1, got ", value));
  }
  if (d.position_buckets > 256 || d.time_buckets > 256) {
    return absl::InvalidArgumentError("model.position_buckets/time_buckets: must be <= 256");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelDims> DimsFromOptions(const ModelOptions& model, const emb::EmbOptions& emb,
                                          const kv::KvOptions& kv) {
  HELM_RETURN_IF_ERROR(model.Validate());
  ModelDims d;
  d.num_layers = model.num_layers;
  d.num_heads = model.num_heads;
  d.d_qk = model.d_qk;
  d.d_v = model.d_v;
  d.d_model = model.d_model;
  d.emb_dim = emb.dim;
  d.num_actions = model.num_actions;
  d.position_buckets = model.position_buckets;
  d.time_buckets = model.time_buckets;
  d.tokens_per_block = kv.tokens_per_block;
  auto emb_dtype = ParseDtype(emb.dtype);
  if (!emb_dtype.ok())
    return absl::InvalidArgumentError(absl::StrCat("emb.", emb_dtype.status().message()));
  auto kv_dtype = ParseDtype(kv.dtype);
  if (!kv_dtype.ok())
    return absl::InvalidArgumentError(absl::StrCat("kv.", kv_dtype.status().message()));
  d.emb_dtype = *emb_dtype;
  d.kv_dtype = *kv_dtype;
  HELM_RETURN_IF_ERROR(ValidateDims(d));
  return d;
}

Model::~Model() = default;

absl::StatusOr<std::unique_ptr<Model>> Model::Create(const ModelOptions& options,
                                                     const emb::EmbOptions& emb,
                                                     const kv::KvOptions& kv) {
  HELM_ASSIGN_OR_RETURN(const ModelDims dims, DimsFromOptions(options, emb, kv));
  std::shared_ptr<const Weights> weights;
  if (options.weights_path.empty()) {
    weights = Weights::Random(dims, options.seed);
  } else {
    HELM_ASSIGN_OR_RETURN(weights, Weights::Load(options.weights_path, dims));
  }
  HELM_ASSIGN_OR_RETURN(auto kernels, CreateKernels(options.kernels, options.cpu_threads));
  return Create(std::move(weights), std::move(kernels), options.candidate_microbatch);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Create(std::shared_ptr<const Weights> weights,
                                                     std::shared_ptr<const Kernels> kernels,
                                                     int32_t candidate_microbatch) {
  if (weights == nullptr || kernels == nullptr) {
    return absl::InvalidArgumentError("model: weights and kernels must be set");
  }
  if (candidate_microbatch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.candidate_microbatch: must be >= 1, got ", candidate_microbatch));
  }
  HELM_RETURN_IF_ERROR(ValidateDims(weights->dims()));
  std::unique_ptr<Model> m(new Model());
  m->dims_ = weights->dims();
  m->weights_ = std::move(weights);
  m->kernels_ = std::move(kernels);
  m->candidate_microbatch_ = candidate_microbatch;
  auto dw = std::make_unique<DeviceWeights>();
  dw->kernels = m->kernels_.get();
  const Weights& w = *m->weights_;
  // Where each tensor lives in backend memory.
  absl::flat_hash_map<std::string, const float*> where;
  if (m->kernels_->on_device()) {
    int64_t total = 0;
    for (const auto& s : w.specs()) total += (s.elements() + 63) / 64 * 64;
    HELM_ASSIGN_OR_RETURN(dw->device_block, m->kernels_->Allocate(sizeof(float) * total));
    HELM_ASSIGN_OR_RETURN(auto ctx, m->kernels_->CreateContext());
    int64_t offset = 0;
    for (const auto& s : w.specs()) {
      float* dst = static_cast<float*>(dw->device_block) + offset;
      HELM_RETURN_IF_ERROR(
          m->kernels_->CopyToBackend(*ctx, dst, w.Get(s.name), sizeof(float) * s.elements()));
      where[s.name] = dst;
      offset += (s.elements() + 63) / 64 * 64;
    }
    HELM_RETURN_IF_ERROR(m->kernels_->Synchronize(*ctx));
  } else {
    for (const auto& s : w.specs()) where[s.name] = w.Get(s.name);
  }
  auto get = [&](const std::string& name) {
    const auto it = where.find(name);
    return it == where.end() ? nullptr : it->second;
  };
  dw->item_proj_w = get("item_proj.weight");
  dw->item_proj_b = get("item_proj.bias");
  dw->action_emb = get("action_emb");
  for (int32_t l = 0; l < m->dims_.num_layers; ++l) {
    const std::string p = absl::StrCat("layers.", l, ".");
    dw->layers.push_back({get(p + "norm_in.weight"), get(p + "norm_in.bias"),
                          get(p + "uvqk.weight"), get(p + "uvqk.bias"), get(p + "pos_bias"),
                          get(p + "time_bias"), get(p + "norm_attn.weight"),
                          get(p + "norm_attn.bias"), get(p + "out.weight"), get(p + "out.bias")});
  }
  dw->final_norm_w = get("final_norm.weight");
  dw->final_norm_b = get("final_norm.bias");
  dw->head_w = get("head.weight");
  dw->head_b = get("head.bias");
  m->device_ = std::move(dw);
  return m;
}

absl::StatusOr<std::unique_ptr<Workspace>> Model::NewWorkspace() const {
  HELM_ASSIGN_OR_RETURN(auto ctx, kernels_->CreateContext());
  return std::make_unique<WorkspaceImpl>(*kernels_, std::move(ctx));
}

absl::Status Model::GatherEmbeddings(Workspace& base_ws, const EmbeddingInput& input, int64_t n,
                                     float* out) const {
  auto& ws = static_cast<WorkspaceImpl&>(base_ws);
  if (n == 0) return absl::OkStatus();
  if (input.locations == nullptr) {
    return absl::InvalidArgumentError("embeddings: neither rows nor locations given");
  }
  KernelContext& ctx = ws.context();
  HELM_ASSIGN_OR_RETURN(const int64_t* locs,
                        ToBackend(*kernels_, ctx, ws.locations, input.locations, n));
  GatherArgs g;
  g.arena_base = input.arena_base;
  g.staging_base = input.staging_base;
  g.locations = locs;
  g.n = n;
  g.dim = dims_.emb_dim;
  g.dtype = dims_.emb_dtype;
  g.out = out;
  const int64_t element_bytes = DtypeSize(dims_.emb_dtype);
  for (int64_t i = 0; i < n; ++i) {
    if (input.locations[i] >= 0 && input.locations[i] % element_bytes != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("embeddings: location ", i, " = ", input.locations[i],
                       " is not a multiple of the ", element_bytes, "-byte element size"));
    }
    if (input.locations[i] >= 0 ? input.arena_base == nullptr : input.staging_base == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("embeddings: location ", i, " = ", input.locations[i], " needs the ",
                       input.locations[i] >= 0 ? "arena" : "staging", " base pointer"));
    }
  }
  return kernels_->GatherEmbeddings(ctx, g);
}

absl::StatusOr<ForwardResult> Model::Forward(Workspace& base_ws, const ForwardRequest& req) const {
  auto& ws = static_cast<WorkspaceImpl&>(base_ws);
  const Kernels& k = *kernels_;
  KernelContext& ctx = ws.context();
  const ModelDims& d = dims_;
  const DeviceWeights& w = *device_;

  // ---- Validate the request (every field derived from a request is checked, never asserted).
  const int64_t L = static_cast<int64_t>(req.actions.size());
  if (static_cast<int64_t>(req.timestamps.size()) != L) {
    return absl::InvalidArgumentError(
        absl::StrCat("request: ", L, " actions but ", req.timestamps.size(), " timestamps"));
  }
  const int64_t P = req.cached_tokens;
  if (P < 0 || P > L) {
    return absl::InvalidArgumentError(
        absl::StrCat("request: cached_tokens must be in [0, ", L, "], got ", P));
  }
  const int64_t tpb = d.tokens_per_block;
  const int64_t cached_blocks = (P + tpb - 1) / tpb;
  if (static_cast<int64_t>(req.cached_blocks.size()) < cached_blocks) {
    return absl::InvalidArgumentError(absl::StrCat("request: ", P, " cached tokens need ",
                                                   cached_blocks, " blocks, got ",
                                                   req.cached_blocks.size()));
  }
  for (int64_t b = 0; b < cached_blocks; ++b) {
    if (req.cached_blocks[b] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("request: cached block ", b, " is null"));
    }
  }
  for (int64_t i = P; i < L; ++i) {
    if (req.actions[i] < 0 || req.actions[i] >= d.num_actions) {
      return absl::InvalidArgumentError(absl::StrCat("request: action ", i, " = ", req.actions[i],
                                                     " outside [0, ", d.num_actions, ")"));
    }
  }
  const int64_t C = req.num_candidates;
  if (C < 0) return absl::InvalidArgumentError("request: num_candidates must be >= 0");
  const int64_t S = L - P;
  if (S > 0 && req.suffix.rows == nullptr && req.suffix.locations == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("request: ", S, " uncached history tokens but no suffix embeddings"));
  }
  if (C > 0 && req.candidates.rows == nullptr && req.candidates.locations == nullptr) {
    return absl::InvalidArgumentError("request: candidates given but no candidate embeddings");
  }
  const int32_t mb_size =
      req.candidate_microbatch > 0 ? req.candidate_microbatch : candidate_microbatch_;

  const int64_t D = d.d_model;
  const int64_t E = d.emb_dim;
  const int64_t W = d.uvqk_width();
  const int64_t HV = d.attn_width();
  const int64_t H = d.num_heads;
  const float alpha = 1.0f / std::sqrt(static_cast<float>(d.d_qk));

  // ---- Inputs in backend memory.
  HELM_ASSIGN_OR_RETURN(const int64_t* ts,
                        ToBackend(k, ctx, ws.timestamps, req.timestamps.data(), L));
  HELM_ASSIGN_OR_RETURN(const void* const* blocks,
                        ToBackend(k, ctx, ws.block_table, req.cached_blocks.data(), cached_blocks));

  AttentionArgs base;
  base.num_heads = d.num_heads;
  base.d_qk = d.d_qk;
  base.d_v = d.d_v;
  base.alpha = alpha;
  base.blocks = blocks;
  base.cached_tokens = P;
  base.num_layers = d.num_layers;
  base.tokens_per_block = d.tokens_per_block;
  base.kv_dtype = d.kv_dtype;
  base.suffix_tokens = S;
  base.timestamps = ts;
  base.position_buckets = d.position_buckets;
  base.time_buckets = d.time_buckets;

  // Projects `n` embedding rows to the model width: out = rows . item_proj + b, or a copy.
  auto embed = [&](const EmbeddingInput& in, Buffer& gathered, int64_t n,
                   float* out) -> absl::Status {
    const float* rows = in.rows;
    if (rows == nullptr) {
      HELM_ASSIGN_OR_RETURN(float* g, gathered.GetAs<float>(k, ctx, n * E));
      HELM_RETURN_IF_ERROR(GatherEmbeddings(ws, in, n, g));
      rows = g;
    }
    if (d.projects_embeddings()) {
      return k.Gemm(ctx, n, D, E, rows, E, w.item_proj_w, w.item_proj_b, out, D, false);
    }
    return k.CopyWithin(ctx, out, rows, sizeof(float) * n * D);
  };

  // ---- Layer-major over one set of rows: [0, S) the history suffix, [S, S + C) the candidates.
  // Their dense layers run as single GEMMs over all rows; only attention tells them apart
  // (causal history queries; M-FALCON candidate microbatches that see the history and
  // themselves). The suffix's K/V of every layer stay in ws.kv for AppendKv.
  const int64_t N = S + C;
  const int64_t kv_layer = S * H * (d.d_qk + d.d_v);
  HELM_ASSIGN_OR_RETURN(float* kv,
                        ws.kv.GetAs<float>(k, ctx, std::max<int64_t>(1, d.num_layers * kv_layer)));
  ws.kv_tokens = S;
  ws.kv_first = P;
  ForwardResult result;
  result.cached_tokens = P;
  result.suffix_tokens = S;
  result.scores.assign(C, 0.0f);
  if (N == 0) {
    HELM_RETURN_IF_ERROR(k.Synchronize(ctx));
    return result;
  }
  HELM_ASSIGN_OR_RETURN(float* x, ws.x.GetAs<float>(k, ctx, N * D));
  HELM_ASSIGN_OR_RETURN(float* norm, ws.norm.GetAs<float>(k, ctx, N * D));
  HELM_ASSIGN_OR_RETURN(float* uvqk, ws.uvqk.GetAs<float>(k, ctx, N * W));
  HELM_ASSIGN_OR_RETURN(float* attn, ws.attn.GetAs<float>(k, ctx, N * HV));
  HELM_ASSIGN_OR_RETURN(float* gate, ws.gate.GetAs<float>(k, ctx, N * HV));
  if (S > 0) {
    HELM_RETURN_IF_ERROR(embed(req.suffix, ws.emb_hist, S, x));
    HELM_ASSIGN_OR_RETURN(const int32_t* acts,
                          ToBackend(k, ctx, ws.actions, req.actions.data() + P, S));
    HELM_RETURN_IF_ERROR(k.AddRows(ctx, x, S, D, w.action_emb, acts));
  }
  float* x0 = nullptr;  // the candidates' layer-0 input, kept for the scoring head
  if (C > 0) {
    HELM_RETURN_IF_ERROR(embed(req.candidates, ws.emb_cand, C, x + S * D));
    HELM_ASSIGN_OR_RETURN(x0, ws.x0_cand.GetAs<float>(k, ctx, C * D));
    HELM_RETURN_IF_ERROR(k.CopyWithin(ctx, x0, x + S * D, sizeof(float) * C * D));
  }
  for (int32_t l = 0; l < d.num_layers; ++l) {
    const DeviceWeights::Layer& lw = w.layers[l];
    const bool last = l == d.num_layers - 1;
    HELM_RETURN_IF_ERROR(k.LayerNorm(ctx, x, norm, N, D, lw.norm_in_w, lw.norm_in_b));
    HELM_RETURN_IF_ERROR(k.Gemm(ctx, N, W, D, norm, D, lw.uvqk_w, nullptr, uvqk, W, false));
    HELM_RETURN_IF_ERROR(k.BiasSilu(ctx, uvqk, N, W, lw.uvqk_b));
    float* k_l = kv + l * kv_layer;
    float* v_l = k_l + S * H * d.d_qk;
    AttentionArgs a = base;
    a.layer = l;
    a.q_stride = W;
    a.k_suffix = S > 0 ? k_l : nullptr;
    a.v_suffix = S > 0 ? v_l : nullptr;
    a.pos_bias = lw.pos_bias;
    a.time_bias = lw.time_bias;
    if (S > 0) {
      HELM_RETURN_IF_ERROR(k.CopyColumns(ctx, uvqk, W, d.k_offset(), S, H * d.d_qk, k_l));
      HELM_RETURN_IF_ERROR(k.CopyColumns(ctx, uvqk, W, d.v_offset(), S, HV, v_l));
      // The last layer's history outputs feed nothing: history tokens need only its K/V.
      if (!last) {
        AttentionArgs h = a;
        h.num_queries = S;
        h.q = uvqk + d.q_offset();
        h.candidates = false;
        h.out = attn;
        HELM_RETURN_IF_ERROR(k.Attention(ctx, h));
        a.same_kv_as_last_call = true;
      }
    }
    for (int64_t c0 = 0; c0 < C; c0 += mb_size) {
      const float* rows = uvqk + (S + c0) * W;
      AttentionArgs c = a;
      c.num_queries = std::min<int64_t>(mb_size, C - c0);
      c.q = rows + d.q_offset();
      c.candidates = true;
      c.k_self = rows + d.k_offset();
      c.v_self = rows + d.v_offset();
      c.self_stride = W;
      c.out = attn + (S + c0) * HV;
      HELM_RETURN_IF_ERROR(k.Attention(ctx, c));
      a.same_kv_as_last_call = true;  // every call of this layer reads the same K/V
    }
    const int64_t first = last ? S : 0;  // rows whose output this layer still needs
    const int64_t count = N - first;
    if (count == 0) continue;
    HELM_RETURN_IF_ERROR(k.LayerNormGate(ctx, attn + first * HV, uvqk + first * W + d.u_offset(), W,
                                         gate + first * HV, count, HV, lw.norm_attn_w,
                                         lw.norm_attn_b));
    HELM_RETURN_IF_ERROR(k.Gemm(ctx, count, D, HV, gate + first * HV, HV, lw.out_w, lw.out_b,
                                x + first * D, D, true));
  }

  // ---- Scoring head: < final_norm(y_c), head(x0_c) >.
  if (C > 0) {
    float* y = norm + S * D;
    HELM_ASSIGN_OR_RETURN(float* head, ws.head.GetAs<float>(k, ctx, C * D));
    HELM_ASSIGN_OR_RETURN(float* scores, ws.scores.GetAs<float>(k, ctx, C));
    HELM_RETURN_IF_ERROR(k.LayerNorm(ctx, x + S * D, y, C, D, w.final_norm_w, w.final_norm_b));
    HELM_RETURN_IF_ERROR(k.Gemm(ctx, C, D, D, x0, D, w.head_w, w.head_b, head, D, false));
    HELM_RETURN_IF_ERROR(k.RowDot(ctx, y, head, C, D, scores));
    HELM_RETURN_IF_ERROR(k.CopyToHost(ctx, result.scores.data(), scores, sizeof(float) * C));
  }
  HELM_RETURN_IF_ERROR(k.Synchronize(ctx));
  return result;
}

absl::Status Model::AppendKv(Workspace& base_ws, absl::Span<void* const> blocks,
                             int64_t first_token, int64_t num_tokens) const {
  auto& ws = static_cast<WorkspaceImpl&>(base_ws);
  if (first_token != ws.kv_first) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv append: first_token must be the last forward's cached_tokens (",
                     ws.kv_first, "), got ", first_token));
  }
  if (num_tokens < 0 || num_tokens > ws.kv_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv append: num_tokens must be in [0, ", ws.kv_tokens, "], got ", num_tokens));
  }
  if (num_tokens == 0) return absl::OkStatus();
  const int64_t tpb = dims_.tokens_per_block;
  const int64_t last_block = (first_token + num_tokens - 1) / tpb;
  if (static_cast<int64_t>(blocks.size()) <= last_block) {
    return absl::InvalidArgumentError(absl::StrCat("kv append: tokens up to ",
                                                   first_token + num_tokens, " need ",
                                                   last_block + 1, " blocks, got ", blocks.size()));
  }
  for (int64_t b = first_token / tpb; b <= last_block; ++b) {
    if (blocks[b] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("kv append: block ", b, " is null"));
    }
  }
  KernelContext& ctx = ws.context();
  HELM_ASSIGN_OR_RETURN(void* const* table,
                        ToBackend(*kernels_, ctx, ws.dst_table, blocks.data(), last_block + 1));
  AppendArgs a;
  a.src = ws.new_kv();
  a.src_tokens = ws.kv_tokens;
  a.src_first = 0;
  a.n = num_tokens;
  a.blocks = table;
  a.dst_first_token = first_token;
  a.num_layers = dims_.num_layers;
  a.num_heads = dims_.num_heads;
  a.d_qk = dims_.d_qk;
  a.d_v = dims_.d_v;
  a.tokens_per_block = dims_.tokens_per_block;
  a.kv_dtype = dims_.kv_dtype;
  HELM_RETURN_IF_ERROR(kernels_->AppendKv(ctx, a));
  return kernels_->Synchronize(ctx);
}

absl::Status Model::RelocateBlocks(Workspace& ws, void* arena,
                                   absl::Span<const int64_t> src_offsets,
                                   absl::Span<const int64_t> dst_offsets) const {
  if (src_offsets.size() != dst_offsets.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "relocate: ", src_offsets.size(), " sources but ", dst_offsets.size(), " destinations"));
  }
  HELM_RETURN_IF_ERROR(
      kernels_->RelocateBlocks(ws.context(), arena, src_offsets.data(), dst_offsets.data(),
                               static_cast<int64_t>(src_offsets.size()), dims_.block_bytes()));
  return kernels_->Synchronize(ws.context());
}

int64_t Model::DenseMacs(int64_t suffix_tokens, int64_t candidates) const {
  const ModelDims& d = dims_;
  const int64_t proj = d.projects_embeddings() ? int64_t{d.emb_dim} * d.d_model : 0;
  const int64_t per_layer = int64_t{d.d_model} * d.uvqk_width() + d.attn_width() * d.d_model;
  // The last layer computes only U|V|Q|K for history tokens (their outputs feed nothing).
  const int64_t hist =
      suffix_tokens * (proj + per_layer * d.num_layers - d.attn_width() * d.d_model);
  const int64_t cand =
      candidates * (proj + per_layer * d.num_layers + int64_t{d.d_model} * d.d_model);
  return (suffix_tokens > 0 ? hist : 0) + cand;
}

std::vector<int32_t> TopK(absl::Span<const float> scores, int64_t k) {
  const int64_t n = static_cast<int64_t>(scores.size());
  k = std::clamp<int64_t>(k, 0, n);
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  // NaN ranks below every number, so the order stays a strict weak ordering.
  auto better = [&](int32_t a, int32_t b) {
    const bool nan_a = std::isnan(scores[a]);
    const bool nan_b = std::isnan(scores[b]);
    if (nan_a != nan_b) return nan_b;
    if (!nan_a && scores[a] != scores[b]) return scores[a] > scores[b];
    return a < b;
  };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), better);
  order.resize(k);
  return order;
}

}  // namespace helm::model
