#include "bench/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"

namespace helm::bench {
namespace {

double Ratio(double num, double den) { return den > 0 ? num / den : -1.0; }

struct HitSums {
  int64_t replies = 0;
  int64_t cached = 0;
  int64_t computed = 0;
  int64_t emb_hits = 0;
  int64_t emb_misses = 0;

  void Add(const Completion& c) {
    ++replies;
    cached += c.info.cached_tokens;
    computed += c.info.computed_tokens;
    emb_hits += c.info.emb_hits;
    emb_misses += c.info.emb_misses;
  }
  double kv() const {
    return Ratio(static_cast<double>(cached), static_cast<double>(cached + computed));
  }
  double emb() const {
    return Ratio(static_cast<double>(emb_hits), static_cast<double>(emb_hits + emb_misses));
  }
};

// The node id a polled target answered with, else its address.
std::vector<std::string> TargetIds(const RunResult& run) {
  std::vector<std::string> ids = run.poll_targets;
  std::vector<bool> known(ids.size(), false);
  for (const NodeSample& s : run.samples) {
    if (s.ok && !known[s.target] && !s.stats.node_id().empty()) {
      ids[s.target] = s.stats.node_id();
      known[s.target] = true;
    }
  }
  return ids;
}

std::vector<std::string> AllNodeIds(const RunResult& run) {
  std::vector<std::string> ids = run.node_ids;
  for (const std::string& id : TargetIds(run)) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

int IndexOf(const std::vector<std::string>& ids, const std::string& id) {
  auto it = std::find(ids.begin(), ids.end(), id);
  return it == ids.end() ? -1 : static_cast<int>(it - ids.begin());
}

}  // namespace

std::string CodeName(int32_t code) {
  if (code == kDroppedCode) return "DROPPED";
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

int64_t NearestRank(absl::Span<const int64_t> sorted, double q) {
  if (sorted.empty()) return 0;
  const double n = static_cast<double>(sorted.size());
  int64_t rank = static_cast<int64_t>(std::ceil(q * n - 1e-9));
  rank = std::clamp<int64_t>(rank, 1, static_cast<int64_t>(sorted.size()));
  return sorted[rank - 1];
}

LatencyPercentiles Percentiles(std::vector<int64_t>& latencies_us) {
  LatencyPercentiles p;
  p.count = static_cast<int64_t>(latencies_us.size());
  if (latencies_us.empty()) return p;
  std::sort(latencies_us.begin(), latencies_us.end());
  double sum = 0;
  for (int64_t v : latencies_us) sum += static_cast<double>(v);
  p.mean_us = sum / static_cast<double>(latencies_us.size());
  p.p50_us = NearestRank(latencies_us, 0.50);
  p.p90_us = NearestRank(latencies_us, 0.90);
  p.p99_us = NearestRank(latencies_us, 0.99);
  p.p999_us = NearestRank(latencies_us, 0.999);
  p.max_us = latencies_us.back();
  return p;
}

Summary Summarize(const RunResult& run, const std::string& name, int64_t from_us, int64_t to_us,
                  double slo_us) {
  Summary s;
  s.name = name;
  const int64_t end_us = std::min(to_us, run.duration_us);
  s.duration_s = static_cast<double>(std::max<int64_t>(0, end_us - from_us)) * 1e-6;
  std::vector<int64_t> ok_latencies;
  std::vector<int64_t> send_lags;
  std::vector<HitSums> per_node(run.node_ids.size());
  HitSums all;
  for (const Completion& c : run.completions) {
    if (c.scheduled_us < from_us || c.scheduled_us >= to_us) continue;
    ++s.scheduled;
    if (c.code == kDroppedCode) {
      ++s.dropped;
    } else {
      ++s.sent;
      send_lags.push_back(c.send_lag_us);
    }
    if (c.code != 0) {
      ++s.errors;
      ++s.errors_by_code[CodeName(c.code)];
      continue;
    }
    ++s.ok;
    ok_latencies.push_back(c.latency_us);
    if (static_cast<double>(c.latency_us) <= slo_us) ++s.ok_within_slo;
    all.Add(c);
    if (c.node >= 0 && c.node < static_cast<int32_t>(per_node.size())) per_node[c.node].Add(c);
  }
  s.latency = Percentiles(ok_latencies);
  std::sort(send_lags.begin(), send_lags.end());
  s.max_send_lag_us = send_lags.empty() ? 0 : send_lags.back();
  s.p99_send_lag_us = NearestRank(send_lags, 0.99);
  s.slo_attainment = s.scheduled > 0 ? static_cast<double>(s.ok_within_slo) / s.scheduled : 0.0;
  if (s.duration_s > 0) {
    s.goodput_per_s = static_cast<double>(s.ok_within_slo) / s.duration_s;
    s.throughput_per_s = static_cast<double>(s.ok) / s.duration_s;
    s.offered_per_s = static_cast<double>(s.scheduled) / s.duration_s;
  }
  s.kv_token_hit_ratio = all.kv();
  s.emb_hit_rate = all.emb();

  // Per node: replies, then the node's own counters between the last poll at or before the start
  // of the window and the last poll at or before its end.
  const std::vector<std::string> ids = AllNodeIds(run);
  const std::vector<std::string> target_ids = TargetIds(run);
  s.nodes.resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    NodeSummary& node = s.nodes[i];
    node.node_id = ids[i];
    const int reply_index = IndexOf(run.node_ids, ids[i]);
    if (reply_index >= 0) {
      node.replies = per_node[reply_index].replies;
      node.kv_token_hit_ratio = per_node[reply_index].kv();
      node.emb_hit_rate = per_node[reply_index].emb();
    }
    const NodeSample* base = nullptr;
    const NodeSample* last = nullptr;
    for (const NodeSample& sample : run.samples) {
      if (!sample.ok || target_ids[sample.target] != ids[i]) continue;
      if (sample.t_us <= from_us || base == nullptr) base = &sample;
      if (sample.t_us <= to_us) {
        last = &sample;
        const double split = sample.stats.committed_split();
        if (sample.t_us >= from_us) {
          node.split_min = node.split_min < 0 ? split : std::min(node.split_min, split);
          node.split_max = std::max(node.split_max, split);
        }
      }
    }
    if (base != nullptr && last != nullptr) {
      node.split_first = base->stats.committed_split();
      node.split_last = last->stats.committed_split();
      if (node.split_min < 0) node.split_min = node.split_max = node.split_last;
      const v1::CacheStats& a = base->stats.total();
      const v1::CacheStats& b = last->stats.total();
      node.node_kv_token_hit_ratio =
          Ratio(static_cast<double>(b.kv_hit_tokens() - a.kv_hit_tokens()),
                static_cast<double>(b.kv_requested_tokens() - a.kv_requested_tokens()));
      const double hits = static_cast<double>(b.emb_hits() - a.emb_hits());
      const double misses = static_cast<double>(b.emb_misses() - a.emb_misses());
      node.node_emb_hit_rate = Ratio(hits, hits + misses);
      node.control_policy = last->stats.control().policy();
      node.control_decisions =
          last->stats.control().decisions() - base->stats.control().decisions();
      node.control_reversals =
          last->stats.control().reversals() - base->stats.control().reversals();
    }
  }
  return s;
}

Report BuildReport(const RunResult& run, double slo_ms) {
  Report report;
  report.slo_ms = slo_ms;
  report.wall_s = run.wall_s;
  report.first_error = run.first_error;
  const double slo_us = slo_ms * 1000.0;
  constexpr int64_t kOpenEnd = std::numeric_limits<int64_t>::max();
  report.overall = Summarize(run, "overall", 0, kOpenEnd, slo_us);
  for (size_t i = 0; i < run.phases.size(); ++i) {
    const workload::Phase& phase = run.phases[i];
    const bool last = i + 1 == run.phases.size();
    report.phases.push_back(
        Summarize(run, phase.name, phase.start_us, last ? kOpenEnd : phase.end_us(), slo_us));
  }
  report.node_ids = AllNodeIds(run);

  const std::vector<std::string> target_ids = TargetIds(run);
  for (size_t t = 0; t < run.poll_targets.size(); ++t) {
    bool answered = false;
    std::string error;
    for (const NodeSample& sample : run.samples) {
      if (sample.target != static_cast<int32_t>(t)) continue;
      answered |= sample.ok;
      if (!sample.ok && error.empty()) error = sample.error;
    }
    if (!answered) report.poll_errors.push_back(run.poll_targets[t] + ": " + error);
  }

  const size_t num_nodes = report.node_ids.size();
  const int64_t seconds = (run.duration_us + 999'999) / 1'000'000;
  report.series.resize(static_cast<size_t>(seconds));
  std::vector<std::vector<int64_t>> latencies(static_cast<size_t>(seconds));
  std::vector<std::vector<HitSums>> hits(static_cast<size_t>(seconds),
                                         std::vector<HitSums>(num_nodes));
  for (int64_t t = 0; t < seconds; ++t) {
    SecondRow& row = report.series[t];
    row.t_s = t;
    for (size_t p = 0; p < run.phases.size(); ++p) {
      if (t * 1'000'000 >= run.phases[p].start_us) row.phase = static_cast<int32_t>(p);
    }
    row.split.assign(num_nodes, -1.0);
    row.kv_token_hit_ratio.assign(num_nodes, -1.0);
    row.emb_hit_rate.assign(num_nodes, -1.0);
  }
  for (const Completion& c : run.completions) {
    const int64_t t = c.scheduled_us / 1'000'000;
    if (t < 0 || t >= seconds) continue;
    SecondRow& row = report.series[t];
    ++row.scheduled;
    if (c.code == kDroppedCode) {
      ++row.dropped;
    } else {
      ++row.sent;
    }
    if (c.code != 0) {
      ++row.errors;
      continue;
    }
    ++row.ok;
    if (static_cast<double>(c.latency_us) <= slo_us) ++row.ok_within_slo;
    latencies[t].push_back(c.latency_us);
    if (c.node >= 0 && c.node < static_cast<int32_t>(run.node_ids.size())) {
      const int index = IndexOf(report.node_ids, run.node_ids[c.node]);
      if (index >= 0) hits[t][index].Add(c);
    }
  }
  for (int64_t t = 0; t < seconds; ++t) {
    SecondRow& row = report.series[t];
    std::sort(latencies[t].begin(), latencies[t].end());
    row.p50_us = NearestRank(latencies[t], 0.50);
    row.p99_us = NearestRank(latencies[t], 0.99);
    for (size_t n = 0; n < num_nodes; ++n) {
      row.kv_token_hit_ratio[n] = hits[t][n].kv();
      row.emb_hit_rate[n] = hits[t][n].emb();
    }
  }
  for (const NodeSample& sample : run.samples) {
    // The baseline poll just before the start belongs to second 0.
    const int64_t t = std::max<int64_t>(0, sample.t_us) / 1'000'000;
    if (!sample.ok || t >= seconds) continue;
    const int index = IndexOf(report.node_ids, target_ids[sample.target]);
    if (index >= 0) report.series[t].split[index] = sample.stats.committed_split();
  }
  return report;
}

}  // namespace helm::bench
