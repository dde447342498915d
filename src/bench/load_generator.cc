#include "bench/load_generator.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "bench/grpc_transport.h"
#include "bench/open_loop.h"
#include "bench/sleeper.h"
#include "grpcpp/grpcpp.h"
#include "helm/common/histogram.h"
#include "helm/v1/node.grpc.pb.h"

namespace helm::bench {
namespace {

// Polls GetStats on every node, all at once, about every interval. Thread-safe.
class NodePoller {
 public:
  NodePoller(const std::vector<std::string>& targets, Clock* clock, int64_t interval_ms,
             const rpc::ChannelSecurity& security)
      : targets_(targets), clock_(clock), interval_ms_(interval_ms) {
    for (const std::string& target : targets_) {
      stubs_.push_back(v1::Node::NewStub(MakeChannel(target, security)));
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
  Impl(const LoadOptions& o, std::unique_ptr<workload::Generator> g)
      : options(o),
        generator(std::move(g)),
        poller(o.nodes, o.clock, o.poll_interval_ms, o.security) {}

  int64_t NowUs() const { return options.clock->NowMicros() - start_us; }

  void PrintProgress(const OpenLoop& core, int64_t now_us, int64_t* last_sent, int64_t* last_us,
                     bool final) {
    if (options.progress == nullptr) return;
    const Progress p = core.progress();
    // The last line shows the mean rate of the run; the others the rate since the previous one.
    const int64_t from_us = final ? 0 : *last_us;
    const int64_t from_sent = final ? 0 : *last_sent;
    const double dt_s = static_cast<double>(std::max<int64_t>(1, now_us - from_us)) * 1e-6;
    const double rate = static_cast<double>(p.sent - from_sent) / dt_s;
    *last_sent = p.sent;
    *last_us = now_us;
    std::string phase_name = "drain";
    for (const workload::Phase& phase : generator->phases()) {
      if (now_us >= phase.start_us && now_us < phase.end_us()) phase_name = phase.name;
    }
    const int64_t done = p.ok + p.errors + p.dropped;
    const LatencyHistogram& h = core.ok_latency();
    std::string line = absl::StrFormat(
        "[%6.1f/%.0f s %-8s] %6.1f req/s  sent %d  ok %d  err %d  drop %d  in flight %d  "
        "p50 %.1f ms  p99 %.1f ms  SLO %.1f%%",
        now_us * 1e-6, generator->duration_us() * 1e-6, phase_name, rate, p.sent, p.ok, p.errors,
        p.dropped, p.in_flight, h.Quantile(0.5) / 1000.0, h.Quantile(0.99) / 1000.0,
        done > 0 ? 100.0 * static_cast<double>(p.ok_within_slo) / done : 0.0);
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
  NodePoller poller;
  int64_t start_us = 0;
};

absl::StatusOr<RunResult> LoadGenerator::Impl::Run() {
  RealSleeper sleeper(options.clock);
  // Declared before the transport, so that the transport (whose destructor waits until every
  // call's callback has returned) goes first: the core outlives every callback into it.
  std::unique_ptr<OpenLoop> core;
  absl::StatusOr<std::unique_ptr<GrpcTransport>> transport = GrpcTransport::Connect(
      options.target, options.connect_timeout_ms, options.top_k, options.clock, options.security);
  if (!transport.ok()) return transport.status();
  OpenLoopOptions core_options;
  core_options.deadline_ms = options.deadline_ms;
  core_options.max_in_flight = options.max_in_flight;
  core_options.slo_ms = options.slo_ms;
  absl::StatusOr<std::unique_ptr<OpenLoop>> created =
      OpenLoop::Create(core_options, generator.get(), options.clock, &sleeper, transport->get());
  if (!created.ok()) return created.status();
  core = *std::move(created);

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
        PrintProgress(*core, NowUs(), &last_sent, &last_us, false);
      }
    });
  }

  RunResult result = core->Run(start_us);
  const int64_t end_us = NowUs();
  if (progress_thread.joinable()) {
    progress_stop.Notify();
    progress_thread.join();
    PrintProgress(*core, end_us, &last_sent, &last_us, true);
  }
  poller.Stop();
  poller.PollOnce();
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
  OpenLoopOptions core_options;
  core_options.deadline_ms = options.deadline_ms;
  core_options.max_in_flight = options.max_in_flight;
  absl::Status valid = OpenLoop::Validate(core_options);
  if (!valid.ok()) return valid;
  if (options.poll_interval_ms < 1 || options.progress_interval_ms < 1) {
    return absl::InvalidArgumentError("poll_interval_ms, progress_interval_ms: must be >= 1");
  }
  if (options.clock == nullptr) return absl::InvalidArgumentError("clock: must not be null");
  return std::unique_ptr<LoadGenerator>(new LoadGenerator(options, std::move(generator)));
}

absl::StatusOr<RunResult> LoadGenerator::Run() { return impl_->Run(); }

}  // namespace helm::bench
