// The simulator's cost model (issue 12, DESIGN.md §7): what a batch of HSTU forwards costs in
// time on one device. The simulator runs the real node and router cores on a virtual clock with
// payload-free storage: the real caches decide hits, misses and evictions, and only *time* comes
// from here. Everything is a pure function of the work: no clock, no threads, no protobuf.
//
// A batch's service time is the sum of
//   dense      2 * DenseMacs / (dense FLOP/s * efficiency): the projections, U|V|Q|K, output and
//              head GEMMs over every computed row (suffix tokens and candidates);
//   attention  K/V bytes read / (memory bytes/s * efficiency) + 2 * attention MACs / (attention
//              FLOP/s * efficiency). The bytes follow the kernels: each query tile of
//              `attention_query_tile` queries (8 on the CUDA kernel, 128 on the CPU path) reads the
//              K/V of every key it sees, per layer; history queries see a causal prefix (cached
//              tokens + the suffix up to the tile's last query) on every layer but the last,
//              candidates see the whole history on every layer, in M-FALCON microbatches;
//   gathers    embedding rows gathered / (gather bytes/s * efficiency), each row read in
//              emb_dtype and written as fp32;
//   pcie       EMB miss bytes / PCIe bytes/s (+ one transfer latency when there are misses);
//   host gather  EMB miss bytes / host gather bytes/s, before the transfer: the node's storage
//              copies each missed row from the host table into the staging buffer on one host
//              thread (pool::GatherHostCopies), random rows of a table far larger than any cache,
//              a DRAM miss or more per row. 0 in the built-in profiles (not modelled: the transfer
//              alone); helm_bench_model --calibrate measures it (on one EPYC core of the
//              development VM, 512-byte rows of a 4 GiB table: 1.8-2.8 GB/s as a plain loop,
//              2.5-3.7 GB/s prefetching as the storage now does; the A100 profile's PCIe is 25);
//   launches   kernel calls a ForwardBatch of that shape makes (counted from the structure of
//              Model::ForwardBatch) * kernel_launch_us;
//   fixed      batch_fixed_us per batch (synchronisation, host-side bookkeeping).
// KV recompute is simply the suffix's work: a request whose prefix was evicted has more suffix
// tokens and fewer cached ones. A measured profile may carry the spread of real service times
// around the model's (service_ratio_quantiles); the simulator, not BatchCost, applies it.
//
// Profiles. Datasheet peaks times an efficiency factor each (sources below, at the profiles), or
// a calibration JSON of measured coefficients (helm_bench_model --calibrate FILE) layered over a
// base profile. The CUDA path runs plain fp32 GEMMs (no TF32: kernels/cuda/cuda_kernels.cc) and
// fp32 CUDA-core attention, so the GPU profiles use the fp32 peaks; the bf16 tensor-core peaks are
// given for reference only.
//
// Thread-safety: CostProfile, RequestWork, BatchWork and CostBreakdown are value types; a
// CostModel is immutable after Create and safe to share between threads. PcieQueue is a plain
// mutable value: one per simulated device, not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "helm/model/types.h"

namespace helm::sim {

// One request's share of a batch, as the node core sees it after its cache lookups.
struct RequestWork {
  int64_t suffix_tokens = 0;      // history tokens computed (uncached suffix, or a recompute)
  int64_t cached_tokens = 0;      // history tokens read from the KV cache
  int64_t candidates = 0;         // candidates scored
  int64_t emb_rows_gathered = 0;  // embedding rows gathered (suffix + candidates, hits and misses)
  int64_t emb_miss_bytes = 0;     // EMB miss bytes copied host -> device over PCIe
};

struct BatchWork {
  std::vector<RequestWork> requests;
};

// A device's coefficients. Rates are peaks and the efficiencies scale them; a measured profile
// (calibration) carries effective rates with efficiencies of 1.
struct CostProfile {
  std::string name;
  double dense_flops_per_s = 0;      // FLOP/s of the forward's GEMMs (peak)
  double dense_efficiency = 1;       // fraction of the peak reached, in (0, 1]
  double attention_flops_per_s = 0;  // FLOP/s of the attention math (peak)
  double attention_efficiency = 1;
  double memory_bytes_per_s = 0;  // memory bandwidth for K/V reads (peak)
  double memory_efficiency = 1;
  double gather_bytes_per_s = 0;  // bandwidth of embedding gathers (peak)
  double gather_efficiency = 1;
  double pcie_bytes_per_s = 0;         // host -> device bytes/s (effective)
  double pcie_latency_us = 0;          // per foreground transfer
  double host_gather_bytes_per_s = 0;  // one host thread gathering missed rows; 0: not modelled
  double kernel_launch_us = 0;         // per kernel call
  double batch_fixed_us = 0;           // per batch
  int64_t attention_query_tile = 1;    // queries sharing one read of the K/V they see
  // Whether the small host inputs (timestamps, block tables, embedding locations, actions) are
  // copied to the device once per forward (each copy counted as a launch).
  bool on_device = false;
  // The spread of measured service times around the model's: (quantile, measured / predicted)
  // points, quantiles rising from 0 to 1 and ratios not falling. The simulator draws each batch's
  // factor from it (ServiceRatio); empty: every batch takes exactly what the model says.
  std::vector<std::pair<double, double>> service_ratio_quantiles;

  double effective_dense_flops_per_s() const { return dense_flops_per_s * dense_efficiency; }
  double effective_attention_flops_per_s() const {
    return attention_flops_per_s * attention_efficiency;
  }
  double effective_memory_bytes_per_s() const { return memory_bytes_per_s * memory_efficiency; }
  double effective_gather_bytes_per_s() const { return gather_bytes_per_s * gather_efficiency; }
  // The factor at quantile `u` in [0, 1] of service_ratio_quantiles (linear between points); 1
  // when there are none.
  double ServiceRatio(double u) const;
};

// A piecewise-linear quantile function given as (quantile, value) points: the value at quantile
// `u` (clamped to [0, 1]), linear between points. REQUIRES: points pass ValidateQuantiles.
double QuantileAt(const std::vector<std::pair<double, double>>& points, double u);
// InvalidArgument naming `name` unless the points run from quantile 0 to quantile 1, quantiles
// rising and values (`value_name`s: finite, > 0, or >= 0 when `zero_allowed`) not falling.
absl::Status ValidateQuantiles(const std::vector<std::pair<double, double>>& points,
                               absl::string_view name, absl::string_view value_name,
                               bool zero_allowed);

// A transport calibration (simulator.transport_path; written by helm-bench
// --transport-calibration): the time requests spent outside the nodes on a measured cluster, as a
// JSON object with "outside_us_quantiles", [quantile, microseconds] pairs from quantile 0 to 1,
// and optional informational "method", "date", "machine", "notes" (strings), "requests" and
// "rate_per_s" (numbers). Errors (InvalidArgument, or NotFound for a missing file) name the file
// and the key; an unknown key is an error.
absl::StatusOr<std::vector<std::pair<double, double>>> LoadTransportCalibration(
    const std::string& path);

// The built-in profiles: "a100-80g", "h100-80g" and "cpu" (aliases "a100" and "h100").
// InvalidArgument naming the known profiles for any other name.
absl::StatusOr<CostProfile> ProfileByName(absl::string_view name);

// A calibration JSON: an object with an optional "base" (a profile name, default "cpu"), optional
// informational strings "machine", "date", "method", "notes", and any of CostProfile's
// coefficients under their field names (numbers; "attention_query_tile" an integer >= 1,
// "on_device" a boolean, "service_ratio_quantiles" an array of [quantile, ratio] pairs), which
// override the base profile's. Rates must be > 0, efficiencies in
// (0, 1], overheads >= 0. The profile's name becomes "calibration:<path>". Errors
// (InvalidArgument, or NotFound for a missing file) name the file and the key; an unknown key is
// an error.
absl::StatusOr<CostProfile> LoadCalibration(const std::string& path);
// LoadCalibration of text already read; `source` names it in errors.
absl::StatusOr<CostProfile> ParseCalibration(absl::string_view json_text, absl::string_view source);

// Checks a profile's values, naming the field: InvalidArgument for a bad one.
absl::Status ValidateProfile(const CostProfile& profile);

// Multiply-adds of the dense layers of a forward with `suffix_tokens` computed history tokens and
// `candidates` candidates: Model::DenseMacs's formula (tests check the two agree).
int64_t DenseMacs(const model::ModelDims& dims, int64_t suffix_tokens, int64_t candidates);

// Multiply-adds of one request's attention (Q.K and A.V, all layers and heads): each history
// query at position p sees p + 1 keys on every layer but the last; each candidate sees the whole
// history and itself on every layer.
int64_t AttentionMacs(const model::ModelDims& dims, const RequestWork& work);

// K/V bytes one request's attention reads (all layers), with query tiles of `query_tile` and
// candidate microbatches of `candidate_microbatch` (REQUIRES: both >= 1), in kv_dtype.
int64_t AttentionBytes(const model::ModelDims& dims, const RequestWork& work, int64_t query_tile,
                       int64_t candidate_microbatch);

// Kernel calls Model::ForwardBatch makes for `batch` (Synchronize not counted): with embeddings
// gathered by location, and, when `on_device`, the host-input copies. REQUIRES:
// candidate_microbatch >= 1.
int64_t KernelLaunches(const model::ModelDims& dims, const BatchWork& batch,
                       int64_t candidate_microbatch, bool on_device);

// Where a batch's time goes, in microseconds.
struct CostBreakdown {
  double dense_us = 0;
  double attention_us = 0;
  double gather_us = 0;
  double pcie_us = 0;
  double host_gather_us = 0;
  double launch_us = 0;
  double fixed_us = 0;
  int64_t launches = 0;
  double total_us() const {
    return dense_us + attention_us + gather_us + pcie_us + host_gather_us + launch_us + fixed_us;
  }
  // Fetching the EMB misses: the host gather and the transfer (the rest is the device's work).
  double miss_us() const { return pcie_us + host_gather_us; }
};

class CostModel {
 public:
  // InvalidArgument naming the field for a bad profile or dims, or a candidate_microbatch < 1.
  static absl::StatusOr<CostModel> Create(const model::ModelDims& dims, const CostProfile& profile,
                                          int32_t candidate_microbatch);

  // The batch's service time and its breakdown. An empty batch costs nothing.
  CostBreakdown BatchCost(const BatchWork& batch) const;
  // BatchCost(batch).total_us().
  double BatchTimeUs(const BatchWork& batch) const { return BatchCost(batch).total_us(); }
  // A lone host -> device transfer of `bytes` (no latency for 0 bytes).
  double PcieTimeUs(int64_t bytes) const;
  // The host thread's gather of `bytes` of missed rows before their transfer (0 when the profile
  // does not model it).
  double HostGatherUs(int64_t bytes) const;

  const model::ModelDims& dims() const { return dims_; }
  const CostProfile& profile() const { return profile_; }
  int32_t candidate_microbatch() const { return candidate_microbatch_; }

 private:
  CostModel(const model::ModelDims& dims, const CostProfile& profile, int32_t microbatch)
      : dims_(dims), profile_(profile), candidate_microbatch_(microbatch) {}
  model::ModelDims dims_;
  CostProfile profile_;
  int32_t candidate_microbatch_ = 64;
};

// One device's host -> device PCIe link on the virtual clock (microseconds), shared by foreground
// EMB misses and background traffic (resize refill, prefetch). Transfers run one at a time in
// submission order at the link's bytes/s; background bytes are also paced to their bytes/s
// budget, so they never take more than that share of the link on average, but a foreground
// transfer submitted while a background one is on the link waits for it.
class PcieQueue {
 public:
  // `link_bytes_per_s` > 0; `background_budget_bytes_per_s` > 0 (clamped to the link's rate).
  PcieQueue(double link_bytes_per_s, double background_budget_bytes_per_s, double latency_us = 0.0);

  // A foreground transfer of `bytes` submitted at `now_us`: returns its completion time. It
  // starts when the link is free (after anything submitted earlier), plus the latency.
  double SubmitForeground(double now_us, int64_t bytes);
  // A background transfer of `bytes` submitted at `now_us`: returns its completion time. It
  // starts when the link is free and no earlier than its budget allows (the previous background
  // transfer's start plus its bytes at the budget rate).
  double SubmitBackground(double now_us, int64_t bytes);
  // When the link is next free.
  double busy_until_us() const { return busy_until_us_; }
  // Time the foreground transfers spent waiting for the link, in total.
  double foreground_wait_us() const { return foreground_wait_us_; }
  int64_t background_bytes() const { return background_bytes_; }
  int64_t foreground_bytes() const { return foreground_bytes_; }

 private:
  double link_bytes_per_us_;
  double budget_bytes_per_us_;
  double latency_us_;
  double busy_until_us_ = 0;
  double next_background_us_ = 0;
  double foreground_wait_us_ = 0;
  int64_t background_bytes_ = 0;
  int64_t foreground_bytes_ = 0;
};

}  // namespace helm::sim
