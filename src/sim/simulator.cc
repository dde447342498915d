#include "helm/sim/simulator.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "helm/common/clock.h"
#include "helm/common/hash.h"
#include "helm/common/status.h"
#include "helm/control/split_controller.h"
#include "helm/emb/emb_cache.h"
#include "helm/emb/id_sampler.h"
#include "helm/route/cluster_state.h"
#include "helm/route/policy.h"
#include "helm/serve/audit_log.h"
#include "helm/serve/node_core.h"
#include "helm/sim/sweep.h"
#include "helm/workload/generator.h"
#include "spdlog/spdlog.h"

namespace helm::sim {
namespace {

// A request with columns of its own (the generator's views go stale at its next request).
struct SimJob : serve::RankJob {
  std::vector<int64_t> items, timestamps_ms, candidates;
  std::vector<int64_t> route_candidates;  // the router's EMB ids, when the EMB caches sample ids
  std::vector<int32_t> actions;
  int64_t arrival_us = 0;
  int32_t surface = 0;  // workload::Request::surface
  int node = -1;        // where it was admitted
  int attempts = 0;
  route::RouteRequest route;
  route::NodeSet tried;
};

enum class EventType : uint8_t { kArrival, kBatchDone, kWake, kPublish, kWindow, kResize };

// helm-node's resizer wakes this often for background prefetch (node_server.cc).
constexpr int64_t kResizeTickUs = 20'000;

struct Event {
  int64_t t_us;
  uint64_t seq;
  EventType type;
  int32_t node;
  int32_t slot;
  bool operator>(const Event& o) const { return t_us != o.t_us ? t_us > o.t_us : seq > o.seq; }
};

// The next uniform draw in [0, 1) of a SplitMix64 stream (53 bits of its next state).
double NextUniform(uint64_t* state) {
  *state = SplitMix64(*state);
  return static_cast<double>(*state >> 11) * 0x1p-53;
}

route::NodeUpdate ToRouteUpdate(const serve::NodeStateUpdate& s) {
  route::NodeUpdate u;
  u.seq = s.seq;
  u.full_snapshot = s.full_snapshot;
  u.load = s.load;
  u.committed_split = s.committed_split;
  u.target_split = s.target_split;
  u.draining = s.draining;
  u.kv_resident_users = s.kv_resident_users;
  u.kv_events.reserve(s.kv_events.size());
  for (const kv::ResidencyEvent& e : s.kv_events) {
    u.kv_events.push_back({.user_id = e.user_id,
                           .cached_tokens = static_cast<int32_t>(e.cached_tokens),
                           .history_start = e.history_start});
  }
  u.emb_summary = s.emb_summary;
  return u;
}

}  // namespace

struct Simulator::Impl {
  struct Node {
    std::unique_ptr<serve::NodeCore> core;
    std::vector<std::unique_ptr<serve::Worker>> workers;
    std::vector<serve::PreparedBatch> slots;
    std::vector<bool> busy;
    int64_t wake_at = serve::kNever;
    int64_t busy_us = 0;
    int64_t replies = 0, cached_tokens = 0, history_tokens = 0, emb_hits = 0, emb_lookups = 0;
    double split_first = 0;
    PcieQueue pcie{1, 1};
    int64_t prefetch_bytes_seen = 0;
    // The window's EMB miss fetches (host gather and transfer, queueing on the link included), in
    // simulated us: its controller sees them as EmbStats::fetch_ns, not the cache's wall clock.
    double window_fetch_us = 0;
    // Draws of the calibration's service-time spread (CostProfile::ServiceRatio), one a batch.
    uint64_t spread_state = 0;
  };

  config::Config config;
  FakeClock clock{0};
  CostModel cost;
  std::unique_ptr<workload::Generator> generator;
  std::unique_ptr<route::Policy> policy;
  route::ClusterState cluster;
  std::vector<Node> nodes;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events;
  uint64_t seq = 0;
  std::vector<std::unique_ptr<SimJob>> free_jobs;
  int64_t end_us = 0;
  int64_t measure_from_us = 0;  // the end of the warm-up
  int64_t row_bytes = 0;
  emb::IdSampler emb_sampler;  // simulator.emb_sample_rate (the router sees sampled candidates)
  // simulator.rpc_overhead_us: the way to the node (before routing) and the way back.
  int64_t rpc_there_us = 0, rpc_return_us = 0;
  // simulator.transport_path: each answer's time outside the nodes is drawn from these quantiles
  // (on this stream); rpc_there_us is then half the smallest.
  std::vector<std::pair<double, double>> outside_quantiles;
  uint64_t outside_state = 0;
  int64_t outstanding = 0;
  int64_t publish_us = 0, window_us = 0, summary_every = 1, publishes = 0;
  int64_t next_second_us = 1'000'000;
  const SimulatorHooks* hooks = nullptr;
  bool oracle = false;
  std::vector<double> oracle_candidates;
  std::unique_ptr<serve::ControlAuditLog> audit;  // control.audit_log; null: none

  // Results.
  SimResult result;
  LatencyHistogram second_latency;
  SimSecond current;
  int64_t second_cached = 0, second_history = 0, second_emb_hits = 0, second_emb_lookups = 0;
  SimWindow window;  // the statistics window in progress
  LatencyHistogram window_latency;

  explicit Impl(CostModel c) : cost(std::move(c)) {}

  void Schedule(int64_t t_us, EventType type, int node = -1, int slot = -1) {
    events.push(Event{t_us, seq++, type, node, slot});
  }

  SimJob* NewJob() {
    if (free_jobs.empty()) return new SimJob();
    SimJob* job = free_jobs.back().release();
    free_jobs.pop_back();
    return job;
  }
  void Recycle(SimJob* job) { free_jobs.emplace_back(job); }

  void OnAnswer(SimJob* job, const absl::Status& status) {
    const int64_t now = clock.NowMicros();
    if (job->node >= 0) cluster.OnComplete(job->node);
    --outstanding;
    if (status.ok()) {
      const serve::RankOutput& out = job->output;
      Node& n = nodes[job->node];
      cluster.NoteResidency(job->node, job->route.user_id, out.resident_tokens,
                            job->route.history_start);
      int64_t return_us = rpc_return_us;
      if (!outside_quantiles.empty()) {
        return_us =
            std::llround(QuantileAt(outside_quantiles, NextUniform(&outside_state))) - rpc_there_us;
      }
      const int64_t latency = now - job->arrival_us + return_us;
      second_latency.Record(latency);
      window_latency.Record(latency);
      ++window.answers;
      ++current.completions;
      const int64_t history = out.cached_tokens + out.computed_tokens;
      const int64_t lookups = out.emb_hits + out.emb_misses;
      if (job->arrival_us >= measure_from_us) {
        result.latency_us.Record(latency);
        SurfaceResult& surface = result.surfaces[job->surface];
        surface.latency_us.Record(latency);
        ++surface.completions;
        result.node_latency_us.Record(latency - rpc_there_us - return_us);
        ++result.completions;
        if (latency <= static_cast<int64_t>(config.workload.slo_ms * 1000)) {
          ++result.within_slo;
          ++surface.within_slo;
        }
        ++n.replies;
        n.cached_tokens += out.cached_tokens;
        n.history_tokens += history;
        n.emb_hits += out.emb_hits;
        n.emb_lookups += lookups;
      }
      second_cached += out.cached_tokens;
      second_history += history;
      second_emb_hits += out.emb_hits;
      second_emb_lookups += lookups;
    } else {
      if (job->arrival_us >= measure_from_us) {
        ++result.failures;
        ++result.surfaces[job->surface].failures;
      }
      ++current.failures;
    }
    Recycle(job);
  }

  // Routes `job` like helm-router: the policy's choice, then the next best on refusal.
  void Route(SimJob* job) {
    while (true) {
      const route::RouteDecision d = policy->Decide(job->route, cluster, job->tried);
      if (d.node < 0 || job->attempts >= config.router.max_attempts) {
        job->node = -1;
        job->done(job, absl::UnavailableError("no node admitted the request"));
        return;
      }
      ++job->attempts;
      job->tried.Insert(d.node);
      cluster.OnDispatch(d.node);
      if (d.new_user) cluster.OnPlaced(d.node);
      if (nodes[d.node].core->Submit(job).ok()) {
        job->node = d.node;
        TryStart(d.node);
        return;
      }
      cluster.OnComplete(d.node);
    }
  }

  void TryStart(int n) {
    Node& node = nodes[n];
    std::vector<serve::QueuedJob*> batch;
    for (size_t slot = 0; slot < node.busy.size(); ++slot) {
      if (node.busy[slot]) continue;
      const int64_t next = node.core->queue().TakeReady(&batch);
      if (batch.empty()) {
        if (next != serve::kNever && next < node.wake_at) {
          node.wake_at = next;
          Schedule(next, EventType::kWake, n);
        }
        return;
      }
      serve::PreparedBatch prepared = node.core->BeginBatch(batch);
      BatchWork work;
      for (serve::RankJob* job : prepared.jobs) {
        const serve::Prepared& p = job->prepared;
        work.requests.push_back(
            RequestWork{.suffix_tokens = p.suffix_tokens(),
                        .cached_tokens = p.cached_tokens(),
                        .candidates = p.num_candidates(),
                        .emb_rows_gathered = p.suffix_tokens() + p.num_candidates(),
                        .emb_miss_bytes = p.emb_misses() * row_bytes});
      }
      int64_t service_us = 0;
      if (!work.requests.empty()) {
        // EMB misses are gathered on the host (when the profile models it), then go over the
        // node's PCIe link, after whatever background refill is on it.
        const CostBreakdown b = cost.BatchCost(work);
        int64_t miss_bytes = 0;
        for (const RequestWork& r : work.requests) miss_bytes += r.emb_miss_bytes;
        const double now = static_cast<double>(clock.NowMicros());
        const double pcie_us =
            miss_bytes > 0 ? node.pcie.SubmitForeground(now + b.host_gather_us, miss_bytes) - now
                           : 0.0;
        node.window_fetch_us += pcie_us;
        // The calibration's spread of measured service times around the model's, drawn per batch.
        double spread = 1.0;
        if (!cost.profile().service_ratio_quantiles.empty()) {
          spread = cost.profile().ServiceRatio(NextUniform(&node.spread_state));
        }
        service_us =
            std::max<int64_t>(1, std::llround((b.total_us() - b.miss_us()) * spread + pcie_us));
      }
      node.slots[slot] = std::move(prepared);
      node.busy[slot] = true;
      node.busy_us += service_us;
      Schedule(clock.NowMicros() + service_us, EventType::kBatchDone, n, static_cast<int>(slot));
    }
  }

  void CloseSecond(int64_t t_s) {
    current.t_s = t_s;
    current.p50_ms = second_latency.Quantile(0.5) / 1000.0;
    current.p99_ms = second_latency.Quantile(0.99) / 1000.0;
    current.kv_token_hit = second_history > 0 ? double(second_cached) / second_history : 0;
    current.emb_hit = second_emb_lookups > 0 ? double(second_emb_hits) / second_emb_lookups : 0;
    for (Node& n : nodes)
      current.split.push_back(n.core->engine().pool().Snapshot().committed_split);
    result.seconds.push_back(std::move(current));
    current = SimSecond();
    second_latency.Reset();
    second_cached = second_history = second_emb_hits = second_emb_lookups = 0;
  }

  // Ends the statistics window at `t_us`: records it, closes every node's window and sets the
  // next targets (each node's controller, or the oracle's replays).
  void OnWindow(int64_t t_us) {
    window.end_us = t_us;
    window.p99_ms = window_latency.Quantile(0.99) / 1000.0;
    result.windows.push_back(std::move(window));
    window = SimWindow();
    window_latency.Reset();
    std::vector<serve::StatsWindow> closed;
    closed.reserve(nodes.size());
    for (Node& n : nodes) {
      closed.push_back(n.core->CloseWindow());
      closed.back().emb.fetch_ns = std::llround(n.window_fetch_us * 1e3);
      n.window_fetch_us = 0;
    }
    Schedule(t_us + window_us, EventType::kWindow);
    if (!oracle) {
      for (size_t i = 0; i < nodes.size(); ++i) {
        serve::ControlDecision decision;
        nodes[i].core->Control(closed[i], &decision);
        if (audit != nullptr && decision.decided) WriteAudit(i, decision, closed[i]);
      }
    } else if (t_us >= measure_from_us) {  // the oracle holds the initial split while warming up
      const double best = OracleChoose(t_us + window_us);
      for (Node& n : nodes) n.core->SetTargetSplit(best);
    }
    for (Node& n : nodes) window.target.push_back(n.core->engine().pool().Snapshot().target_split);
    OnResizeTick();  // a new target starts moving at once, as helm-node's resizer wakes on it
  }

  // control.audit_log: the decision's line, its time the simulated clock's. A failed write is
  // reported once and ends the log, not the run.
  void WriteAudit(size_t node, const serve::ControlDecision& decision,
                  const serve::StatsWindow& closed) {
    const std::string line =
        serve::ControlAuditLine(nodes[node].core->config().node.id, config.control.policy,
                                decision.time_us / 1000, decision, closed);
    if (absl::Status written = audit->Append(line); !written.ok()) {
      spdlog::warn("{}; no more decisions are logged", written.ToString());
      audit.reset();
    }
  }

  // Resize steps back to back on every node with a move pending, and its prefetch traffic.
  void OnResizeTick() {
    const double now = static_cast<double>(clock.NowMicros());
    for (Node& n : nodes) {
      for (int i = 0; i < 1000; ++i) {
        const pool::StepResult step = n.core->StepResize();
        if (step.idle || step.blocked) break;
      }
      const int64_t prefetched = n.core->engine().pool().stats().prefetch_bytes;
      if (prefetched > n.prefetch_bytes_seen) {
        n.pcie.SubmitBackground(now, prefetched - n.prefetch_bytes_seen);
        n.prefetch_bytes_seen = prefetched;
      }
    }
  }

  // The oracle: the candidate split with the best P99 over the window ending at the event at
  // `window_end_us`, each replayed by a copy of this process from the current state.
  double OracleChoose(int64_t window_end_us) {
    const double current = nodes.front().core->engine().pool().Snapshot().target_split;
    std::vector<double> p99(oracle_candidates.size(), -1);
    for (size_t c = 0; c < oracle_candidates.size(); ++c) {
      int fds[2];
      if (pipe(fds) != 0) continue;
      const pid_t pid = fork();
      if (pid == 0) {  // the copy: replay the window at this candidate, report its P99
        close(fds[0]);
        hooks = nullptr;
        oracle = false;  // a replay does not recurse
        for (Node& n : nodes) n.core->SetTargetSplit(oracle_candidates[c]);
        OnResizeTick();
        RunUntil(window_end_us);
        const double value = window_latency.Quantile(0.99) / 1000.0;
        const ssize_t written = write(fds[1], &value, sizeof(value));
        _exit(written == sizeof(value) ? 0 : 1);
      }
      close(fds[1]);
      if (pid > 0) {
        double value = -1;
        if (read(fds[0], &value, sizeof(value)) == sizeof(value)) p99[c] = value;
        int status = 0;
        waitpid(pid, &status, 0);
      }
      close(fds[0]);
    }
    size_t best = 0;
    bool found = false;
    for (size_t c = 0; c < p99.size(); ++c) {
      if (p99[c] < 0) continue;
      const bool better =
          !found || p99[c] < p99[best] - 1e-9 ||
          (std::abs(p99[c] - p99[best]) <= 1e-9 &&
           std::abs(oracle_candidates[c] - current) < std::abs(oracle_candidates[best] - current));
      if (better) best = c, found = true;
    }
    window.candidates = oracle_candidates;
    window.candidate_p99_ms = p99;
    return found ? oracle_candidates[best] : current;
  }

  // Processes events in time order until the statistics-window event at `stop_window_us` (not
  // processed; serve::kNever: to the end of the run).
  void RunUntil(int64_t stop_window_us) {
    while (!events.empty()) {
      const Event e = events.top();
      if (e.type == EventType::kWindow && e.t_us == stop_window_us) return;
      // Only periodic events remain once the workload ended and every request was answered.
      if (pending_arrival == nullptr && outstanding == 0 &&
          (e.type == EventType::kPublish || e.type == EventType::kWindow ||
           e.type == EventType::kResize)) {
        return;
      }
      events.pop();
      while (e.t_us >= next_second_us) {
        CloseSecond(next_second_us / 1'000'000 - 1);
        if (hooks != nullptr && hooks->progress) {
          hooks->progress(next_second_us / 1e6, result.completions);
        }
        next_second_us += 1'000'000;
      }
      clock.SetMicros(e.t_us);
      Process(e);
    }
  }

  void Process(const Event& e) {
    switch (e.type) {
      case EventType::kArrival: {
        SimJob* job = pending_arrival;
        pending_arrival = nullptr;
        if (job->arrival_us >= measure_from_us) {
          ++result.arrivals;
          ++result.surfaces[job->surface].arrivals;
        }
        ++current.arrivals;
        ++outstanding;
        NextArrival();
        Route(job);
        break;
      }
      case EventType::kBatchDone: {
        Node& node = nodes[e.node];
        node.busy[e.slot] = false;
        node.core->CompleteBatch(*node.workers[e.slot], node.slots[e.slot]);
        TryStart(e.node);
        break;
      }
      case EventType::kWake: {
        Node& node = nodes[e.node];
        if (node.wake_at == e.t_us) node.wake_at = serve::kNever;
        TryStart(e.node);
        break;
      }
      case EventType::kPublish: {
        const bool summary = ++publishes % summary_every == 0;
        for (Node& node : nodes) node.core->Publish(summary);
        Schedule(e.t_us + publish_us, EventType::kPublish);
        break;
      }
      case EventType::kWindow:
        OnWindow(e.t_us);
        break;
      case EventType::kResize:
        OnResizeTick();
        Schedule(e.t_us + kResizeTickUs, EventType::kResize);
        break;
    }
  }

  bool NextArrival() {
    workload::Request r;
    if (!generator->Next(&r) || r.arrival_us >= end_us) return false;
    SimJob* job = NewJob();
    job->items.assign(r.history_item_ids.begin(), r.history_item_ids.end());
    job->actions.assign(r.history_actions.begin(), r.history_actions.end());
    job->timestamps_ms.assign(r.history_timestamps_ms.begin(), r.history_timestamps_ms.end());
    job->candidates.assign(r.candidate_item_ids.begin(), r.candidate_item_ids.end());
    job->input = serve::RankInput();
    job->input.user_id = r.user_id;
    job->input.history_item_ids = job->items;
    job->input.history_actions = job->actions;
    job->input.history_timestamps_ms = job->timestamps_ms;
    job->input.candidate_item_ids = job->candidates;
    job->input.top_k = config.workload.top_k;
    job->output = serve::RankOutput();
    job->arrival_us = r.arrival_us;
    job->surface = r.surface;
    job->deadline_us = r.arrival_us + int64_t{config.workload.deadline_ms} * 1000;
    job->node = -1;
    job->attempts = 0;
    job->tried.Clear();
    job->route = route::RouteRequest();
    job->route.user_id = r.user_id;
    job->route.history_length = static_cast<int32_t>(job->items.size());
    if (!job->items.empty()) {
      job->route.history_start =
          HistoryStartFingerprint(job->items[0], job->actions[0], job->timestamps_ms[0]);
    }
    job->route.candidate_ids = job->candidates.data();
    job->route.num_candidates = static_cast<int32_t>(job->candidates.size());
    if (!emb_sampler.all()) {
      // The candidates the router would read that the sampling caches track: every other one
      // would look absent from every node. Giving the router the whole sample instead would
      // route on exactly the ids whose hits stand for all the others, and bias their hit ratio.
      job->route_candidates.clear();
      route::ForEachEmbSampledCandidate(static_cast<int32_t>(job->candidates.size()),
                                        config.router.emb_sample, [&](int32_t i) {
                                          if (emb_sampler.Contains(job->candidates[i])) {
                                            job->route_candidates.push_back(job->candidates[i]);
                                          }
                                        });
      job->route.emb_ids = job->route_candidates.data();
      job->route.num_emb_ids = static_cast<int32_t>(job->route_candidates.size());
    }
    job->done = [this](serve::RankJob* j, const absl::Status& s) {
      OnAnswer(static_cast<SimJob*>(j), s);
    };
    Schedule(r.arrival_us + rpc_there_us, EventType::kArrival, -1, -1);
    pending_arrival = job;
    return true;
  }
  SimJob* pending_arrival = nullptr;
};

absl::StatusOr<CostModel> CostModelForConfig(const config::Config& config) {
  const SimulatorOptions& s = config.simulator;
  absl::StatusOr<CostProfile> profile =
      s.calibration_path.empty() ? ProfileByName(s.gpu) : LoadCalibration(s.calibration_path);
  if (!profile.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        s.calibration_path.empty() ? "simulator.gpu: " : "simulator.calibration_path: ",
        profile.status().message()));
  }
  if (s.host_gather_bytes_per_s > 0) profile->host_gather_bytes_per_s = s.host_gather_bytes_per_s;
  HELM_ASSIGN_OR_RETURN(model::ModelDims dims,
                        model::DimsFromOptions(config.model, config.emb, config.kv));
  return CostModel::Create(dims, *profile, config.model.candidate_microbatch);
}

absl::StatusOr<std::unique_ptr<Simulator>> Simulator::Create(const config::Config& input) {
  config::Config config = input;
  config.pool.backend = "none";  // payload-free: the caches decide, the cost model times
  if (const std::string error = config::FitWorkloadToNodes(config); !error.empty()) {
    return absl::InvalidArgumentError(error);
  }
  const SimulatorOptions& s = config.simulator;
  HELM_ASSIGN_OR_RETURN(CostModel cost, CostModelForConfig(config));
  const model::ModelDims dims = cost.dims();
  HELM_ASSIGN_OR_RETURN(config.workload.rate_per_s, OfferedRate(config));
  const int64_t warmup_us = static_cast<int64_t>(std::llround(s.warmup_s * 1e6));
  if (warmup_us > 0) {
    // A steady phase first, then the workload's own phases (or its regime for its duration).
    const std::string rest =
        config.workload.phases.empty()
            ? absl::StrCat(config.workload.regime, ":", config.workload.duration_s)
            : config.workload.phases;
    config.workload.phases = absl::StrCat("steady:", s.warmup_s, ",", rest);
  }
  auto impl = std::make_unique<Impl>(std::move(cost));
  // One knob for the run: the simulator seed varies the workload.
  config.workload.seed ^= s.seed;
  impl->config = config;
  impl->row_bytes = int64_t{config.emb.dim} * DtypeBytes(dims.emb_dtype);
  emb::EmbOptions sampled_emb = config.emb;
  sampled_emb.sample_rate = s.emb_sample_rate;
  if (emb::EmbCache::SlotBytes(sampled_emb, dims.emb_dtype) > config.pool.chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "simulator.emb_sample_rate: at ", s.emb_sample_rate, " a sampled row's slot takes ",
        impl->row_bytes, " / ", s.emb_sample_rate, " bytes, more than pool.chunk_bytes (",
        config.pool.chunk_bytes, "); raise the rate"));
  }
  impl->emb_sampler = emb::IdSampler(s.emb_sample_rate, s.seed);
  impl->rpc_there_us = static_cast<int64_t>(s.rpc_overhead_us / 2);
  impl->rpc_return_us = static_cast<int64_t>(s.rpc_overhead_us) - impl->rpc_there_us;
  if (!s.transport_path.empty()) {
    if (s.rpc_overhead_us > 0) {
      return absl::InvalidArgumentError(
          "simulator.transport_path: gives the whole time outside the nodes; set "
          "simulator.rpc_overhead_us to 0 with it");
    }
    absl::StatusOr<std::vector<std::pair<double, double>>> quantiles =
        LoadTransportCalibration(s.transport_path);
    if (!quantiles.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("simulator.transport_path: ", quantiles.status().message()));
    }
    impl->outside_quantiles = *std::move(quantiles);
    impl->rpc_there_us = static_cast<int64_t>(impl->outside_quantiles.front().second / 2);
    impl->outside_state = SplitMix64(config.workload.seed ^ 0x7a5e9ull);
  }
  HELM_ASSIGN_OR_RETURN(impl->generator, workload::Generator::Create(config.workload));
  HELM_ASSIGN_OR_RETURN(impl->policy, route::CreatePolicy(config.router));
  impl->oracle = config.control.policy == "oracle";
  if (!config.control.audit_log.empty() && !impl->oracle && config.control.policy != "static") {
    HELM_ASSIGN_OR_RETURN(impl->audit, serve::ControlAuditLog::Open(config.control.audit_log));
  }
  if (impl->oracle) {
    // The oracle fork()s, perhaps while other threads of the process (a threaded sweep's cells,
    // the trainer's environments) lock their own mutexes. With Abseil's deadlock detection on (as
    // Debian builds it: without NDEBUG), Mutex::Lock goes through a process-wide spinlock, the
    // deadlock graph's; a fork while another thread holds it leaves the child's copy locked for
    // good, and the child hangs at its first Lock. Off for the whole process, here, long before
    // the first fork (after the warm-up).
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
    for (double r = config.pool.r_min; r <= config.pool.r_max + 1e-9;
         r += config.control.oracle_step) {
      impl->oracle_candidates.push_back(std::min(r, config.pool.r_max));
    }
  }
  impl->measure_from_us = warmup_us;
  impl->end_us = std::min<int64_t>(impl->generator->duration_us(),
                                   warmup_us + static_cast<int64_t>(s.duration_s * 1e6));
  Impl* p = impl.get();
  for (int i = 0; i < s.num_nodes; ++i) {
    config::Config node_config = config;
    node_config.node.id = absl::StrCat("node-", i);
    node_config.emb.sample_rate = s.emb_sample_rate;
    node_config.emb.sample_salt = s.seed;
    if (p->oracle) node_config.control.policy = "static";  // the oracle sets the targets
    HELM_ASSIGN_OR_RETURN(auto core, serve::NodeCore::Create(node_config, &p->clock));
    Impl::Node node;
    node.core = std::move(core);
    for (int w = 0; w < config.node.workers; ++w) {
      HELM_ASSIGN_OR_RETURN(auto worker, node.core->NewWorker());
      node.workers.push_back(std::move(worker));
    }
    const double link = p->cost.profile().pcie_bytes_per_s;
    const double budget = config.pool.prefetch_bytes_per_s > 0
                              ? std::min<double>(link, config.pool.prefetch_bytes_per_s)
                              : link;
    node.pcie = PcieQueue(link, budget, p->cost.profile().pcie_latency_us);
    node.slots.resize(config.node.workers);
    node.busy.assign(config.node.workers, false);
    node.split_first = node.core->engine().pool().Snapshot().committed_split;
    node.spread_state = SplitMix64(config.workload.seed ^ (0x5eedull + static_cast<uint64_t>(i)));
    const int index = p->cluster.AddNode(node_config.node.id);
    if (index != i) return absl::InvalidArgumentError("simulator.num_nodes: too many nodes");
    p->cluster.SetHealthy(index, true);
    p->nodes.push_back(std::move(node));
  }
  for (int i = 0; i < s.num_nodes; ++i) {
    p->nodes[i].core->Subscribe([p, i](const serve::NodeStateUpdate& update) {
      p->cluster.ApplyUpdate(i, ToRouteUpdate(update)).IgnoreError();
    });
  }
  return std::unique_ptr<Simulator>(new Simulator(std::move(impl)));
}

Simulator::Simulator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Simulator::~Simulator() = default;

const CostModel& Simulator::cost_model() const { return impl_->cost; }

absl::StatusOr<SimResult> Simulator::Run(const SimulatorHooks& hooks) {
  Impl& m = *impl_;
  const auto wall_start = std::chrono::steady_clock::now();
  m.hooks = &hooks;
  m.publish_us = int64_t{m.config.node.state_publish_interval_ms} * 1000;
  m.window_us = int64_t{m.config.control.interval_ms} * 1000;
  m.summary_every = std::max<int64_t>(1, m.config.node.emb_summary_interval_ms /
                                             std::max(1, m.config.node.state_publish_interval_ms));
  m.result.controller = m.config.control.policy;
  m.result.surfaces.resize(m.config.workload.mix.enabled() ? 2 : 1);
  if (hooks.controller && !m.oracle) {
    for (size_t i = 0; i < m.nodes.size(); ++i) {
      serve::NodeCore& core = *m.nodes[i].core;
      HELM_ASSIGN_OR_RETURN(const control::FeatureScales scales,
                            serve::FeatureScalesForConfig(core.config()));
      core.SetController(hooks.controller(static_cast<int>(i), scales));
    }
  }
  for (Impl::Node& n : m.nodes) {
    m.window.target.push_back(n.core->engine().pool().Snapshot().target_split);
  }
  m.NextArrival();
  m.Schedule(m.publish_us, EventType::kPublish);
  m.Schedule(m.window_us, EventType::kWindow);
  m.Schedule(kResizeTickUs, EventType::kResize);
  m.RunUntil(serve::kNever);
  m.hooks = nullptr;
  int64_t next_second_us = m.next_second_us;
  const int64_t end = std::max<int64_t>(m.clock.NowMicros(), 1);
  if (m.current.arrivals + m.current.completions + m.current.failures > 0) {
    m.CloseSecond(next_second_us / 1'000'000 - 1);
  }
  if (m.window.answers > 0) {  // the last, partial window
    m.window.end_us = end;
    m.window.p99_ms = m.window_latency.Quantile(0.99) / 1000.0;
    m.result.windows.push_back(std::move(m.window));
  }
  SimResult& r = m.result;
  r.warmup_s = m.measure_from_us / 1e6;
  r.simulated_s = std::max<int64_t>(end - m.measure_from_us, 1) / 1e6;
  r.offered_s = std::max<int64_t>(m.end_us - m.measure_from_us, 1) / 1e6;
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  // The cluster's hit ratios: its nodes' measured counters summed.
  int64_t cached = 0, history = 0, emb_hits = 0, emb_lookups = 0;
  for (const Impl::Node& node : m.nodes) {
    cached += node.cached_tokens;
    history += node.history_tokens;
    emb_hits += node.emb_hits;
    emb_lookups += node.emb_lookups;
  }
  r.kv_token_hit = history > 0 ? double(cached) / history : 0;
  r.emb_hit = emb_lookups > 0 ? double(emb_hits) / emb_lookups : 0;
  for (const Impl::Node& node : m.nodes) {
    NodeResult n;
    n.id = node.core->config().node.id;
    n.replies = node.replies;
    n.kv_token_hit = node.history_tokens > 0 ? double(node.cached_tokens) / node.history_tokens : 0;
    n.emb_hit = node.emb_lookups > 0 ? double(node.emb_hits) / node.emb_lookups : 0;
    n.split_first = node.split_first;
    n.split_last = node.core->engine().pool().Snapshot().committed_split;
    n.busy_fraction = double(node.busy_us) / (double(end) * node.busy.size());
    n.reversals = node.core->controller() ? node.core->controller()->reversals() : 0;
    n.pcie_background_bytes = node.pcie.background_bytes();
    n.pcie_foreground_wait_ms = node.pcie.foreground_wait_us() / 1000.0;
    r.nodes.push_back(n);
  }
  return std::move(r);
}

std::string ToJson(const SimResult& r, const config::Config& config) {
  std::string out = "{\n";
  absl::StrAppendFormat(&out,
                        "  \"nodes\": %d,\n  \"profile\": \"%s\",\n  \"policy\": \"%s\",\n"
                        "  \"controller\": \"%s\",\n  \"windows\": %d,\n",
                        config.simulator.num_nodes, config.workload.profile, config.router.policy,
                        r.controller, r.windows.size());
  absl::StrAppendFormat(&out,
                        "  \"warmup_s\": %.6f,\n"
                        "  \"simulated_s\": %.6f,\n  \"offered_s\": %.6f,\n  \"arrivals\": %d,\n"
                        "  \"completions\": %d,\n"
                        "  \"failures\": %d,\n  \"slo_ms\": %.3f,\n  \"slo_attainment\": %.6f,\n"
                        "  \"throughput_per_s\": %.6f,\n  \"goodput_per_s\": %.6f,\n",
                        r.warmup_s, r.simulated_s, r.offered_s, r.arrivals, r.completions,
                        r.failures, config.workload.slo_ms, r.slo_attainment(),
                        r.throughput_per_s(), r.goodput_per_s());
  absl::StrAppendFormat(&out,
                        "  \"latency_ms\": {\"p50\": %.4f, \"p99\": %.4f, \"p999\": %.4f, "
                        "\"mean\": %.4f},\n",
                        r.latency_us.Quantile(0.5) / 1000, r.latency_us.Quantile(0.99) / 1000,
                        r.latency_us.Quantile(0.999) / 1000, r.latency_us.Mean() / 1000);
  absl::StrAppendFormat(&out,
                        "  \"node_latency_ms\": {\"p50\": %.4f, \"p99\": %.4f, \"p999\": %.4f, "
                        "\"mean\": %.4f},\n",
                        r.node_latency_us.Quantile(0.5) / 1000,
                        r.node_latency_us.Quantile(0.99) / 1000,
                        r.node_latency_us.Quantile(0.999) / 1000, r.node_latency_us.Mean() / 1000);
  absl::StrAppendFormat(&out, "  \"kv_token_hit\": %.6f,\n  \"emb_hit\": %.6f,\n  \"per_node\": [",
                        r.kv_token_hit, r.emb_hit);
  for (size_t i = 0; i < r.nodes.size(); ++i) {
    const NodeResult& n = r.nodes[i];
    absl::StrAppendFormat(&out,
                          "%s\n    {\"id\": \"%s\", \"replies\": %d, \"kv_token_hit\": %.6f, "
                          "\"emb_hit\": %.6f, \"split_first\": %.4f, \"split_last\": %.4f, "
                          "\"busy\": %.6f, \"reversals\": %d, \"pcie_background_bytes\": %d, "
                          "\"pcie_foreground_wait_ms\": %.4f}",
                          i == 0 ? "" : ",", n.id, n.replies, n.kv_token_hit, n.emb_hit,
                          n.split_first, n.split_last, n.busy_fraction, n.reversals,
                          n.pcie_background_bytes, n.pcie_foreground_wait_ms);
  }
  out += "\n  ]";
  if (r.surfaces.size() > 1) {  // workload.mix: each surface's own answers
    out += ",\n  \"per_surface\": [";
    for (size_t i = 0; i < r.surfaces.size(); ++i) {
      const SurfaceResult& s = r.surfaces[i];
      absl::StrAppendFormat(&out,
                            "%s\n    {\"surface\": %d, \"arrivals\": %d, \"completions\": %d, "
                            "\"failures\": %d, \"slo_attainment\": %.6f, \"p50_ms\": %.4f, "
                            "\"p99_ms\": %.4f}",
                            i == 0 ? "" : ",", i, s.arrivals, s.completions, s.failures,
                            s.slo_attainment(), s.latency_us.Quantile(0.5) / 1000,
                            s.latency_us.Quantile(0.99) / 1000);
    }
    out += "\n  ]";
  }
  out += "\n}\n";
  return out;
}

double TrackingError(const SimResult& run, const SimResult& oracle) {
  double sum = 0;
  int64_t count = 0;
  const size_t windows = std::min(run.windows.size(), oracle.windows.size());
  const int64_t warmup_us = std::llround(run.warmup_s * 1e6);
  for (size_t w = 0; w < windows; ++w) {
    if (run.windows[w].end_us <= warmup_us) continue;  // a warm-up window (none without one)
    const std::vector<double>& a = run.windows[w].target;
    const std::vector<double>& b = oracle.windows[w].target;
    for (size_t n = 0; n < std::min(a.size(), b.size()); ++n, ++count) sum += std::abs(a[n] - b[n]);
  }
  return count > 0 ? sum / count : 0.0;
}

std::string WindowsCsv(const SimResult& r) {
  std::string out = "end_s,answers,p99_ms";
  const size_t nodes = r.windows.empty() ? 0 : r.windows.front().target.size();
  for (size_t i = 0; i < nodes; ++i) absl::StrAppend(&out, ",target_", i);
  out += "\n";
  for (const SimWindow& w : r.windows) {
    absl::StrAppendFormat(&out, "%.3f,%d,%.4f", w.end_us / 1e6, w.answers, w.p99_ms);
    for (double t : w.target) absl::StrAppendFormat(&out, ",%.4f", t);
    out += "\n";
  }
  return out;
}

std::string ToCsv(const SimResult& r) {
  std::string out = "t_s,arrivals,completions,failures,p50_ms,p99_ms,kv_token_hit,emb_hit";
  const size_t nodes = r.seconds.empty() ? 0 : r.seconds.front().split.size();
  for (size_t i = 0; i < nodes; ++i) absl::StrAppend(&out, ",split_", i);
  out += "\n";
  for (const SimSecond& s : r.seconds) {
    absl::StrAppendFormat(&out, "%d,%d,%d,%d,%.4f,%.4f,%.6f,%.6f", s.t_s, s.arrivals, s.completions,
                          s.failures, s.p50_ms, s.p99_ms, s.kv_token_hit, s.emb_hit);
    for (double split : s.split) absl::StrAppendFormat(&out, ",%.4f", split);
    out += "\n";
  }
  return out;
}

}  // namespace helm::sim
