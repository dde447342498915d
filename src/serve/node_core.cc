#include "helm/serve/node_core.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "helm/common/bloom.h"
#include "helm/common/status.h"
#include "helm/control/features.h"
#include "helm/model/kv_geometry.h"
#include "helm/model/model.h"

namespace helm::serve {
namespace {

// Seed of the EMB summary's hashes: the same on every node, so the router can combine them.
constexpr uint64_t kSummarySeed = 0x48454c4d;  // "HELM"

BatchQueueOptions QueueOptions(const NodeOptions& node) {
  BatchQueueOptions q;
  q.capacity = node.queue_capacity;
  q.max_batch = node.max_batch;
  q.max_batch_wait_us = node.max_batch_wait_us;
  return q;
}

absl::Status DeadlinePassed() {
  return absl::DeadlineExceededError(
      "deadline passed before compute; the request was not computed");
}

// Why `job` is not to be computed at `now_us` (its deadline passed, its caller cancelled); OK when
// it is.
absl::Status Abandoned(const RankJob& job, int64_t now_us) {
  if (job.deadline_us <= now_us) return DeadlinePassed();
  if (job.cancelled != nullptr && job.cancelled->load(std::memory_order_acquire)) {
    return absl::CancelledError("the call was cancelled before compute; it was not computed");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<control::FeatureScales> FeatureScalesForConfig(const config::Config& config) {
  HELM_ASSIGN_OR_RETURN(const model::ModelDims dims,
                        model::DimsFromOptions(config.model, config.emb, config.kv));
  control::FeatureScales scales;
  scales.slo_us = config.control.slo_ms * 1000;
  scales.pool_bytes = static_cast<double>(config.pool.bytes);
  scales.emb_row_bytes = double(config.emb.dim) * DtypeBytes(dims.emb_dtype);
  scales.kv_token_bytes = double(dims.block_bytes()) / std::max(1, dims.tokens_per_block);
  scales.queue_capacity = config.node.queue_capacity;
  scales.workers = config.node.workers;
  scales.attention_ratio = model::KvAttentionRatio(config.model);
  return scales;
}

NodeCore::NodeCore(const config::Config& config, Clock* clock)
    : config_(config),
      clock_(clock),
      queue_(QueueOptions(config.node), clock),
      window_latency_(std::make_unique<LatencyHistogram>()),
      track_reuse_(control::NeedsReuseTracking(config.control)),
      answers_(kWindowAnswerSamples, /*seed=*/0x616e73776572ull),
      last_window_(std::make_unique<StatsWindow>()) {
  if (track_reuse_) {
    absl::MutexLock lock(&reuse_mu_);
    reuse_ = std::make_unique<ReuseTracker>(config.emb.ghost_sample_rate,
                                            config.emb.sample_salt ^ 0x72657573ull);
  }
}

NodeCore::~NodeCore() { Stop(); }

namespace {

// The miniature caches' splits: `count` spread evenly over [r_min, r_max] (count >= 2).
std::vector<double> ShadowSplits(const pool::PoolOptions& options, int count) {
  std::vector<double> splits;
  for (int i = 0; i < count; ++i) {
    splits.push_back(options.r_min + (options.r_max - options.r_min) * i / (count - 1));
  }
  return splits;
}

// The EMB cache's chunks at `split`.
int64_t EmbChunks(const pool::Pool& pool, double split) {
  return std::lround(split * pool.num_chunks());
}

}  // namespace

void NodeCore::ShadowKvCache(const config::Config& config) {
  // Each KV cache its whole chunks' blocks.
  kv_shadow_splits_ =
      ShadowSplits(config.pool, std::clamp(config.control.kv_shadows, 2, kMaxKvShadows));
  const pool::Pool& pool = engine_->pool();
  const int64_t blocks_per_chunk = pool.chunk_bytes() / engine_->kv().block_bytes();
  std::vector<int64_t> capacity_blocks;
  for (double split : kv_shadow_splits_) {
    capacity_blocks.push_back((pool.num_chunks() - EmbChunks(pool, split)) * blocks_per_chunk);
  }
  absl::MutexLock lock(&reuse_mu_);
  reuse_->ShadowKv(config.kv, model::KvAttentionRatio(config.model), capacity_blocks);
}

void NodeCore::ShadowEmbCache(const config::Config& config) {
  // Each EMB cache its whole chunks' full-size rows (a sampling cache's slots are larger), on the
  // sample that makes the one at r_max emb_shadow_rows rows.
  emb_shadow_splits_ =
      ShadowSplits(config.pool, std::clamp(config.control.emb_shadows, 2, kMaxEmbShadows));
  const pool::Pool& pool = engine_->pool();
  const emb::EmbCache& emb = engine_->emb();
  const double rows_per_chunk =
      static_cast<double>(pool.chunk_bytes() / (int64_t{emb.dim()} * DtypeBytes(emb.dtype())));
  const double largest = std::max(1.0, EmbChunks(pool, config.pool.r_max) * rows_per_chunk);
  const double rate = std::min(1.0, static_cast<double>(config.control.emb_shadow_rows) / largest);
  std::vector<int64_t> capacity_rows;
  for (double split : emb_shadow_splits_) {
    capacity_rows.push_back(std::llround(EmbChunks(pool, split) * rows_per_chunk * rate));
  }
  absl::MutexLock lock(&reuse_mu_);
  reuse_->ShadowEmb(config.emb, rate, capacity_rows, std::llround(largest * rate));
}

absl::StatusOr<std::unique_ptr<NodeCore>> NodeCore::Create(const config::Config& config,
                                                           Clock* clock) {
  std::unique_ptr<NodeCore> core(new NodeCore(config, clock));
  HELM_ASSIGN_OR_RETURN(core->engine_, Engine::Create(config, clock));
  if (core->track_reuse_ && config.control.kv_shadows > 0) core->ShadowKvCache(config);
  if (core->track_reuse_ && config.control.emb_shadows > 0) core->ShadowEmbCache(config);
  if (config.control.policy != "static") {
    // The learned policy's features are normalised by the node's own sizes (features.h).
    HELM_ASSIGN_OR_RETURN(const control::FeatureScales scales, FeatureScalesForConfig(config));
    HELM_ASSIGN_OR_RETURN(core->controller_,
                          control::CreateSplitController(config.control, config.pool, &scales));
  }
  {
    absl::MutexLock lock(&core->control_mu_);
    core->control_status_.policy = config.control.policy;
    core->control_status_.interval_ms = config.control.interval_ms;
    core->control_status_.mode =
        core->controller_ != nullptr ? core->controller_->mode() : std::string("static");
  }
  const int64_t now = clock->NowMicros();
  absl::MutexLock lock(&core->window_mu_);
  core->window_start_us_ = now;
  core->window_emb_ = core->engine_->emb().stats();
  core->window_kv_ = core->engine_->kv().stats();
  core->window_pool_ = core->engine_->pool().stats();
  core->last_window_->start_us = core->last_window_->end_us = now;
  return core;
}

// ---- Requests ---------------------------------------------------------------------------------

absl::Status NodeCore::Submit(RankJob* job) {
  arrivals_.fetch_add(1, std::memory_order_relaxed);
  absl::Status admitted =
      draining() ? absl::UnavailableError("node is draining") : queue_.Submit(job);
  if (!admitted.ok()) rejected_.fetch_add(1, std::memory_order_relaxed);
  return admitted;
}

void NodeCore::Answer(RankJob* job, const absl::Status& status) {
  computing_.fetch_sub(1, std::memory_order_relaxed);
  if (status.ok()) {
    completions_.fetch_add(1, std::memory_order_relaxed);
    RecordAnswer(*job, clock_->NowMicros() - job->admitted_us);
  } else {
    failures_.fetch_add(1, std::memory_order_relaxed);
    if (absl::IsDeadlineExceeded(status)) {
      deadline_exceeded_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  job->done(job, status);  // may delete the job
}

void NodeCore::RecordAnswer(const RankJob& job, int64_t latency_us) {
  {
    absl::ReaderMutexLock lock(&latency_mu_);
    window_latency_->Record(latency_us);
  }
  if (!track_reuse_) return;
  absl::MutexLock lock(&answers_mu_);
  const RankOutput& out = job.output;
  answers_.Add(AnswerSample{.latency_us = latency_us,
                            .queue_us = out.queue_us,
                            .emb_lookups = out.emb_hits + out.emb_misses,
                            .emb_misses = out.emb_misses,
                            .history_tokens = out.cached_tokens + out.computed_tokens,
                            .cached_tokens = out.cached_tokens,
                            .reuse = job.reuse,
                            .batch = job.batch});
}

void NodeCore::RunBatch(Worker& worker, absl::Span<QueuedJob* const> batch) {
  PreparedBatch prepared = BeginBatch(batch);
  CompleteBatch(worker, prepared);
}

PreparedBatch NodeCore::BeginBatch(absl::Span<QueuedJob* const> batch) {
  PreparedBatch out;
  if (batch.empty()) return out;
  out.begun = true;
  computing_.fetch_add(static_cast<int>(batch.size()), std::memory_order_relaxed);
  out.start_us = clock_->NowMicros();
  // A deadline that has passed costs no work; the rest are prepared (KV lease, EMB lookup).
  std::vector<RankJob*> jobs;
  jobs.reserve(batch.size());
  const int64_t batch_id =
      track_reuse_ ? next_batch_id_.fetch_add(1, std::memory_order_relaxed) : -1;
  for (QueuedJob* queued : batch) {
    RankJob* job = static_cast<RankJob*>(queued);
    if (absl::Status abandoned = Abandoned(*job, out.start_us); !abandoned.ok()) {
      Answer(job, abandoned);
      continue;
    }
    if (absl::Status prepared = engine_->Prepare(job->input, &job->prepared); !prepared.ok()) {
      Answer(job, prepared);
      continue;
    }
    if (track_reuse_) {
      absl::MutexLock lock(&reuse_mu_);
      job->reuse =
          reuse_->Observe(job->input.user_id, job->input.history_length(),
                          job->prepared.history_start(), job->prepared.looked_up_ids(), batch_id);
    }
    jobs.push_back(job);
  }
  // Checked again right before compute: preparing may have copied embeddings for a while.
  out.compute_start_us = clock_->NowMicros();
  for (RankJob* job : jobs) {
    if (absl::Status abandoned = Abandoned(*job, out.compute_start_us); !abandoned.ok()) {
      engine_->Abandon(&job->prepared);
      Answer(job, abandoned);
      continue;
    }
    out.jobs.push_back(job);
  }
  return out;
}

void NodeCore::CompleteBatch(Worker& worker, PreparedBatch& batch) {
  if (!batch.begun) return;
  batch.begun = false;
  std::vector<RankJob*>& jobs = batch.jobs;
  if (!jobs.empty()) {
    std::vector<Prepared*> prepared;
    prepared.reserve(jobs.size());
    int64_t rows = 0;  // counted before the answers hand the jobs back
    int64_t attention = 0;
    for (RankJob* job : jobs) {
      prepared.push_back(&job->prepared);
      const int64_t history = job->input.history_length();
      const int64_t suffix = job->prepared.suffix_tokens();
      const int64_t candidates = job->prepared.num_candidates();
      rows += suffix + candidates;
      // Tokens [history - suffix, history) attend to their earlier tokens, candidates to all.
      const int64_t cached = history - suffix;
      attention += (history * (history - 1) - cached * (cached - 1)) / 2 + candidates * history;
    }
    computed_rows_.fetch_add(rows, std::memory_order_relaxed);
    computed_attention_.fetch_add(attention, std::memory_order_relaxed);
    if (track_reuse_) {
      BatchTotals totals{.size = static_cast<int32_t>(jobs.size())};
      for (const RankJob* job : jobs) {
        totals.emb_lookups +=
            static_cast<int32_t>(job->prepared.emb_hits() + job->prepared.emb_misses());
        totals.emb_misses += static_cast<int32_t>(job->prepared.emb_misses());
      }
      // The miniature KV caches' sums come when the window closes (ReuseTracker::Replay).
      for (RankJob* job : jobs) job->batch = totals;
    }
    absl::StatusOr<std::vector<model::ForwardResult>> results = engine_->Compute(worker, prepared);
    for (size_t i = 0; i < jobs.size(); ++i) {
      RankJob* job = jobs[i];
      if (!results.ok()) {
        engine_->Abandon(&job->prepared);
        Answer(job, results.status());
        continue;
      }
      engine_->Finish(worker, static_cast<int64_t>(i), &job->prepared, (*results)[i], &job->output);
      job->output.queue_us = batch.compute_start_us - job->admitted_us;
      job->output.compute_us = clock_->NowMicros() - batch.compute_start_us;
      job->output.batch_size = static_cast<int32_t>(jobs.size());
      Answer(job, absl::OkStatus());
    }
    batches_.fetch_add(1, std::memory_order_relaxed);
    batched_requests_.fetch_add(static_cast<int64_t>(jobs.size()), std::memory_order_relaxed);
  }
  jobs.clear();
  const int64_t elapsed_us = clock_->NowMicros() - batch.start_us;
  compute_us_.fetch_add(elapsed_us, std::memory_order_relaxed);
  const double ewma = ewma_batch_us_.load(std::memory_order_relaxed);
  ewma_batch_us_.store(ewma == 0 ? elapsed_us : 0.9 * ewma + 0.1 * elapsed_us,
                       std::memory_order_relaxed);
}

void NodeCore::StartDraining() { draining_.store(true, std::memory_order_release); }

void NodeCore::Stop() {
  StartDraining();
  for (QueuedJob* queued : queue_.Close()) {
    computing_.fetch_add(1, std::memory_order_relaxed);  // Answer counts it out again
    Answer(static_cast<RankJob*>(queued), absl::UnavailableError("node is shutting down"));
  }
}

// ---- Split control ----------------------------------------------------------------------------

double NodeCore::SetTargetSplit(double emb_share) { return engine_->pool().SetTarget(emb_share); }

pool::StepResult NodeCore::StepResize() { return engine_->pool().Step(); }

double NodeCore::OverrideSplit(double emb_share) {
  absl::MutexLock lock(&control_mu_);
  control_frozen_.store(true, std::memory_order_relaxed);
  control_status_.frozen = true;
  return SetTargetSplit(emb_share);
}

void NodeCore::FreezeControl(bool frozen) {
  absl::MutexLock lock(&control_mu_);
  control_frozen_.store(frozen, std::memory_order_relaxed);
  control_status_.frozen = frozen;
}

void NodeCore::SetController(std::unique_ptr<control::SplitController> controller) {
  absl::MutexLock lock(&control_mu_);
  controller_ = std::move(controller);
  control_status_.mode = controller_ != nullptr ? controller_->mode() : std::string("static");
}

ControlStatus NodeCore::control_status() const {
  absl::MutexLock lock(&control_mu_);
  return control_status_;
}

double NodeCore::Control(const StatsWindow& window, ControlDecision* decision) {
  absl::MutexLock lock(&control_mu_);
  const double before = engine_->pool().Snapshot().target_split;
  if (controller_ == nullptr || control_frozen()) {
    if (decision != nullptr) *decision = ControlDecision();
    return before;
  }
  const double after = SetTargetSplit(controller_->Decide(window));
  ++control_status_.decisions;
  control_status_.reversals = controller_->reversals();
  control_status_.mode = controller_->mode();
  if (decision != nullptr) {
    decision->decided = true;
    decision->time_us = clock_->NowMicros();
    decision->old_target = before;
    decision->new_target = after;
    decision->mode = control_status_.mode;
    decision->detail_json = controller_->LastDecisionJson();
  }
  return after;
}

// ---- Statistics -------------------------------------------------------------------------------

NodeCounters NodeCore::counters() const {
  NodeCounters c;
  c.arrivals = arrivals_.load(std::memory_order_relaxed);
  c.rejected = rejected_.load(std::memory_order_relaxed);
  c.completions = completions_.load(std::memory_order_relaxed);
  c.failures = failures_.load(std::memory_order_relaxed);
  c.deadline_exceeded = deadline_exceeded_.load(std::memory_order_relaxed);
  c.batches = batches_.load(std::memory_order_relaxed);
  c.batched_requests = batched_requests_.load(std::memory_order_relaxed);
  c.computed_rows = computed_rows_.load(std::memory_order_relaxed);
  c.computed_attention = computed_attention_.load(std::memory_order_relaxed);
  c.compute_us = compute_us_.load(std::memory_order_relaxed);
  return c;
}

NodeLoad NodeCore::Load() const {
  NodeLoad load;
  load.queue_depth = queue_.depth();
  load.in_flight = load.queue_depth + computing_.load(std::memory_order_relaxed);
  load.workers = config_.node.workers;
  load.capacity = config_.node.workers * config_.node.max_batch;
  load.ewma_service_us = ewma_batch_us_.load(std::memory_order_relaxed);
  load.queue_capacity = config_.node.queue_capacity;
  const kv::KvCache& kv = engine_->kv();
  const int64_t capacity = kv.capacity_blocks();
  load.kv_occupancy = capacity > 0 ? static_cast<double>(kv.used_blocks()) / capacity : 1.0;
  load.kv_eviction_rate = kv_eviction_rate_.load(std::memory_order_relaxed);
  return load;
}

StatsWindow NodeCore::CloseWindow() {
  auto latency = std::make_unique<LatencyHistogram>();
  {
    absl::MutexLock lock(&latency_mu_);
    std::swap(latency, window_latency_);
  }
  std::vector<AnswerSample> answers;
  {
    absl::MutexLock lock(&answers_mu_);
    answers = answers_.Take();
  }
  const int64_t now = clock_->NowMicros();
  const NodeCounters c = counters();
  const emb::EmbStats emb = engine_->emb().stats();
  const kv::KvStats kv = engine_->kv().stats();
  const pool::PoolStats pool = engine_->pool().stats();
  const pool::PoolSnapshot snapshot = engine_->pool().Snapshot();
  const NodeLoad load = Load();

  auto w = std::make_unique<StatsWindow>();
  w->latency_us = *latency;
  w->answers = std::move(answers);
  if (track_reuse_) {
    absl::MutexLock lock(&reuse_mu_);
    reuse_->Take(&w->emb_reuse, &w->kv_reuse);
    // The miniature caches run the window's requests now, off the request path: each sampled
    // answer gets its own K/V reuse and its batch's, the window each EMB cache's miss ratio.
    if (!kv_shadow_splits_.empty() || !emb_shadow_splits_.empty()) reuse_->Replay();
    w->kv_shadow_splits = kv_shadow_splits_;
    if (!kv_shadow_splits_.empty()) {
      for (AnswerSample& a : w->answers) {
        reuse_->FillShadowReuse(&a.reuse, &a.batch.shadow);  // unknown: zeros, nothing spared
      }
    }
    if (!reuse_->emb_shadow_miss_ratios().empty()) {
      w->emb_shadow_splits = emb_shadow_splits_;
      w->emb_shadow_miss_ratios = reuse_->emb_shadow_miss_ratios();
    }
  }
  w->queue_depth = load.queue_depth;
  w->in_flight = load.in_flight;
  w->committed_split = snapshot.committed_split;
  w->target_split = snapshot.target_split;
  w->pending_migration_bytes = snapshot.pending_bytes;
  w->chunk_share = snapshot.num_chunks > 0 ? 1.0 / snapshot.num_chunks : 0.0;
  absl::MutexLock lock(&window_mu_);
  w->start_us = window_start_us_;
  w->end_us = now;
  w->requests = c - window_counters_;
  w->emb = emb - window_emb_;
  w->kv = kv - window_kv_;
  w->pool = pool - window_pool_;
  window_start_us_ = now;
  window_counters_ = c;
  window_emb_ = emb;
  window_kv_ = kv;
  window_pool_ = pool;
  last_window_ = std::make_unique<StatsWindow>(*w);
  const int64_t capacity = engine_->kv().capacity_blocks();
  kv_eviction_rate_.store(capacity > 0 && w->seconds() > 0
                              ? w->kv.evicted_blocks / w->seconds() / static_cast<double>(capacity)
                              : 0.0,
                          std::memory_order_relaxed);
  return std::move(*w);
}

StatsWindow NodeCore::last_window() const {
  absl::MutexLock lock(&window_mu_);
  return *last_window_;
}

// ---- State for the router ---------------------------------------------------------------------

NodeStateUpdate NodeCore::BaseState() const {
  NodeStateUpdate state;
  state.node_id = config_.node.id;
  state.load = Load();
  const pool::PoolSnapshot pool = engine_->pool().Snapshot();
  state.committed_split = pool.committed_split;
  state.target_split = pool.target_split;
  state.draining = draining();
  state.control = control_status();
  return state;
}

EmbSummary NodeCore::BuildSummary() const {
  BloomFilter filter(config_.node.emb_summary_bits, config_.node.emb_summary_hashes, kSummarySeed);
  engine_->emb().ForEachResidentId([&filter](int64_t id) { filter.Add(id); });
  EmbSummary summary;
  summary.bits = filter.ToBytes();
  summary.num_hashes = filter.num_hashes();
  summary.seed = kSummarySeed;
  summary.resident_rows = engine_->emb().resident_rows();
  return summary;
}

int NodeCore::Subscribe(StateSink sink) {
  absl::MutexLock lock(&feed_mu_);
  // Changes not yet published go to the existing subscribers first, so that the new one's
  // snapshot is followed only by changes made after it was taken. A change racing with the
  // snapshot shows in both the snapshot and the next delta; it carries the user's state, not a
  // difference, so applying it again leaves the same view.
  NodeStateUpdate pending = BaseState();
  engine_->kv().DrainResidencyEvents(&pending.kv_events);
  if (!pending.kv_events.empty() && !sinks_.empty()) {
    pending.kv_resident_users = engine_->kv().num_users();
    pending.seq = ++seq_;
    for (auto& [id, s] : sinks_) s(pending);
  }
  NodeStateUpdate snapshot = BaseState();
  snapshot.full_snapshot = true;
  snapshot.kv_events = engine_->kv().ResidentUsers();
  snapshot.kv_resident_users = static_cast<int64_t>(snapshot.kv_events.size());
  if (!last_summary_.has_value()) last_summary_ = BuildSummary();
  snapshot.emb_summary = last_summary_;
  snapshot.seq = ++seq_;
  sink(snapshot);
  const int id = next_sink_id_++;
  sinks_.emplace_back(id, std::move(sink));
  return id;
}

void NodeCore::Unsubscribe(int id) {
  absl::MutexLock lock(&feed_mu_);
  sinks_.erase(std::remove_if(sinks_.begin(), sinks_.end(),
                              [id](const auto& entry) { return entry.first == id; }),
               sinks_.end());
}

void NodeCore::Publish(bool with_summary) {
  std::optional<EmbSummary> summary;
  if (with_summary) summary = BuildSummary();
  NodeStateUpdate state = BaseState();
  absl::MutexLock lock(&feed_mu_);
  engine_->kv().DrainResidencyEvents(&state.kv_events);
  state.kv_resident_users = engine_->kv().num_users();
  if (summary.has_value()) {
    last_summary_ = summary;
    state.emb_summary = std::move(summary);
  }
  state.seq = ++seq_;
  for (auto& [id, sink] : sinks_) sink(state);
}

}  // namespace helm::serve
