#include "bench/open_loop.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace helm::bench {

absl::Status OpenLoop::Validate(const OpenLoopOptions& options) {
  if (options.max_in_flight < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_in_flight: must be >= 1, got ", options.max_in_flight));
  }
  if (options.deadline_ms < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("deadline_ms: must be >= 1, got ", options.deadline_ms));
  }
  if (options.straggler_grace_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("straggler_grace_ms: must be >= 0, got ", options.straggler_grace_ms));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<OpenLoop>> OpenLoop::Create(const OpenLoopOptions& options,
                                                           workload::Generator* generator,
                                                           Clock* clock, Sleeper* sleeper,
                                                           Transport* transport) {
  absl::Status valid = Validate(options);
  if (!valid.ok()) return valid;
  if (generator == nullptr || clock == nullptr || sleeper == nullptr || transport == nullptr) {
    return absl::InvalidArgumentError("generator, clock, sleeper, transport: must not be null");
  }
  return std::unique_ptr<OpenLoop>(new OpenLoop(options, generator, clock, sleeper, transport));
}

OpenLoop::OpenLoop(const OpenLoopOptions& options, workload::Generator* generator, Clock* clock,
                   Sleeper* sleeper, Transport* transport)
    : options_(options),
      generator_(generator),
      clock_(clock),
      sleeper_(sleeper),
      transport_(transport),
      recorder_(options.slo_ms * 1000.0) {}

Progress OpenLoop::progress() const {
  Progress p;
  p.sent = sent_.load(std::memory_order_relaxed);
  p.ok = recorder_.ok();
  p.errors = recorder_.errors();
  p.dropped = recorder_.dropped();
  p.ok_within_slo = recorder_.ok_within_slo();
  absl::MutexLock lock(&mu_);
  p.in_flight = in_flight_;
  return p;
}

bool OpenLoop::Idle() const {
  absl::MutexLock lock(&mu_);
  return in_flight_ == 0;
}

void OpenLoop::Finish(int64_t seq, Completion completion, const Reply& reply) {
  completion.latency_us = NowUs() - completion.scheduled_us;
  completion.code = static_cast<int32_t>(reply.status.code());
  if (reply.status.ok()) completion.info = reply.info;
  recorder_.Record(seq, completion, reply.status.ok() ? reply.node_id : std::string(),
                   std::string(reply.status.message()));
  {
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }
  sleeper_->Wake();
}

RunResult OpenLoop::Run(int64_t start_us) {
  start_us_.store(start_us, std::memory_order_relaxed);
  const int64_t deadline_us = int64_t{options_.deadline_ms} * 1000;
  int64_t last_scheduled_us = 0;
  int64_t seq = 0;
  workload::Request request;
  for (; generator_->Next(&request); ++seq) {
    last_scheduled_us = request.arrival_us;
    // Encoded before its time, so the send itself is cheap and punctual.
    std::unique_ptr<PreparedRequest> prepared = transport_->Prepare(request);
    const int64_t due_us = start_us + request.arrival_us;
    sleeper_->SleepUntil(due_us);
    Completion completion;
    completion.scheduled_us = request.arrival_us;
    completion.phase = request.phase;
    bool admitted = false;
    {
      absl::MutexLock lock(&mu_);
      if (in_flight_ < options_.max_in_flight) {
        ++in_flight_;
        admitted = true;
      }
    }
    if (!admitted) {
      completion.code = kDroppedCode;
      recorder_.Record(seq, completion, "",
                       absl::StrCat("dropped by helm-bench: ", options_.max_in_flight,
                                    " requests already in flight"));
      continue;
    }
    const int64_t sent_us = clock_->NowMicros();
    completion.send_lag_us = std::max<int64_t>(0, sent_us - due_us);
    sent_.fetch_add(1, std::memory_order_relaxed);
    // The deadline counts from the scheduled time, like the latency.
    transport_->Send(
        std::move(prepared), due_us + deadline_us,
        [this, seq, completion](const Reply& reply) { Finish(seq, completion, reply); });
  }

  // Every request ends by its deadline; stragglers past a grace period are cancelled so the run
  // ends even when the transport misses a deadline.
  const auto idle = [this] { return Idle(); };
  const int64_t give_up_us =
      start_us + last_scheduled_us + deadline_us + options_.straggler_grace_ms * 1000;
  if (!sleeper_->WaitUntil(idle, give_up_us)) {
    transport_->CancelAll();
    sleeper_->WaitUntil(idle, kForeverUs);
  }

  RunResult result;
  result.phases = generator_->phases();
  result.duration_us = generator_->duration_us();
  result.wall_s = static_cast<double>(NowUs()) * 1e-6;
  recorder_.MoveInto(&result);
  return result;
}

}  // namespace helm::bench
