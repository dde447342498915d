// What a load-generator run measured, and the arithmetic that turns it into a report: exact
// latency percentiles, SLO attainment, goodput, errors by code, cache hit ratios per node, and a
// per-second time series. Pure functions over value types (thread-compatible), so the arithmetic
// is tested without a network.
//
// Latency is measured from each request's *scheduled* time (open loop): a request the sender had
// to send late, or that queued anywhere, carries that delay in its latency.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "helm/v1/node.pb.h"
#include "helm/workload/phases.h"

namespace helm::bench {

// Completion::code of a request the load generator dropped because max_in_flight requests were
// already outstanding (never sent; counted as an error, not delayed).
inline constexpr int32_t kDroppedCode = -1;

// "OK", "DEADLINE_EXCEEDED", ... for gRPC codes; "DROPPED" for kDroppedCode.
std::string CodeName(int32_t code);

// What a reply's ServingInfo says about how the node served the request (zeros when the reply
// carried none, or on error).
struct ReplyInfo {
  int32_t cached_tokens = 0;
  int32_t computed_tokens = 0;
  int32_t emb_hits = 0;
  int32_t emb_misses = 0;
  int64_t queue_us = 0;    // the node's queueing (admission to the start of compute)
  int64_t compute_us = 0;  // the node's compute of the request's batch
  int32_t batch_size = 0;  // requests in that batch
  int32_t attempts = 0;    // nodes the router tried
};

// One scheduled request and how it ended.
struct Completion {
  int64_t scheduled_us = 0;  // from the start of the run
  int64_t send_lag_us = 0;   // sent this long after its scheduled time (0 when dropped)
  int64_t latency_us = 0;    // reply (or error) time minus scheduled time; 0 when dropped
  int32_t phase = 0;
  int32_t code = 0;   // grpc::StatusCode, or kDroppedCode
  int32_t node = -1;  // index into RunResult::node_ids of the replying node; -1 unknown
  ReplyInfo info;
};

// One GetStats poll of one node.
struct NodeSample {
  int64_t t_us = 0;    // from the start of the run
  int32_t target = 0;  // index into RunResult::poll_targets
  bool ok = false;
  std::string error;          // when !ok
  helm::v1::NodeStats stats;  // when ok
};

// Everything a run produced, before any arithmetic.
struct RunResult {
  std::vector<workload::Phase> phases;
  int64_t duration_us = 0;                     // scheduled length of the run
  double wall_s = 0;                           // measured, including the final drain
  std::vector<Completion> completions;         // in scheduled order
  std::vector<std::string> node_ids;           // node ids seen in replies' ServingInfo
  std::vector<std::string> poll_targets;       // addresses polled with GetStats
  std::vector<NodeSample> samples;             // in time order
  std::map<int32_t, std::string> first_error;  // code -> first message seen
};

struct LatencyPercentiles {
  int64_t count = 0;
  double mean_us = 0;
  int64_t p50_us = 0;
  int64_t p90_us = 0;
  int64_t p99_us = 0;
  int64_t p999_us = 0;
  int64_t max_us = 0;
};

// Exact percentiles by nearest rank (the smallest value with at least q of the values at or
// below it) over `latencies_us`, which is sorted in place.
LatencyPercentiles Percentiles(std::vector<int64_t>& latencies_us);
// Nearest-rank quantile of sorted values; 0 when empty.
int64_t NearestRank(absl::Span<const int64_t> sorted, double q);

// Per node, over a slice of the run. Reply-based figures count only this run's requests;
// GetStats-based ones are the node's own counters (all traffic the node saw meanwhile).
struct NodeSummary {
  std::string node_id;
  int64_t replies = 0;             // OK replies served by this node
  double kv_token_hit_ratio = -1;  // cached / (cached + computed) history tokens; -1: no data
  double emb_hit_rate = -1;        // hits / (hits + misses); -1: no data
  // From GetStats polls (-1: no poll data).
  double split_first = -1;
  double split_last = -1;
  double split_min = -1;
  double split_max = -1;
  double node_kv_token_hit_ratio = -1;
  double node_emb_hit_rate = -1;
  // The node's split controller (GetStats' control): its policy at the last poll, and its
  // decisions and reversals between the same two polls as the counters above (-1: no poll data).
  std::string control_policy;
  int64_t control_decisions = -1;
  int64_t control_reversals = -1;
};

struct Summary {
  std::string name;  // "overall" or the phase's name
  double duration_s = 0;
  int64_t scheduled = 0;  // requests due (sent + dropped)
  int64_t sent = 0;
  int64_t ok = 0;
  int64_t dropped = 0;
  int64_t errors = 0;  // every non-OK outcome, dropped included
  std::map<std::string, int64_t> errors_by_code;
  LatencyPercentiles latency;  // of OK requests
  int64_t ok_within_slo = 0;
  double slo_attainment = 0;    // ok_within_slo / scheduled (errors and drops are misses)
  double goodput_per_s = 0;     // ok_within_slo / duration_s
  double throughput_per_s = 0;  // ok / duration_s
  double offered_per_s = 0;     // scheduled / duration_s
  int64_t max_send_lag_us = 0;
  int64_t p99_send_lag_us = 0;
  double kv_token_hit_ratio = -1;  // over all replies (-1: replies carry no serving info)
  double emb_hit_rate = -1;
  std::vector<NodeSummary> nodes;
};

// Summarises the completions scheduled in [from_us, to_us) and the node polls in that window.
Summary Summarize(const RunResult& run, const std::string& name, int64_t from_us, int64_t to_us,
                  double slo_us);

// One row per second of the schedule.
struct SecondRow {
  int64_t t_s = 0;
  int32_t phase = 0;
  int64_t scheduled = 0;
  int64_t sent = 0;
  int64_t ok = 0;
  int64_t errors = 0;
  int64_t dropped = 0;
  int64_t ok_within_slo = 0;
  int64_t p50_us = 0;  // of OK requests scheduled in this second (0 when none)
  int64_t p99_us = 0;
  // Per node (same order as Report::node_ids): split from the last poll in this second, and the
  // reply-based hit ratios of this second (-1: no data).
  std::vector<double> split;
  std::vector<double> kv_token_hit_ratio;
  std::vector<double> emb_hit_rate;
};

struct Report {
  Summary overall;
  std::vector<Summary> phases;
  std::vector<std::string> node_ids;  // replies' node ids, then polled nodes not seen in replies
  std::vector<SecondRow> series;
  double slo_ms = 0;
  double wall_s = 0;
  std::map<int32_t, std::string> first_error;
  std::vector<std::string> poll_errors;  // one line per polled target that never answered
};

Report BuildReport(const RunResult& run, double slo_ms);

}  // namespace helm::bench
