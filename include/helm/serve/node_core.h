// The node core (DESIGN.md §1, §4, §7): admission, batching, the request path, the statistics
// window, split control and the state the router sees, on one injected Clock, with no thread and
// no protobuf of its own. helm-node's NodeServer wraps it with worker, resizer and publisher
// threads and gRPC; the simulator steps the same core on virtual time.
//
// A request: Submit (bounded queue) -> queue().TakeReady hands out a batch -> RunBatch: jobs whose
// deadline passed are answered DeadlineExceeded (cancelled ones Cancelled), the rest are prepared
// (KV lease, EMB lookup) and checked again right before compute, computed as one forward,
// finished (KV append and commit, top-k) and answered through their done callback.
//
// Thread-safety: all methods are thread-safe. RunBatch runs concurrently on several workers, each
// with its own Worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "helm/common/clock.h"
#include "helm/common/histogram.h"
#include "helm/config/config.h"
#include "helm/control/features.h"
#include "helm/control/split_controller.h"
#include "helm/route/node_update.h"
#include "helm/serve/batch_queue.h"
#include "helm/serve/engine.h"
#include "helm/serve/request.h"
#include "helm/serve/stats_window.h"

namespace helm::serve {

// One Rank request from admission to answer.
struct RankJob : QueuedJob {
  RankInput input;    // validated; its storage outlives the job
  RankOutput output;  // filled before done(OK)
  // Called exactly once with the outcome, after admission succeeded (not when Submit fails).
  std::function<void(RankJob*, const absl::Status&)> done;
  Prepared prepared;  // the core's, between prepare and finish
  // Set (by the edge) once the caller gave up on the job (its call was cancelled); checked where
  // the deadline is, and such a job is answered Cancelled without computing. Not owned; outlives
  // the job. Null: never cancelled.
  const std::atomic<bool>* cancelled = nullptr;
  RequestReuse reuse;  // set when prepared, while the core tracks reuse times
  BatchTotals batch;   // set when computed, while the core tracks reuse times
};

// A batch between NodeCore::BeginBatch and CompleteBatch.
struct PreparedBatch {
  std::vector<RankJob*> jobs;    // prepared, to compute; job->prepared says what each costs
  int64_t start_us = 0;          // when the batch began (Clock micros)
  int64_t compute_start_us = 0;  // when its compute may start (after prepare)
  bool begun = false;            // BeginBatch took at least one job (CompleteBatch clears it)
};

// A node's load, and the EMB hot-set summary the router scores locality with: the router's own
// input types (route/node_update.h), filled here and sent as they are (the simulator) or through
// the state stream's protos (node_server.h).
using NodeLoad = route::NodeLoadUpdate;
using EmbSummary = route::EmbSummaryUpdate;

// The split controller as GetStats, the state stream and metrics show it.
struct ControlStatus {
  std::string policy;  // control.policy
  std::string mode;    // the controller's mode() after its last decision; "static" without one
  bool frozen = false;
  int64_t decisions = 0;    // Decide calls made (control intervals with a controller, not frozen)
  int64_t reversals = 0;    // the controller's reversals()
  int32_t interval_ms = 0;  // control.interval_ms
};

// One control interval's outcome, for the node's audit log.
struct ControlDecision {
  bool decided = false;     // false: no controller (static) or frozen; nothing else is set then
  int64_t time_us = 0;      // Clock micros of the decision
  double old_target = 0;    // the pool's target before ...
  double new_target = 0;    // ... and after (clamped to [r_min, r_max])
  std::string mode;         // the controller's mode() after deciding
  std::string detail_json;  // the controller's LastDecisionJson() (may be empty)
};

// One message of the node's state stream (helm.v1.NodeState without the wire).
struct NodeStateUpdate {
  std::string node_id;
  uint64_t seq = 0;  // increases by one per message, across subscribers
  bool full_snapshot = false;
  NodeLoad load;
  double committed_split = 0;
  double target_split = 0;
  bool draining = false;
  // A snapshot: every resident user. A delta: the residency changes since the last message.
  std::vector<kv::ResidencyEvent> kv_events;
  int64_t kv_resident_users = 0;
  std::optional<EmbSummary> emb_summary;  // set when rebuilt (always in a snapshot)
  ControlStatus control;
};

// The scales the learned controller's features are normalised by (control/features.h), from a
// node's config: control.slo_ms, pool.bytes, the EMB row and K/V token sizes of the model, the
// emulated PCIe rate (pool.pcie_emulation_gbps; 25 GB/s when 0) and node.queue_capacity.
// InvalidArgument naming the key when the model's dims cannot be derived.
absl::StatusOr<control::FeatureScales> FeatureScalesForConfig(const config::Config& config);

class NodeCore {
 public:
  // Builds the engine (pool, caches, model) from `config`. `clock` (not owned) must outlive the
  // core; every time the core reads comes from it.
  static absl::StatusOr<std::unique_ptr<NodeCore>> Create(const config::Config& config,
                                                          Clock* clock);
  ~NodeCore();

  // ---- Requests ---------------------------------------------------------------------------
  // Admits `job` (not owned; lives until done). ResourceExhausted (queue full) or Unavailable
  // (draining, stopped); then done is not called.
  absl::Status Submit(RankJob* job);
  // The admission queue; workers take batches from it (TakeReady, NextReadyUs).
  BatchQueue& queue() { return queue_; }
  // Runs a batch taken from queue() on `worker` and answers every job in it: BeginBatch then
  // CompleteBatch.
  void RunBatch(Worker& worker, absl::Span<QueuedJob* const> batch);
  // The two halves of RunBatch, for a caller that puts time between them (the simulator, whose
  // compute time comes from a cost model). BeginBatch answers the jobs whose deadline passed
  // (before any work, and again right before compute) or whose prepare failed, and prepares the
  // rest (KV lease, EMB lookup); CompleteBatch computes them as one forward (nothing on
  // payload-free storage) and finishes and answers each. Every batch begun must be completed, on
  // any worker.
  PreparedBatch BeginBatch(absl::Span<QueuedJob* const> batch);
  void CompleteBatch(Worker& worker, PreparedBatch& batch);
  // Refuses new requests (Unavailable); queued ones are still computed.
  void StartDraining();
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  // Refuses new requests and answers every queued one Unavailable. Idempotent.
  void Stop();

  // ---- Split control ----------------------------------------------------------------------
  // Sets the target EMB share of the pool (clamped to [r_min, r_max]; returned). Nothing moves
  // until StepResize. Leaves the controller as it is (its next decision may move the target).
  double SetTargetSplit(double emb_share);
  // An operator's split: freezes the controller and sets the target (as SetTargetSplit), both
  // under the control lock, so that a decision being made meanwhile cannot overwrite it. The
  // controller stays frozen until FreezeControl(false).
  double OverrideSplit(double emb_share);
  // One bounded resize step (pool.max_step_bytes of content at most); also runs the background
  // EMB prefetch when no move is pending.
  pool::StepResult StepResize();
  // The node's control loop, once per statistics window (control.interval_ms): the configured
  // split controller (control.policy "heuristic", "helm", ...; none under "static", where only
  // SetTargetSplit moves the split) decides the next target from the window just closed, unless
  // frozen, and the decision is counted. Returns the target split after the decision; fills
  // `decision` (when not null) for the audit log. One control loop calls it; it is thread-safe
  // against every other method.
  double Control(const StatsWindow& window, ControlDecision* decision = nullptr);
  // A frozen controller decides nothing until unfrozen (an operator's SetTargetSplit still works).
  // Takes the control lock: once it returns, no decision made before it lands afterwards.
  void FreezeControl(bool frozen);
  bool control_frozen() const { return control_frozen_.load(std::memory_order_relaxed); }
  // Policy, mode, frozen, decisions and reversals (as of the last decision).
  ControlStatus control_status() const;
  // The configured controller (null under "static"). Thread-compatible: only for the control
  // loop's thread (or when no control loop runs); others read control_status().
  const control::SplitController* controller() const { return controller_.get(); }
  // Replaces the controller (null: none, as under "static"), e.g. the trainer's sampling
  // controller in the simulator (sim/simulator.h SimulatorHooks::controller). Takes the control
  // lock; the next Control call uses it.
  void SetController(std::unique_ptr<control::SplitController> controller);

  // ---- Statistics -------------------------------------------------------------------------
  // Closes the current statistics window at the clock's now, starts the next, and returns the
  // closed one (also kept as last_window()).
  StatsWindow CloseWindow();
  // The last closed window (an empty one before the first close).
  StatsWindow last_window() const;
  NodeCounters counters() const;
  NodeLoad Load() const;

  // ---- State for the router ---------------------------------------------------------------
  using StateSink = std::function<void(const NodeStateUpdate&)>;
  // Adds a subscriber. Residency changes not yet published go out to the existing subscribers
  // first; then `sink` gets a full snapshot, and from then on exactly every delta (none missed,
  // none older than its snapshot). `sink` runs under the feed's lock and must not call back into
  // the core's subscription methods. Returns the id for Unsubscribe.
  int Subscribe(StateSink sink);
  void Unsubscribe(int id);
  // Sends a delta (load, split, residency changes since the last message; the EMB summary when
  // `with_summary`) to every subscriber.
  void Publish(bool with_summary);

  Engine& engine() { return *engine_; }
  const config::Config& config() const { return config_; }
  Clock* clock() const { return clock_; }
  absl::StatusOr<std::unique_ptr<Worker>> NewWorker() const { return engine_->NewWorker(); }

 private:
  NodeCore(const config::Config& config, Clock* clock);
  void Answer(RankJob* job, const absl::Status& status);
  NodeStateUpdate BaseState() const;
  EmbSummary BuildSummary() const;
  void RecordAnswer(const RankJob& job, int64_t latency_us);
  // Start the reuse tracker's miniature KV and EMB caches (control.kv_shadows, emb_shadows), once,
  // from Create.
  void ShadowKvCache(const config::Config& config);
  void ShadowEmbCache(const config::Config& config);

  const config::Config config_;
  Clock* const clock_;
  std::unique_ptr<Engine> engine_;
  // The control lock: a decision (Decide and SetTarget) against an operator's override or freeze;
  // also guards the status read by others.
  mutable absl::Mutex control_mu_;
  std::unique_ptr<control::SplitController> controller_;  // decides under control_mu_
  std::atomic<bool> control_frozen_{false};               // written under control_mu_
  ControlStatus control_status_ ABSL_GUARDED_BY(control_mu_);
  BatchQueue queue_;
  std::atomic<bool> draining_{false};
  std::atomic<int> computing_{0};

  std::atomic<int64_t> arrivals_{0}, rejected_{0}, completions_{0}, failures_{0},
      deadline_exceeded_{0}, batches_{0}, batched_requests_{0}, compute_us_{0}, computed_rows_{0},
      computed_attention_{0};
  std::atomic<double> ewma_batch_us_{0};
  std::atomic<double> kv_eviction_rate_{0};  // of the last closed window

  // The current window's latency histogram: recorders take the lock shared, CloseWindow
  // exclusively to swap in a fresh one.
  mutable absl::Mutex latency_mu_;
  std::unique_ptr<LatencyHistogram> window_latency_ ABSL_GUARDED_BY(latency_mu_);

  // For control.policy "predictive" (track_reuse_): the current window's answer sample and both
  // caches' reuse times (StatsWindow::answers, emb_reuse, kv_reuse); reuse_ is null otherwise.
  static constexpr size_t kWindowAnswerSamples = 4096;
  const bool track_reuse_;
  absl::Mutex answers_mu_ ABSL_ACQUIRED_AFTER(latency_mu_);
  AnswerReservoir answers_ ABSL_GUARDED_BY(answers_mu_);
  absl::Mutex reuse_mu_ ABSL_ACQUIRED_AFTER(answers_mu_);
  std::unique_ptr<ReuseTracker> reuse_ ABSL_GUARDED_BY(reuse_mu_);
  std::atomic<int64_t> next_batch_id_{0};  // the tracker's batch numbering (RequestReuse::batch)
  // The splits of the tracker's miniature KV caches (control.kv_shadows; empty: none), set once.
  std::vector<double> kv_shadow_splits_;
  std::vector<double> emb_shadow_splits_;  // and of its miniature EMB caches

  mutable absl::Mutex window_mu_ ABSL_ACQUIRED_AFTER(latency_mu_);
  int64_t window_start_us_ ABSL_GUARDED_BY(window_mu_) = 0;
  NodeCounters window_counters_ ABSL_GUARDED_BY(window_mu_);
  emb::EmbStats window_emb_ ABSL_GUARDED_BY(window_mu_);
  kv::KvStats window_kv_ ABSL_GUARDED_BY(window_mu_);
  pool::PoolStats window_pool_ ABSL_GUARDED_BY(window_mu_);
  std::unique_ptr<StatsWindow> last_window_ ABSL_GUARDED_BY(window_mu_);

  mutable absl::Mutex feed_mu_;
  std::vector<std::pair<int, StateSink>> sinks_ ABSL_GUARDED_BY(feed_mu_);
  int next_sink_id_ ABSL_GUARDED_BY(feed_mu_) = 1;
  uint64_t seq_ ABSL_GUARDED_BY(feed_mu_) = 0;
  std::optional<EmbSummary> last_summary_ ABSL_GUARDED_BY(feed_mu_);
};

}  // namespace helm::serve
