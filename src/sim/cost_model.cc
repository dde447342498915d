#include "helm/sim/cost_model.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "helm/common/status.h"
#include "nlohmann/json.hpp"

namespace helm::sim {

namespace {

// Datasheet sources:
//  A100 80GB SXM: NVIDIA A100 Tensor Core GPU datasheet (2021): FP32 19.5 TFLOP/s, TF32 156 (312
//    sparse), BF16 312; HBM2e 2,039 GB/s; PCIe Gen4 x16 64 GB/s bidirectional, ~25 GB/s effective
//    host -> device from pinned memory (bandwidthTest-class measurements).
//  H100 80GB SXM: NVIDIA H100 Tensor Core GPU datasheet (2023): FP32 67 TFLOP/s, BF16 989 dense
//    (1,979 sparse); HBM3 3.35 TB/s; PCIe Gen5 x16 128 GB/s bidirectional, ~50 GB/s effective.
//  Kernel launch: ~4-6 us per launch from the host on a stream (CUDA launch-overhead
//    measurements); 5 us taken.
// Efficiencies (our estimates, to be replaced by a calibration from the device script):
//  dense 0.6 — cuBLAS sgemm reaches ~80-90% of FP32 peak at large sizes, less for the forward's
//    thin GEMMs (hundreds to thousands of rows); attention math 0.3 of FP32 peak (a CUDA-core
//    kernel with SiLU and bias lookups per score); K/V reads 0.7 of HBM (paged blocks of
//    16 tokens, read in key chunks); gathers 0.5 of HBM (random rows of 0.5-1 KiB).
CostProfile A100() {
  CostProfile p;
  p.name = "a100-80g";
  p.dense_flops_per_s = 19.5e12;
  p.dense_efficiency = 0.6;
  p.attention_flops_per_s = 19.5e12;
  p.attention_efficiency = 0.3;
  p.memory_bytes_per_s = 2.039e12;
  p.memory_efficiency = 0.7;
  p.gather_bytes_per_s = 2.039e12;
  p.gather_efficiency = 0.5;
  p.pcie_bytes_per_s = 25e9;
  p.pcie_latency_us = 10;
  p.kernel_launch_us = 5;
  p.batch_fixed_us = 30;
  p.attention_query_tile = 8;
  p.on_device = true;
  return p;
}

CostProfile H100() {
  CostProfile p = A100();
  p.name = "h100-80g";
  p.dense_flops_per_s = 67e12;
  p.attention_flops_per_s = 67e12;
  p.memory_bytes_per_s = 3.35e12;
  p.gather_bytes_per_s = 3.35e12;
  p.pcie_bytes_per_s = 50e9;
  return p;
}

// One core of the development VM (AMD EPYC, OpenBLAS Haswell kernels) running the demo model,
// rounded from its calibration (configs/calibration/cpu-dev.json, 2026-12-05), which should be
// preferred; other CPUs and larger models differ (recalibrate).
CostProfile Cpu() {
  CostProfile p;
  p.name = "cpu";
  p.dense_flops_per_s = 64e9;
  p.attention_flops_per_s = 84e9;
  p.memory_bytes_per_s = 6e9;
  p.gather_bytes_per_s = 40e9;
  p.pcie_bytes_per_s = 25e9;  // configs/local.yaml's pool.pcie_emulation_gbps (a paced host copy)
  p.pcie_latency_us = 0;
  p.kernel_launch_us = 0;  // a call's overhead is not measurable apart from its work on the CPU
  p.batch_fixed_us = 7;
  p.attention_query_tile = 128;
  p.on_device = false;
  return p;
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

absl::StatusOr<CostProfile> ProfileByName(absl::string_view name) {
  if (name == "a100-80g" || name == "a100") return A100();
  if (name == "h100-80g" || name == "h100") return H100();
  if (name == "cpu") return Cpu();
  return absl::InvalidArgumentError(absl::StrCat(
      "cost profile: must be one of a100-80g, h100-80g, cpu (or a100, h100), got '", name, "'"));
}

absl::Status ValidateProfile(const CostProfile& p) {
  for (const auto& [key, v] :
       {std::pair<const char*, double>{"dense_flops_per_s", p.dense_flops_per_s},
        {"attention_flops_per_s", p.attention_flops_per_s},
        {"memory_bytes_per_s", p.memory_bytes_per_s},
        {"gather_bytes_per_s", p.gather_bytes_per_s},
        {"pcie_bytes_per_s", p.pcie_bytes_per_s}}) {
    if (!(v > 0) || !std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat(key, ": must be > 0, got ", v));
    }
  }
  for (const auto& [key, v] :
       {std::pair<const char*, double>{"dense_efficiency", p.dense_efficiency},
        {"attention_efficiency", p.attention_efficiency},
        {"memory_efficiency", p.memory_efficiency},
        {"gather_efficiency", p.gather_efficiency}}) {
    if (!(v > 0 && v <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(key, ": must be in (0, 1], got ", v));
    }
  }
  for (const auto& [key, v] : {std::pair<const char*, double>{"pcie_latency_us", p.pcie_latency_us},
                               {"host_gather_bytes_per_s", p.host_gather_bytes_per_s},
                               {"kernel_launch_us", p.kernel_launch_us},
                               {"batch_fixed_us", p.batch_fixed_us}}) {
    if (!(v >= 0) || !std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat(key, ": must be >= 0, got ", v));
    }
  }
  if (p.attention_query_tile < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention_query_tile: must be >= 1, got ", p.attention_query_tile));
  }
  if (!p.service_ratio_quantiles.empty()) {
    HELM_RETURN_IF_ERROR(
        ValidateQuantiles(p.service_ratio_quantiles, "service_ratio_quantiles", "ratio", false));
  }
  return absl::OkStatus();
}

double CostProfile::ServiceRatio(double u) const {
  return service_ratio_quantiles.empty() ? 1.0 : QuantileAt(service_ratio_quantiles, u);
}

absl::Status ValidateQuantiles(const std::vector<std::pair<double, double>>& q,
                               absl::string_view name, absl::string_view value_name,
                               bool zero_allowed) {
  if (q.size() < 2 || q.front().first != 0.0 || q.back().first != 1.0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": needs at least two points, from quantile 0 to quantile 1"));
  }
  for (size_t i = 0; i < q.size(); ++i) {
    const double v = q[i].second;
    if (!std::isfinite(v) || v < 0 || (v == 0 && !zero_allowed)) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": ", value_name, " ", i, " must be ",
                                                     zero_allowed ? ">= 0" : "> 0", ", got ", v));
    }
    if (i > 0 && !(q[i].first > q[i - 1].first && v >= q[i - 1].second)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": point ", i, " must have a higher quantile and a ", value_name,
                       " no lower than the point before"));
    }
  }
  return absl::OkStatus();
}

double QuantileAt(const std::vector<std::pair<double, double>>& q, double u) {
  u = std::clamp(u, 0.0, 1.0);
  const auto hi = std::lower_bound(
      q.begin(), q.end(), u,
      [](const std::pair<double, double>& point, double v) { return point.first < v; });
  if (hi == q.begin()) return hi->second;
  if (hi == q.end()) return q.back().second;
  const auto lo = hi - 1;
  const double t = (u - lo->first) / (hi->first - lo->first);
  return lo->second + t * (hi->second - lo->second);
}

namespace {

// A JSON array of [quantile, value] pairs into *out; false when it is not one.
bool ParseQuantilePairs(const nlohmann::json& value, std::vector<std::pair<double, double>>* out) {
  out->clear();
  if (!value.is_array()) return false;
  for (const nlohmann::json& point : value) {
    if (!point.is_array() || point.size() != 2 || !point[0].is_number() || !point[1].is_number()) {
      return false;
    }
    out->emplace_back(point[0].get<double>(), point[1].get<double>());
  }
  return true;
}

}  // namespace

absl::StatusOr<CostProfile> ParseCalibration(absl::string_view json_text,
                                             absl::string_view source) {
  const std::string where = absl::StrCat("calibration ", source, ": ");
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(where + "not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError(where + "must be a JSON object");
  std::string base = "cpu";
  if (auto it = j.find("base"); it != j.end()) {
    if (!it->is_string()) return absl::InvalidArgumentError(where + "base: must be a string");
    base = it->get<std::string>();
  }
  absl::StatusOr<CostProfile> base_profile = ProfileByName(base);
  if (!base_profile.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "base: ", base_profile.status().message()));
  }
  CostProfile p = *std::move(base_profile);
  const std::pair<const char*, double*> numbers[] = {
      {"dense_flops_per_s", &p.dense_flops_per_s},
      {"dense_efficiency", &p.dense_efficiency},
      {"attention_flops_per_s", &p.attention_flops_per_s},
      {"attention_efficiency", &p.attention_efficiency},
      {"memory_bytes_per_s", &p.memory_bytes_per_s},
      {"memory_efficiency", &p.memory_efficiency},
      {"gather_bytes_per_s", &p.gather_bytes_per_s},
      {"gather_efficiency", &p.gather_efficiency},
      {"pcie_bytes_per_s", &p.pcie_bytes_per_s},
      {"pcie_latency_us", &p.pcie_latency_us},
      {"host_gather_bytes_per_s", &p.host_gather_bytes_per_s},
      {"kernel_launch_us", &p.kernel_launch_us},
      {"batch_fixed_us", &p.batch_fixed_us},
  };
  for (const auto& [key, value] : j.items()) {
    if (key == "base") continue;
    if (key == "machine" || key == "date" || key == "method" || key == "notes") {
      if (!value.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(where, key, ": must be a string"));
      }
      continue;
    }
    if (key == "attention_query_tile") {
      if (!value.is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat(where, key, ": must be an integer"));
      }
      p.attention_query_tile = value.get<int64_t>();
      continue;
    }
    if (key == "service_ratio_quantiles") {
      if (!ParseQuantilePairs(value, &p.service_ratio_quantiles)) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, key, ": must be an array of [quantile, ratio] pairs, got ", value.dump()));
      }
      continue;
    }
    if (key == "on_device") {
      if (!value.is_boolean()) {
        return absl::InvalidArgumentError(absl::StrCat(where, key, ": must be a boolean"));
      }
      p.on_device = value.get<bool>();
      continue;
    }
    double* field = nullptr;
    for (const auto& [name, ptr] : numbers) {
      if (key == name) field = ptr;
    }
    if (field == nullptr) {
      std::vector<std::string> known = {"base",      "machine",
                                        "date",      "method",
                                        "notes",     "attention_query_tile",
                                        "on_device", "service_ratio_quantiles"};
      for (const auto& [name, ptr] : numbers) known.emplace_back(name);
      return absl::InvalidArgumentError(
          absl::StrCat(where, key, ": unknown key (known: ", absl::StrJoin(known, ", "), ")"));
    }
    if (!value.is_number()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, key, ": must be a number, got ", value.dump()));
    }
    *field = value.get<double>();
  }
  if (absl::Status s = ValidateProfile(p); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, s.message()));
  }
  p.name = absl::StrCat("calibration:", source);
  return p;
}

namespace {

// The whole file at `path`; NotFound starting with `where` when it cannot be opened.
absl::StatusOr<std::string> ReadText(const std::string& path, absl::string_view where) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(where, "cannot open the file"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<CostProfile> LoadCalibration(const std::string& path) {
  HELM_ASSIGN_OR_RETURN(const std::string text,
                        ReadText(path, absl::StrCat("calibration ", path, ": ")));
  return ParseCalibration(text, path);
}

absl::StatusOr<std::vector<std::pair<double, double>>> LoadTransportCalibration(
    const std::string& path) {
  const std::string where = absl::StrCat("transport calibration ", path, ": ");
  HELM_ASSIGN_OR_RETURN(const std::string text, ReadText(path, where));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, "not a JSON object"));
  std::vector<std::pair<double, double>> quantiles;
  for (const auto& [key, value] : j.items()) {
    if (key == "method" || key == "date" || key == "machine" || key == "notes") {
      if (!value.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(where, key, ": must be a string"));
      }
    } else if (key == "requests" || key == "rate_per_s") {
      if (!value.is_number()) {
        return absl::InvalidArgumentError(absl::StrCat(where, key, ": must be a number"));
      }
    } else if (key == "outside_us_quantiles") {
      if (!ParseQuantilePairs(value, &quantiles)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, key, ": must be an array of [quantile, microseconds] pairs, got ",
                         value.dump()));
      }
      if (absl::Status s = ValidateQuantiles(quantiles, key, "time", true); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(where, s.message()));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, key,
          ": unknown key (known: outside_us_quantiles, method, date, machine, notes, requests, "
          "rate_per_s)"));
    }
  }
  if (quantiles.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "outside_us_quantiles: missing"));
  }
  return quantiles;
}

int64_t DenseMacs(const model::ModelDims& d, int64_t suffix_tokens, int64_t candidates) {
  const int64_t proj = d.projects_embeddings() ? int64_t{d.emb_dim} * d.d_model : 0;
  const int64_t per_layer = int64_t{d.d_model} * d.uvqk_width() + d.attn_width() * d.d_model;
  // The last layer computes only U|V|Q|K for history tokens (their outputs feed nothing).
  const int64_t hist =
      suffix_tokens * (proj + per_layer * d.num_layers - d.attn_width() * d.d_model);
  const int64_t cand =
      candidates * (proj + per_layer * d.num_layers + int64_t{d.d_model} * d.d_model);
  return (suffix_tokens > 0 ? hist : 0) + cand;
}

int64_t AttentionMacs(const model::ModelDims& d, const RequestWork& w) {
  const int64_t P = w.cached_tokens, S = w.suffix_tokens, L = P + S;
  const int64_t per_key = int64_t{d.num_heads} * (d.d_qk + d.d_v);
  // History query at position p (P <= p < L) sees p + 1 keys, on every layer but the last.
  const int64_t hist_keys = S * P + S * (S + 1) / 2;
  const int64_t cand_keys = w.candidates * (L + 1);
  return per_key * (hist_keys * (d.num_layers - 1) + cand_keys * d.num_layers);
}

int64_t AttentionBytes(const model::ModelDims& d, const RequestWork& w, int64_t query_tile,
                       int64_t candidate_microbatch) {
  const int64_t P = w.cached_tokens, S = w.suffix_tokens, L = P + S, T = query_tile;
  const int64_t bytes_per_key = int64_t{d.num_heads} * (d.d_qk + d.d_v) * DtypeBytes(d.kv_dtype);
  // History tiles: tile j (of n) sees the cached prefix and the suffix up to its last query.
  int64_t hist_keys = 0;
  if (S > 0) {
    const int64_t n = CeilDiv(S, T);
    hist_keys = n * P + T * n * (n - 1) / 2 + S;
  }
  // Candidate tiles: within each microbatch, every tile reads the whole history.
  int64_t cand_tiles = 0;
  if (w.candidates > 0) {
    const int64_t M = candidate_microbatch;
    cand_tiles = (w.candidates / M) * CeilDiv(M, T) + CeilDiv(w.candidates % M, T);
  }
  return bytes_per_key * (hist_keys * (d.num_layers - 1) + cand_tiles * L * d.num_layers);
}

int64_t KernelLaunches(const model::ModelDims& d, const BatchWork& batch,
                       int64_t candidate_microbatch, bool on_device) {
  // Mirrors Model::ForwardBatch call by call (Synchronize excluded).
  int64_t S_all = 0, C_all = 0, L_all = 0, blocks_all = 0, inputs = 0, attention = 0,
          attention_last = 0;
  for (const RequestWork& w : batch.requests) {
    S_all += w.suffix_tokens;
    C_all += w.candidates;
    L_all += w.suffix_tokens + w.cached_tokens;
    blocks_all += CeilDiv(w.cached_tokens, d.tokens_per_block);
    inputs += (w.suffix_tokens > 0) + (w.candidates > 0);
    const int64_t cand_calls = CeilDiv(w.candidates, candidate_microbatch);
    attention += cand_calls + (w.suffix_tokens > 0);
    attention_last += cand_calls;  // the last layer skips the history queries
  }
  int64_t n = 0;
  // On a device the timestamps and block tables go over first, even when nothing is computed.
  if (on_device) n += (L_all > 0) + (blocks_all > 0);
  if (S_all + C_all == 0) return n;
  if (on_device) n += (inputs > 0) + (S_all > 0);     // embedding locations, actions
  n += inputs;                                        // one gather per embedding input
  n += d.projects_embeddings() ? 1 : 0;               // projection GEMM
  n += (S_all > 0) ? 1 : 0;                           // action embeddings
  n += (C_all > 0) ? 1 : 0;                           // keep the candidates' layer-0 input
  const int64_t per_layer = 3 + (S_all > 0 ? 2 : 0);  // norm, U|V|Q|K GEMM, SiLU, K/V columns
  n += per_layer * d.num_layers;
  n += attention * (d.num_layers - 1) + attention_last;
  n += 2 * (d.num_layers - 1) + (C_all > 0 ? 2 : 0);  // gate + output GEMM where rows remain
  if (C_all > 0) n += 4;                              // final norm, head GEMM, dot, copy out
  return n;
}

absl::StatusOr<CostModel> CostModel::Create(const model::ModelDims& dims,
                                            const CostProfile& profile,
                                            int32_t candidate_microbatch) {
  if (absl::Status s = ValidateProfile(profile); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cost profile ", profile.name, ": ", s.message()));
  }
  if (candidate_microbatch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("candidate_microbatch: must be >= 1, got ", candidate_microbatch));
  }
  for (const auto& [key, v] : {std::pair<const char*, int32_t>{"num_layers", dims.num_layers},
                               {"num_heads", dims.num_heads},
                               {"d_qk", dims.d_qk},
                               {"d_v", dims.d_v},
                               {"d_model", dims.d_model},
                               {"emb_dim", dims.emb_dim},
                               {"tokens_per_block", dims.tokens_per_block}}) {
    if (v < 1) return absl::InvalidArgumentError(absl::StrCat(key, ": must be >= 1, got ", v));
  }
  return CostModel(dims, profile, candidate_microbatch);
}

CostBreakdown CostModel::BatchCost(const BatchWork& batch) const {
  CostBreakdown b;
  const CostProfile& p = profile_;
  int64_t suffix = 0, candidates = 0, gathered = 0, miss_bytes = 0;
  double attn_bytes = 0, attn_macs = 0;
  for (const RequestWork& w : batch.requests) {
    suffix += w.suffix_tokens;
    candidates += w.candidates;
    gathered += w.emb_rows_gathered;
    miss_bytes += w.emb_miss_bytes;
    attn_bytes += static_cast<double>(
        AttentionBytes(dims_, w, p.attention_query_tile, candidate_microbatch_));
    attn_macs += static_cast<double>(AttentionMacs(dims_, w));
  }
  b.launches = KernelLaunches(dims_, batch, candidate_microbatch_, p.on_device);
  if (b.launches == 0 && miss_bytes == 0) return b;
  // Each row read in emb_dtype, written as fp32.
  const double gather_bytes =
      static_cast<double>(gathered) * dims_.emb_dim * (DtypeBytes(dims_.emb_dtype) + sizeof(float));
  const double macs = static_cast<double>(DenseMacs(dims_, suffix, candidates));
  b.dense_us = 2.0 * macs / p.effective_dense_flops_per_s() * 1e6;
  b.attention_us = (attn_bytes / p.effective_memory_bytes_per_s() +
                    2.0 * attn_macs / p.effective_attention_flops_per_s()) *
                   1e6;
  b.gather_us = gather_bytes / p.effective_gather_bytes_per_s() * 1e6;
  b.pcie_us = PcieTimeUs(miss_bytes);
  b.host_gather_us = HostGatherUs(miss_bytes);
  b.launch_us = static_cast<double>(b.launches) * p.kernel_launch_us;
  b.fixed_us = p.batch_fixed_us;
  return b;
}

double CostModel::PcieTimeUs(int64_t bytes) const {
  if (bytes <= 0) return 0;
  return profile_.pcie_latency_us + static_cast<double>(bytes) / profile_.pcie_bytes_per_s * 1e6;
}

double CostModel::HostGatherUs(int64_t bytes) const {
  if (bytes <= 0 || profile_.host_gather_bytes_per_s <= 0) return 0;
  return static_cast<double>(bytes) / profile_.host_gather_bytes_per_s * 1e6;
}

PcieQueue::PcieQueue(double link_bytes_per_s, double background_budget_bytes_per_s,
                     double latency_us)
    : link_bytes_per_us_(link_bytes_per_s / 1e6),
      budget_bytes_per_us_(std::min(background_budget_bytes_per_s, link_bytes_per_s) / 1e6),
      latency_us_(latency_us) {}

double PcieQueue::SubmitForeground(double now_us, int64_t bytes) {
  const double start = std::max(now_us, busy_until_us_);
  foreground_wait_us_ += start - now_us;
  foreground_bytes_ += bytes;
  busy_until_us_ = start + latency_us_ + static_cast<double>(bytes) / link_bytes_per_us_;
  return busy_until_us_;
}

double PcieQueue::SubmitBackground(double now_us, int64_t bytes) {
  const double start = std::max({now_us, busy_until_us_, next_background_us_});
  background_bytes_ += bytes;
  busy_until_us_ = start + static_cast<double>(bytes) / link_bytes_per_us_;
  next_background_us_ = start + static_cast<double>(bytes) / budget_bytes_per_us_;
  return busy_until_us_;
}

}  // namespace helm::sim
