#include "helm/model/model.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
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
  int64_t new_kv_requests() const override { return static_cast<int64_t>(kv_requests.size()); }
  NewKv new_kv_of(int64_t request) const override { return kv_requests[request]; }
  int64_t new_kv_first_token() const override {
    return kv_requests.empty() ? 0 : kv_requests[0].first_token;
  }
  KernelContext& context() override { return *ctx_; }

  const Kernels& kernels_;
  std::unique_ptr<KernelContext> ctx_;
  Buffer timestamps, actions, block_table, locations, emb, x, norm, uvqk, attn, gate, kv, x0_cand,
      head, scores, dst_table;
  // Host staging of the batch's small inputs (timestamps, embedding locations, block tables,
  // actions; on a device each kind is copied over once per forward) and of its scores.
  std::vector<int64_t> timestamps_host;
  std::vector<int64_t> locations_host;
  std::vector<const void*> blocks_host;
  std::vector<int32_t> actions_host;
  std::vector<float> scores_host;
  int64_t kv_tokens = 0;
  std::vector<NewKv> kv_requests;
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

namespace {

// Checks the locations of `n` embedding rows (an aligned arena offset with an arena, or a staging
// row with a staging buffer). `what` prefixes the message.
absl::Status CheckLocations(const EmbeddingInput& input, int64_t n, int64_t element_bytes,
                            absl::string_view what) {
  if (n == 0 || input.rows != nullptr) return absl::OkStatus();
  if (input.locations == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "embeddings: neither rows nor locations given"));
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t loc = input.locations[i];
    if (loc >= 0 && loc % element_bytes != 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, "embeddings: location ", i, " = ", loc,
                                                     " is not a multiple of the ", element_bytes,
                                                     "-byte element size"));
    }
    if (loc >= 0 ? input.arena_base == nullptr : input.staging_base == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(what, "embeddings: location ", i, " = ", loc,
                                                     " needs the ", loc >= 0 ? "arena" : "staging",
                                                     " base pointer"));
    }
  }
  return absl::OkStatus();
}

// Checks every field of request `index` derived from the caller (never asserted).
absl::Status ValidateRequest(const ModelDims& d, const ForwardRequest& req, int64_t index) {
  const std::string what = absl::StrCat("request ", index, ": ");
  const int64_t L = static_cast<int64_t>(req.actions.size());
  if (static_cast<int64_t>(req.timestamps.size()) != L) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, L, " actions but ", req.timestamps.size(), " timestamps"));
  }
  const int64_t P = req.cached_tokens;
  if (P < 0 || P > L) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "cached_tokens must be in [0, ", L, "], got ", P));
  }
  const int64_t tpb = d.tokens_per_block;
  const int64_t cached_blocks = (P + tpb - 1) / tpb;
  if (static_cast<int64_t>(req.cached_blocks.size()) < cached_blocks) {
    return absl::InvalidArgumentError(absl::StrCat(what, P, " cached tokens need ", cached_blocks,
                                                   " cached_blocks, got ",
                                                   req.cached_blocks.size()));
  }
  for (int64_t b = 0; b < cached_blocks; ++b) {
    if (req.cached_blocks[b] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(what, "cached block ", b, " is null"));
    }
  }
  for (int64_t i = P; i < L; ++i) {
    if (req.actions[i] < 0 || req.actions[i] >= d.num_actions) {
      return absl::InvalidArgumentError(absl::StrCat(what, "action ", i, " = ", req.actions[i],
                                                     " outside [0, ", d.num_actions, ")"));
    }
  }
  const int64_t C = req.num_candidates;
  if (C < 0) return absl::InvalidArgumentError(absl::StrCat(what, "num_candidates must be >= 0"));
  if (req.candidate_microbatch < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "candidate_microbatch must be >= 0, got ", req.candidate_microbatch));
  }
  const int64_t S = L - P;
  if (S > 0 && req.suffix.rows == nullptr && req.suffix.locations == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, S, " uncached history tokens but no suffix embeddings"));
  }
  if (C > 0 && req.candidates.rows == nullptr && req.candidates.locations == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "candidates given but no candidate embeddings"));
  }
  const int64_t element_bytes = DtypeBytes(d.emb_dtype);
  HELM_RETURN_IF_ERROR(CheckLocations(req.suffix, S, element_bytes, what + "suffix "));
  return CheckLocations(req.candidates, C, element_bytes, what + "candidate ");
}

}  // namespace

absl::Status Model::GatherEmbeddings(Workspace& base_ws, const EmbeddingInput& input, int64_t n,
                                     float* out) const {
  auto& ws = static_cast<WorkspaceImpl&>(base_ws);
  if (n == 0) return absl::OkStatus();
  EmbeddingInput by_location = input;
  by_location.rows = nullptr;  // this call always gathers
  HELM_RETURN_IF_ERROR(CheckLocations(by_location, n, DtypeBytes(dims_.emb_dtype), ""));
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
  return kernels_->GatherEmbeddings(ctx, g);
}

absl::StatusOr<ForwardResult> Model::Forward(Workspace& ws, const ForwardRequest& request) const {
  HELM_ASSIGN_OR_RETURN(std::vector<ForwardResult> results,
                        ForwardBatch(ws, absl::MakeConstSpan(&request, 1)));
  return std::move(results[0]);
}

absl::StatusOr<std::vector<ForwardResult>> Model::ForwardBatch(
    Workspace& base_ws, absl::Span<const ForwardRequest> requests) const {
  auto& ws = static_cast<WorkspaceImpl&>(base_ws);
  const Kernels& k = *kernels_;
  KernelContext& ctx = ws.context();
  const ModelDims& d = dims_;
  const DeviceWeights& w = *device_;
  const int64_t B = static_cast<int64_t>(requests.size());
  // No suffix K/V is valid until this forward completes (AppendKv must not read a failed one's).
  ws.kv_requests.clear();
  ws.kv_tokens = 0;
  for (int64_t i = 0; i < B; ++i) HELM_RETURN_IF_ERROR(ValidateRequest(d, requests[i], i));

  const int64_t D = d.d_model;
  const int64_t E = d.emb_dim;
  const int64_t W = d.uvqk_width();
  const int64_t HV = d.attn_width();
  const int64_t HK = int64_t{d.num_heads} * d.d_qk;
  const int64_t tpb = d.tokens_per_block;
  const float alpha = 1.0f / std::sqrt(static_cast<float>(d.d_qk));

  // ---- Where each request's rows sit. The batch's rows: [0, S_all) every request's history
  // suffix, request after request, then [S_all, S_all + C_all) every request's candidates. All
  // suffixes come first so that the last layer (candidates only) and the scoring head run over one
  // contiguous range; the suffix rows are also the rows of ws.kv.
  struct Part {
    int64_t P = 0, S = 0, C = 0, L = 0;
    int64_t hist_row = 0;  // first suffix row (and first row of ws.kv)
    int64_t cand_row = 0;  // first candidate, counted from S_all
    int64_t ts_offset = 0, block_offset = 0, num_blocks = 0;
    int32_t microbatch = 0;
  };
  std::vector<Part> parts(B);
  int64_t S_all = 0, C_all = 0, ts_all = 0, blocks_all = 0;
  for (int64_t i = 0; i < B; ++i) {
    const ForwardRequest& req = requests[i];
    Part& p = parts[i];
    p.L = static_cast<int64_t>(req.actions.size());
    p.P = req.cached_tokens;
    p.S = p.L - p.P;
    p.C = req.num_candidates;
    p.num_blocks = (p.P + tpb - 1) / tpb;
    p.microbatch = req.candidate_microbatch > 0 ? req.candidate_microbatch : candidate_microbatch_;
    p.hist_row = S_all;
    p.cand_row = C_all;
    p.ts_offset = ts_all;
    p.block_offset = blocks_all;
    S_all += p.S;
    C_all += p.C;
    ts_all += p.L;
    blocks_all += p.num_blocks;
  }
  const int64_t N = S_all + C_all;

  // ---- Small host inputs in backend memory. On the CPU paths each request's own arrays are used
  // in place; on a device they are packed and copied once (they must all stay valid until the
  // forward's kernels have run).
  std::vector<const int64_t*> ts(B);
  std::vector<const void* const*> blocks(B);
  if (k.on_device()) {
    ws.timestamps_host.clear();
    ws.blocks_host.clear();
    for (const ForwardRequest& req : requests) {
      ws.timestamps_host.insert(ws.timestamps_host.end(), req.timestamps.begin(),
                                req.timestamps.end());
      const int64_t nb = (req.cached_tokens + tpb - 1) / tpb;
      ws.blocks_host.insert(ws.blocks_host.end(), req.cached_blocks.begin(),
                            req.cached_blocks.begin() + nb);
    }
    HELM_ASSIGN_OR_RETURN(const int64_t* ts_dev,
                          ToBackend(k, ctx, ws.timestamps, ws.timestamps_host.data(), ts_all));
    HELM_ASSIGN_OR_RETURN(const void* const* blocks_dev,
                          ToBackend(k, ctx, ws.block_table, ws.blocks_host.data(), blocks_all));
    for (int64_t i = 0; i < B; ++i) {
      ts[i] = ts_dev == nullptr ? nullptr : ts_dev + parts[i].ts_offset;
      blocks[i] = blocks_dev == nullptr ? nullptr : blocks_dev + parts[i].block_offset;
    }
  } else {
    for (int64_t i = 0; i < B; ++i) {
      ts[i] = requests[i].timestamps.data();
      blocks[i] = requests[i].cached_blocks.data();
    }
  }

  std::vector<ForwardResult> results(B);
  for (int64_t i = 0; i < B; ++i) {
    results[i].cached_tokens = parts[i].P;
    results[i].suffix_tokens = parts[i].S;
    results[i].scores.assign(parts[i].C, 0.0f);
  }
  const int64_t kv_layer = S_all * (HK + HV);
  HELM_ASSIGN_OR_RETURN(float* kv,
                        ws.kv.GetAs<float>(k, ctx, std::max<int64_t>(1, d.num_layers * kv_layer)));
  if (N == 0) {
    HELM_RETURN_IF_ERROR(k.Synchronize(ctx));
    for (const Part& p : parts) ws.kv_requests.push_back({p.P, p.S, p.hist_row});
    return results;
  }
  HELM_ASSIGN_OR_RETURN(float* x, ws.x.GetAs<float>(k, ctx, N * D));
  HELM_ASSIGN_OR_RETURN(float* norm, ws.norm.GetAs<float>(k, ctx, N * D));
  HELM_ASSIGN_OR_RETURN(float* uvqk, ws.uvqk.GetAs<float>(k, ctx, N * W));
  HELM_ASSIGN_OR_RETURN(float* attn, ws.attn.GetAs<float>(k, ctx, N * HV));
  HELM_ASSIGN_OR_RETURN(float* gate, ws.gate.GetAs<float>(k, ctx, N * HV));

  // ---- Layer-0 inputs. Each request's embeddings land in its rows (gathered by location, or
  // copied from the rows given); a projection to D then runs as one GEMM over the whole batch.
  float* emb = x;  // without a projection the embeddings are the layer-0 input itself
  if (d.projects_embeddings()) {
    HELM_ASSIGN_OR_RETURN(emb, ws.emb.GetAs<float>(k, ctx, N * E));
  }
  // Inputs given as rows are copied; the others are gathered by location, one gather per input
  // (each has its own arena and staging buffer) but, on a device, with every input's locations
  // copied over at once.
  struct Gather {
    const EmbeddingInput* in;
    int64_t n, row, location_offset;
  };
  std::vector<Gather> gathers;
  int64_t locations_all = 0;
  for (int64_t i = 0; i < B; ++i) {
    const Part& p = parts[i];
    for (const auto& [in, n, row] :
         {std::tuple(&requests[i].suffix, p.S, p.hist_row),
          std::tuple(&requests[i].candidates, p.C, S_all + p.cand_row)}) {
      if (n == 0) continue;
      if (in->rows != nullptr) {
        HELM_RETURN_IF_ERROR(k.CopyWithin(ctx, emb + row * E, in->rows, sizeof(float) * n * E));
      } else {
        gathers.push_back({in, n, row, locations_all});
        locations_all += n;
      }
    }
  }
  const int64_t* locations = nullptr;
  if (k.on_device() && locations_all > 0) {
    ws.locations_host.clear();
    for (const Gather& g : gathers) {
      ws.locations_host.insert(ws.locations_host.end(), g.in->locations, g.in->locations + g.n);
    }
    HELM_ASSIGN_OR_RETURN(locations,
                          ToBackend(k, ctx, ws.locations, ws.locations_host.data(), locations_all));
  }
  for (const Gather& g : gathers) {
    GatherArgs ga;
    ga.arena_base = g.in->arena_base;
    ga.staging_base = g.in->staging_base;
    ga.locations = k.on_device() ? locations + g.location_offset : g.in->locations;
    ga.n = g.n;
    ga.dim = d.emb_dim;
    ga.dtype = d.emb_dtype;
    ga.out = emb + g.row * E;
    HELM_RETURN_IF_ERROR(k.GatherEmbeddings(ctx, ga));
  }
  if (d.projects_embeddings()) {
    HELM_RETURN_IF_ERROR(k.Gemm(ctx, N, D, E, emb, E, w.item_proj_w, w.item_proj_b, x, D, false));
  }
  if (S_all > 0) {
    ws.actions_host.clear();
    for (const ForwardRequest& req : requests) {
      ws.actions_host.insert(ws.actions_host.end(), req.actions.begin() + req.cached_tokens,
                             req.actions.end());
    }
    HELM_ASSIGN_OR_RETURN(const int32_t* acts,
                          ToBackend(k, ctx, ws.actions, ws.actions_host.data(), S_all));
    HELM_RETURN_IF_ERROR(k.AddRows(ctx, x, S_all, D, w.action_emb, acts));
  }
  float* x0 = nullptr;  // the candidates' layer-0 input, kept for the scoring head
  if (C_all > 0) {
    HELM_ASSIGN_OR_RETURN(x0, ws.x0_cand.GetAs<float>(k, ctx, C_all * D));
    HELM_RETURN_IF_ERROR(k.CopyWithin(ctx, x0, x + S_all * D, sizeof(float) * C_all * D));
  }

  // ---- Layer-major over all rows. Dense math: one call per layer for the whole batch. Attention:
  // per request, causal history queries over its cached prefix and suffix, then M-FALCON
  // candidate microbatches that see its history and themselves. The suffixes' K/V of every layer
  // stay in ws.kv for AppendKv.
  for (int32_t l = 0; l < d.num_layers; ++l) {
    const DeviceWeights::Layer& lw = w.layers[l];
    const bool last = l == d.num_layers - 1;
    HELM_RETURN_IF_ERROR(k.LayerNorm(ctx, x, norm, N, D, lw.norm_in_w, lw.norm_in_b));
    HELM_RETURN_IF_ERROR(k.Gemm(ctx, N, W, D, norm, D, lw.uvqk_w, nullptr, uvqk, W, false));
    HELM_RETURN_IF_ERROR(k.BiasSilu(ctx, uvqk, N, W, lw.uvqk_b));
    float* k_l = kv + l * kv_layer;
    float* v_l = k_l + S_all * HK;
    if (S_all > 0) {
      HELM_RETURN_IF_ERROR(k.CopyColumns(ctx, uvqk, W, d.k_offset(), S_all, HK, k_l));
      HELM_RETURN_IF_ERROR(k.CopyColumns(ctx, uvqk, W, d.v_offset(), S_all, HV, v_l));
    }
    for (int64_t i = 0; i < B; ++i) {
      const Part& p = parts[i];
      AttentionArgs a;
      a.num_heads = d.num_heads;
      a.d_qk = d.d_qk;
      a.d_v = d.d_v;
      a.alpha = alpha;
      a.q_stride = W;
      a.blocks = blocks[i];
      a.cached_tokens = p.P;
      a.layer = l;
      a.num_layers = d.num_layers;
      a.tokens_per_block = d.tokens_per_block;
      a.kv_dtype = d.kv_dtype;
      a.k_suffix = p.S > 0 ? k_l + p.hist_row * HK : nullptr;
      a.v_suffix = p.S > 0 ? v_l + p.hist_row * HV : nullptr;
      a.suffix_tokens = p.S;
      a.timestamps = ts[i];
      a.pos_bias = lw.pos_bias;
      a.time_bias = lw.time_bias;
      a.position_buckets = d.position_buckets;
      a.time_buckets = d.time_buckets;
      // The last layer's history outputs feed nothing: history tokens need only its K/V.
      if (p.S > 0 && !last) {
        AttentionArgs h = a;
        h.num_queries = p.S;
        h.q = uvqk + p.hist_row * W + d.q_offset();
        h.candidates = false;
        h.out = attn + p.hist_row * HV;
        HELM_RETURN_IF_ERROR(k.Attention(ctx, h));
        a.same_kv_as_last_call = true;
      }
      for (int64_t c0 = 0; c0 < p.C; c0 += p.microbatch) {
        const int64_t row = S_all + p.cand_row + c0;
        AttentionArgs c = a;
        c.num_queries = std::min<int64_t>(p.microbatch, p.C - c0);
        c.q = uvqk + row * W + d.q_offset();
        c.candidates = true;
        c.k_self = uvqk + row * W + d.k_offset();
        c.v_self = uvqk + row * W + d.v_offset();
        c.self_stride = W;
        c.out = attn + row * HV;
        HELM_RETURN_IF_ERROR(k.Attention(ctx, c));
        a.same_kv_as_last_call = true;  // every call of this request and layer reads the same K/V
      }
    }
    const int64_t first = last ? S_all : 0;  // rows whose output this layer still needs
    const int64_t count = N - first;
    if (count == 0) continue;
    HELM_RETURN_IF_ERROR(k.LayerNormGate(ctx, attn + first * HV, uvqk + first * W + d.u_offset(), W,
                                         gate + first * HV, count, HV, lw.norm_attn_w,
                                         lw.norm_attn_b));
    HELM_RETURN_IF_ERROR(k.Gemm(ctx, count, D, HV, gate + first * HV, HV, lw.out_w, lw.out_b,
                                x + first * D, D, true));
  }

  // ---- Scoring head over every candidate of the batch: < final_norm(y_c), head(x0_c) >.
  if (C_all > 0) {
    float* y = norm + S_all * D;
    HELM_ASSIGN_OR_RETURN(float* head, ws.head.GetAs<float>(k, ctx, C_all * D));
    HELM_ASSIGN_OR_RETURN(float* scores, ws.scores.GetAs<float>(k, ctx, C_all));
    HELM_RETURN_IF_ERROR(
        k.LayerNorm(ctx, x + S_all * D, y, C_all, D, w.final_norm_w, w.final_norm_b));
    HELM_RETURN_IF_ERROR(k.Gemm(ctx, C_all, D, D, x0, D, w.head_w, w.head_b, head, D, false));
    HELM_RETURN_IF_ERROR(k.RowDot(ctx, y, head, C_all, D, scores));
    ws.scores_host.resize(C_all);
    HELM_RETURN_IF_ERROR(k.CopyToHost(ctx, ws.scores_host.data(), scores, sizeof(float) * C_all));
  }
  HELM_RETURN_IF_ERROR(k.Synchronize(ctx));
  for (int64_t i = 0; i < B; ++i) {
    std::copy_n(ws.scores_host.begin() + parts[i].cand_row, parts[i].C, results[i].scores.begin());
  }
  ws.kv_tokens = S_all;
  for (const Part& p : parts) ws.kv_requests.push_back({p.P, p.S, p.hist_row});
  return results;
}

absl::Status Model::AppendKv(Workspace& ws, absl::Span<void* const> blocks, int64_t first_token,
                             int64_t num_tokens) const {
  return AppendKv(ws, 0, blocks, first_token, num_tokens);
}

absl::Status Model::AppendKv(Workspace& base_ws, int64_t request, absl::Span<void* const> blocks,
                             int64_t first_token, int64_t num_tokens) const {
  auto& ws = static_cast<WorkspaceImpl&>(base_ws);
  if (request < 0 || request >= ws.new_kv_requests()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv append: request must be in [0, ", ws.new_kv_requests(),
                     ") (the last forward's requests), got ", request));
  }
  const Workspace::NewKv part = ws.new_kv_of(request);
  if (first_token != part.first_token) {
    return absl::InvalidArgumentError(absl::StrCat("kv append: request ", request,
                                                   ": first_token must be its cached_tokens (",
                                                   part.first_token, "), got ", first_token));
  }
  if (num_tokens < 0 || num_tokens > part.tokens) {
    return absl::InvalidArgumentError(absl::StrCat("kv append: request ", request,
                                                   ": num_tokens must be in [0, ", part.tokens,
                                                   "], got ", num_tokens));
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
  a.src_tokens = ws.new_kv_tokens();
  a.src_first = part.row;
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
