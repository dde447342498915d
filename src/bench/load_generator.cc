#include "bench/load_generator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "helm/common/histogram.h"
#include "helm/v1/node.grpc.pb.h"
#include "helm/v1/recommender.grpc.pb.h"

namespace helm::bench {
namespace {

constexpr int32_t kMaxMessageBytes = 64 << 20;

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

std::chrono::system_clock::time_point WallDeadlineIn(int64_t delta_us) {
  return std::chrono::system_clock::now() + std::chrono::microseconds(delta_us);
}

// Everything the progress line and the final result need from completions. Thread-safe.
class Recorder {
 public:
  explicit Recorder(double slo_us) : slo_us_(slo_us) {}

  void Record(Completion completion, const std::string& node_id, const std::string& message) {
    if (completion.code == 0) {
      ok_.fetch_add(1, std::memory_order_relaxed);
      ok_latency_.Record(completion.latency_us);
      if (static_cast<double>(completion.latency_us) <= slo_us_) {
        ok_within_slo_.fetch_add(1, std::memory_order_relaxed);
      }
    } else if (completion.code == kDroppedCode) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
    } else {
      errors_.fetch_add(1, std::memory_order_relaxed);
    }
    absl::MutexLock lock(&mu_);
    if (!node_id.empty()) {
      auto it = std::find(node_ids_.begin(), node_ids_.end(), node_id);
      completion.node = static_cast<int32_t>(it - node_ids_.begin());
      if (it == node_ids_.end()) node_ids_.push_back(node_id);
    }
    if (completion.code != 0 && !first_error_.count(completion.code)) {
      first_error_[completion.code] = message;
    }
    completions_.push_back(completion);
  }

  int64_t ok() const { return ok_.load(std::memory_order_relaxed); }
  int64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  int64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  int64_t ok_within_slo() const { return ok_within_slo_.load(std::memory_order_relaxed); }
  const LatencyHistogram& ok_latency() const { return ok_latency_; }

  void MoveInto(RunResult* result) {
    absl::MutexLock lock(&mu_);
    result->completions = std::move(completions_);
    result->node_ids = std::move(node_ids_);
    result->first_error = std::move(first_error_);
  }

 private:
  const double slo_us_;
  std::atomic<int64_t> ok_{0};
  std::atomic<int64_t> errors_{0};
  std::atomic<int64_t> dropped_{0};
  std::atomic<int64_t> ok_within_slo_{0};
  LatencyHistogram ok_latency_;
  absl::Mutex mu_;
  std::vector<Completion> completions_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> node_ids_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, std::string> first_error_ ABSL_GUARDED_BY(mu_);
};

// Polls GetStats on every node, all at once, about every interval. Thread-safe.
class NodePoller {
 public:
  NodePoller(const std::vector<std::string>& targets, Clock* clock, int64_t interval_ms)
      : targets_(targets), clock_(clock), interval_ms_(interval_ms) {
    for (const std::string& target : targets_) {
      stubs_.push_back(v1::Node::NewStub(MakeChannel(target)));
    }
  }
  ~NodePoller() { Stop(); }

  // One round: every node once, concurrently; returns when all answered or timed out (500 ms).
  void PollOnce() {
    if (targets_.empty()) return;
    struct Pending {
      grpc::ClientContext context;
      v1::GetStatsRequest request;
      v1::NodeStats response;
    };
    std::vector<Pending> pending(targets_.size());
    std::vector<grpc::Status> statuses(targets_.size());
    absl::BlockingCounter done(static_cast<int>(targets_.size()));
    for (size_t i = 0; i < targets_.size(); ++i) {
      pending[i].context.set_deadline(WallDeadlineIn(500'000));
      stubs_[i]->async()->GetStats(&pending[i].context, &pending[i].request, &pending[i].response,
                                   [&statuses, &done, i](grpc::Status status) {
                                     statuses[i] = std::move(status);
                                     done.DecrementCount();
                                   });
    }
    done.Wait();
    const int64_t t_us = clock_->NowMicros();  // absolute until TakeSamples
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < targets_.size(); ++i) {
      NodeSample sample;
      sample.t_us = t_us;
      sample.target = static_cast<int32_t>(i);
      sample.ok = statuses[i].ok();
      if (sample.ok) {
        sample.stats = std::move(pending[i].response);
      } else {
        sample.error = absl::StrCat(
            absl::StatusCodeToString(static_cast<absl::StatusCode>(statuses[i].error_code())), ": ",
            statuses[i].error_message());
      }
      samples_.push_back(std::move(sample));
    }
  }

  // Polls at start + (k + 1/2) intervals: on a fixed cadence (a slow poll does not shift the
  // later ones), mid-interval, so each second of the time series gets one sample.
  void Start(int64_t start_us) {
    if (targets_.empty()) return;
    thread_ = std::thread([this, start_us] {
      const int64_t interval_us = interval_ms_ * 1000;
      int64_t k = 0;
      while (true) {
        const int64_t wait_us = start_us + k * interval_us + interval_us / 2 - clock_->NowMicros();
        if (stop_.WaitForNotificationWithTimeout(
                absl::Microseconds(std::max<int64_t>(0, wait_us)))) {
          return;
        }
        PollOnce();
        k = std::max(k + 1, (clock_->NowMicros() - start_us) / interval_us);
      }
    });
  }

  void Stop() {
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (thread_.joinable()) thread_.join();
  }

  // The committed split each node reported last ("" until a node answered).
  std::string SplitLine() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> last(targets_.size());
    for (const NodeSample& s : samples_) {
      if (s.ok)
        last[s.target] = absl::StrFormat("%s %.2f", s.stats.node_id(), s.stats.committed_split());
    }
    std::string line;
    for (const std::string& entry : last) {
      if (!entry.empty()) absl::StrAppend(&line, line.empty() ? "" : ", ", entry);
    }
    return line;
  }

  // The samples, timed from `start_us` (the baseline poll comes before it, so it is negative).
  std::vector<NodeSample> TakeSamples(int64_t start_us) {
    absl::MutexLock lock(&mu_);
    for (NodeSample& sample : samples_) sample.t_us -= start_us;
    return std::move(samples_);
  }

 private:
  const std::vector<std::string> targets_;
  Clock* const clock_;
  const int64_t interval_ms_;
  std::vector<std::unique_ptr<v1::Node::Stub>> stubs_;
  absl::Notification stop_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::vector<NodeSample> samples_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

struct LoadGenerator::Impl {
  // One Rank call in flight; deletes itself when done.
  class Call final : public grpc::ClientUnaryReactor {
   public:
    Call(Impl* impl, int64_t scheduled_us, int32_t phase)
        : impl_(impl), scheduled_us_(scheduled_us), phase_(phase) {}

    void Start(v1::Recommender::Stub* stub, int64_t sent_us) {
      sent_us_ = sent_us;
      stub->async()->Rank(&context_, &request_, &response_, this);
      StartCall();
    }

    void OnDone(const grpc::Status& status) override {
      Completion c;
      c.scheduled_us = scheduled_us_;
      c.send_lag_us = std::max<int64_t>(0, sent_us_ - scheduled_us_);
      c.latency_us = impl_->NowUs() - scheduled_us_;
      c.phase = phase_;
      c.code = static_cast<int32_t>(status.error_code());
      std::string node_id;
      if (status.ok()) {
        const v1::ServingInfo& info = response_.info();
        node_id = info.node_id();
        c.cached_tokens = info.cached_tokens();
        c.computed_tokens = info.computed_tokens();
        c.emb_hits = info.emb_hits();
        c.emb_misses = info.emb_misses();
      }
      impl_->recorder.Record(c, node_id, status.error_message());
      // Out of `outstanding` (so no straggler cancel touches it), then gone with its
      // ClientContext, then counted finished: Run() cannot return, and the LoadGenerator and its
      // channel cannot go, while any part of the call is still being torn down.
      Impl* const impl = impl_;
      impl->Detach(this);
      delete this;
      impl->Finished();
    }

    v1::RankRequest& request() { return request_; }
    grpc::ClientContext& context() { return context_; }

   private:
    Impl* const impl_;
    const int64_t scheduled_us_;
    const int32_t phase_;
    int64_t sent_us_ = 0;
    grpc::ClientContext context_;
    v1::RankRequest request_;
    v1::RankResponse response_;
  };

  Impl(const LoadOptions& o, std::unique_ptr<workload::Generator> g)
      : options(o),
        generator(std::move(g)),
        recorder(o.slo_ms * 1000.0),
        poller(o.nodes, o.clock, o.poll_interval_ms) {}

  int64_t NowUs() const { return options.clock->NowMicros() - start_us; }

  void Detach(Call* call) {
    absl::MutexLock lock(&mu);
    outstanding.erase(call);
    ++finishing;
  }
  void Finished() {
    absl::MutexLock lock(&mu);
    --finishing;
  }
  bool IdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return outstanding.empty() && finishing == 0;
  }

  int64_t InFlight() const {
    absl::MutexLock lock(&mu);
    return static_cast<int64_t>(outstanding.size());
  }

  // Sleeps most of the way, then yields: ~100 us accuracy without burning a core.
  void SleepUntil(int64_t due_us) const {
    while (true) {
      const int64_t left = due_us - NowUs();
      if (left <= 0) return;
      if (left > 300) {
        absl::SleepFor(absl::Microseconds(left - 200));
      } else {
        std::this_thread::yield();
      }
    }
  }

  void PrintProgress(int64_t now_us, int64_t* last_sent, int64_t* last_us, bool final) {
    if (options.progress == nullptr) return;
    const int64_t sent_now = sent.load(std::memory_order_relaxed);
    // The last line shows the mean rate of the run; the others the rate since the previous one.
    const int64_t from_us = final ? 0 : *last_us;
    const int64_t from_sent = final ? 0 : *last_sent;
    const double dt_s = static_cast<double>(std::max<int64_t>(1, now_us - from_us)) * 1e-6;
    const double rate = static_cast<double>(sent_now - from_sent) / dt_s;
    *last_sent = sent_now;
    *last_us = now_us;
    std::string phase_name = "drain";
    for (const workload::Phase& p : generator->phases()) {
      if (now_us >= p.start_us && now_us < p.end_us()) phase_name = p.name;
    }
    const int64_t done = recorder.ok() + recorder.errors() + recorder.dropped();
    const LatencyHistogram& h = recorder.ok_latency();
    std::string line = absl::StrFormat(
        "[%6.1f/%.0f s %-8s] %6.1f req/s  sent %d  ok %d  err %d  drop %d  in flight %d  "
        "p50 %.1f ms  p99 %.1f ms  SLO %.1f%%",
        now_us * 1e-6, generator->duration_us() * 1e-6, phase_name, rate, sent_now, recorder.ok(),
        recorder.errors(), recorder.dropped(), InFlight(), h.Quantile(0.5) / 1000.0,
        h.Quantile(0.99) / 1000.0,
        done > 0 ? 100.0 * static_cast<double>(recorder.ok_within_slo()) / done : 0.0);
    const std::string splits = poller.SplitLine();
    if (!splits.empty()) absl::StrAppend(&line, "  split ", splits);
    if (options.progress_in_place) {
      std::fprintf(options.progress, "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
    } else {
      std::fprintf(options.progress, "%s\n", line.c_str());
    }
    std::fflush(options.progress);
  }

  absl::StatusOr<RunResult> Run();

  const LoadOptions options;
  std::unique_ptr<workload::Generator> generator;
  Recorder recorder;
  NodePoller poller;
  int64_t start_us = 0;
  std::atomic<int64_t> sent{0};
  mutable absl::Mutex mu;
  absl::flat_hash_set<Call*> outstanding ABSL_GUARDED_BY(mu);
  int64_t finishing ABSL_GUARDED_BY(mu) = 0;  // detached calls still being deleted
};

absl::StatusOr<RunResult> LoadGenerator::Impl::Run() {
  std::shared_ptr<grpc::Channel> channel = MakeChannel(options.target);
  if (!channel->WaitForConnected(WallDeadlineIn(options.connect_timeout_ms * 1000))) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", options.target, " within ",
                                               options.connect_timeout_ms, " ms"));
  }
  std::unique_ptr<v1::Recommender::Stub> stub = v1::Recommender::NewStub(channel);

  // The first poll is the baseline of every counter; the run starts right after it, with a small
  // lead so the first requests are not already late.
  poller.PollOnce();
  start_us = options.clock->NowMicros() + 20'000;
  poller.Start(start_us);

  absl::Notification progress_stop;
  std::thread progress_thread;
  int64_t last_sent = 0;
  int64_t last_us = 0;
  if (options.progress != nullptr) {
    progress_thread = std::thread([&] {
      while (!progress_stop.WaitForNotificationWithTimeout(
          absl::Milliseconds(options.progress_interval_ms))) {
        PrintProgress(NowUs(), &last_sent, &last_us, false);
      }
    });
  }

  const int64_t deadline_us = int64_t{options.deadline_ms} * 1000;
  workload::Request request;
  while (generator->Next(&request)) {
    // Build the call before its time so the send itself is cheap and punctual.
    auto* call = new Call(this, request.arrival_us, request.phase);
    v1::RankRequest& proto = call->request();
    proto.set_user_id(request.user_id);
    proto.mutable_history_item_ids()->Add(request.history_item_ids.begin(),
                                          request.history_item_ids.end());
    proto.mutable_history_actions()->Add(request.history_actions.begin(),
                                         request.history_actions.end());
    proto.mutable_history_timestamps_ms()->Add(request.history_timestamps_ms.begin(),
                                               request.history_timestamps_ms.end());
    proto.mutable_candidate_item_ids()->Add(request.candidate_item_ids.begin(),
                                            request.candidate_item_ids.end());
    proto.set_top_k(options.top_k);

    SleepUntil(request.arrival_us);
    const int64_t now_us = NowUs();
    bool admitted = false;
    {
      absl::MutexLock lock(&mu);
      if (static_cast<int64_t>(outstanding.size()) < options.max_in_flight) {
        outstanding.insert(call);
        admitted = true;
      }
    }
    if (!admitted) {
      delete call;
      Completion dropped;
      dropped.scheduled_us = request.arrival_us;
      dropped.phase = request.phase;
      dropped.code = kDroppedCode;
      recorder.Record(dropped, "",
                      absl::StrCat("dropped by helm-bench: ", options.max_in_flight,
                                   " requests already in flight"));
      continue;
    }
    // The deadline counts from the scheduled time, like the latency.
    call->context().set_deadline(WallDeadlineIn(request.arrival_us + deadline_us - now_us));
    sent.fetch_add(1, std::memory_order_relaxed);
    call->Start(stub.get(), now_us);
  }

  // Every call ends by its deadline; cancel stragglers after a grace period so the run ends.
  const absl::Condition idle(this, &Impl::IdleLocked);
  {
    absl::MutexLock lock(&mu);
    if (!mu.AwaitWithTimeout(idle, absl::Microseconds(deadline_us) + absl::Seconds(5))) {
      for (Call* call : outstanding) call->context().TryCancel();
      mu.Await(idle);
    }
  }
  const int64_t end_us = NowUs();
  if (progress_thread.joinable()) {
    progress_stop.Notify();
    progress_thread.join();
    PrintProgress(end_us, &last_sent, &last_us, true);
  }
  poller.Stop();
  poller.PollOnce();

  RunResult result;
  result.phases = generator->phases();
  result.duration_us = generator->duration_us();
  result.wall_s = static_cast<double>(end_us) * 1e-6;
  recorder.MoveInto(&result);
  std::stable_sort(
      result.completions.begin(), result.completions.end(),
      [](const Completion& a, const Completion& b) { return a.scheduled_us < b.scheduled_us; });
  result.poll_targets = options.nodes;
  result.samples = poller.TakeSamples(start_us);
  return result;
}

LoadGenerator::LoadGenerator(const LoadOptions& options,
                             std::unique_ptr<workload::Generator> generator)
    : impl_(std::make_unique<Impl>(options, std::move(generator))) {}

LoadGenerator::~LoadGenerator() = default;

absl::StatusOr<std::unique_ptr<LoadGenerator>> LoadGenerator::Create(
    const LoadOptions& options, std::unique_ptr<workload::Generator> generator) {
  if (options.target.empty()) return absl::InvalidArgumentError("target: must not be empty");
  if (generator == nullptr) return absl::InvalidArgumentError("generator: must not be null");
  if (options.max_in_flight < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_in_flight: must be >= 1, got ", options.max_in_flight));
  }
  if (options.deadline_ms < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("deadline_ms: must be >= 1, got ", options.deadline_ms));
  }
  if (options.poll_interval_ms < 1 || options.progress_interval_ms < 1) {
    return absl::InvalidArgumentError("poll_interval_ms, progress_interval_ms: must be >= 1");
  }
  if (options.clock == nullptr) return absl::InvalidArgumentError("clock: must not be null");
  return std::unique_ptr<LoadGenerator>(new LoadGenerator(options, std::move(generator)));
}

absl::StatusOr<RunResult> LoadGenerator::Run() { return impl_->Run(); }

}  // namespace helm::bench
