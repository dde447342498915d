// The open-loop core on virtual time: a FakeClock that moves only when the core sleeps, and a fake
// server that answers on that clock (in parallel after a delay, or through one FIFO server with a
// service time, so a queue builds). Every timing is exact: no sleeps, no real time, no bounds.
#include "bench/open_loop.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/stats.h"
#include "gtest/gtest.h"
#include "helm/common/clock.h"
#include "helm/workload/generator.h"

namespace helm::bench {
namespace {

uint64_t TestSeed() {
  return static_cast<uint64_t>(::testing::UnitTest::GetInstance()->random_seed()) + 11;
}

// Far more events than any test here needs; reaching it means the core is looping.
constexpr int64_t kMaxEvents = 10'000'000;

// A FakeClock and the events due on it. As the core's Sleeper it passes time by running, in time
// order (FIFO among equal times), every event due on the way, so replies arrive on virtual time.
// `oversleep_us` makes every SleepUntil return that much late (a sender that cannot keep up).
class VirtualTime final : public Sleeper {
 public:
  explicit VirtualTime(int64_t start_us, int64_t oversleep_us = 0)
      : clock_(start_us), oversleep_us_(oversleep_us) {}

  FakeClock* clock() { return &clock_; }
  int64_t now() const { return clock_.NowMicros(); }

  // Runs `action` when the clock reaches `due_us` (at once on the next step when already past).
  void At(int64_t due_us, std::function<void()> action) {
    events_.push(Event{std::max(due_us, now()), seq_++, std::move(action)});
  }

  void SleepUntil(int64_t due_us) override {
    const int64_t until_us = due_us + oversleep_us_;
    while (!events_.empty() && events_.top().due_us <= until_us && Step()) {
    }
    clock_.SetMicros(std::max(now(), until_us));
  }

  bool WaitUntil(absl::FunctionRef<bool()> done, int64_t due_us) override {
    while (!done()) {
      if (events_.empty() || events_.top().due_us > due_us) {
        // Nothing happens before `due_us`; with nothing left at all, waiting forever would hang.
        if (due_us == kForeverUs) return done();
        clock_.SetMicros(std::max(now(), due_us));
        return done();
      }
      if (!Step()) return false;
    }
    return true;
  }

  void Wake() override {}

 private:
  struct Event {
    int64_t due_us;
    int64_t seq;
    std::function<void()> action;
    bool operator>(const Event& o) const {
      return due_us != o.due_us ? due_us > o.due_us : seq > o.seq;
    }
  };

  bool Step() {
    if (++steps_ > kMaxEvents) {
      ADD_FAILURE() << "more than " << kMaxEvents << " events: the run does not end";
      return false;
    }
    Event event = events_.top();
    events_.pop();
    clock_.SetMicros(std::max(now(), event.due_us));
    event.action();
    return true;
  }

  FakeClock clock_;
  const int64_t oversleep_us_;
  int64_t seq_ = 0;
  int64_t steps_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
};

struct ServerModel {
  int64_t delay_us = 0;    // each request answered this long after it arrives, in parallel
  int64_t service_us = 0;  // > 0: one FIFO server with this service time instead (a queue builds)
  std::vector<absl::StatusCode> code_by_user_mod4;  // all OK when empty
  bool answer_inline = false;                       // answer inside Send, before it returns
  bool never_answers = false;  // ignores deadlines too: only CancelAll ends a request
};

// A fake server behind a Transport, answering on virtual time. Requests end at their answer time
// or, when that is later, at their deadline with DEADLINE_EXCEEDED (as a gRPC client would); a
// request past its deadline still occupies a FIFO server. Two "nodes" by user parity: node-a has
// 3/4 of a history's tokens cached, node-b 1/4.
class FakeTransport final : public Transport {
 public:
  struct Sent {
    int64_t user_id;
    int64_t sent_us;
    int64_t deadline_us;
  };

  FakeTransport(VirtualTime* time, ServerModel model) : time_(time), model_(std::move(model)) {}

  std::unique_ptr<PreparedRequest> Prepare(const workload::Request& request) override {
    auto prepared = std::make_unique<Prepared>();
    prepared->user_id = request.user_id;
    prepared->history = static_cast<int32_t>(request.history_item_ids.size());
    prepared->candidates = static_cast<int32_t>(request.candidate_item_ids.size());
    return prepared;
  }

  void Send(std::unique_ptr<PreparedRequest> request, int64_t deadline_us, Done done) override {
    const Prepared& r = static_cast<const Prepared&>(*request);
    const int64_t now = time_->now();
    sent_.push_back(Sent{r.user_id, now, deadline_us});
    max_in_flight_ = std::max<int64_t>(max_in_flight_, static_cast<int64_t>(pending_.size()) + 1);
    const Reply reply = Answer(r);
    if (model_.answer_inline) {
      done(reply);
      return;
    }
    const int64_t id = next_id_++;
    pending_.emplace(id, std::move(done));
    if (model_.never_answers) return;
    int64_t answer_us = now + model_.delay_us;
    if (model_.service_us > 0) {
      free_us_ = std::max(free_us_, now) + model_.service_us;
      answer_us = free_us_;
    }
    if (answer_us <= deadline_us) {
      time_->At(answer_us, [this, id, reply] { End(id, reply); });
    } else {
      Reply late;
      late.status = absl::DeadlineExceededError("Deadline Exceeded");
      time_->At(deadline_us, [this, id, late] { End(id, late); });
    }
  }

  void CancelAll() override {
    ++cancel_calls_;
    cancelled_at_us_ = time_->now();
    std::vector<int64_t> ids;
    for (const auto& [id, done] : pending_) ids.push_back(id);
    Reply cancelled;
    cancelled.status = absl::CancelledError("Cancelled");
    for (int64_t id : ids) End(id, cancelled);
  }

  const std::vector<Sent>& sent() const { return sent_; }
  int64_t max_in_flight() const { return max_in_flight_; }
  int64_t in_flight() const { return static_cast<int64_t>(pending_.size()); }
  int cancel_calls() const { return cancel_calls_; }
  int64_t cancelled_at_us() const { return cancelled_at_us_; }

 private:
  struct Prepared final : PreparedRequest {
    int64_t user_id = 0;
    int32_t history = 0;
    int32_t candidates = 0;
  };

  Reply Answer(const Prepared& r) const {
    Reply reply;
    if (!model_.code_by_user_mod4.empty()) {
      const absl::StatusCode code = model_.code_by_user_mod4[r.user_id % 4];
      if (code != absl::StatusCode::kOk) reply.status = absl::Status(code, "chosen by the test");
    }
    const bool a = r.user_id % 2 == 0;
    reply.node_id = a ? "node-a" : "node-b";
    reply.info.cached_tokens = a ? r.history * 3 / 4 : r.history / 4;
    reply.info.computed_tokens = r.history - reply.info.cached_tokens;
    reply.info.emb_hits = r.candidates;
    return reply;
  }

  void End(int64_t id, const Reply& reply) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // already cancelled
    Done done = std::move(it->second);
    pending_.erase(it);
    done(reply);
  }

  VirtualTime* const time_;
  const ServerModel model_;
  std::vector<Sent> sent_;
  std::map<int64_t, Done> pending_;
  int64_t next_id_ = 0;
  int64_t max_in_flight_ = 0;
  int64_t free_us_ = 0;
  int cancel_calls_ = 0;
  int64_t cancelled_at_us_ = -1;
};

workload::WorkloadOptions SmallWorkload(double rate_per_s, double duration_s) {
  workload::WorkloadOptions options;
  options.seed = TestSeed();
  options.rate_per_s = rate_per_s;
  options.duration_s = duration_s;
  options.max_users = 500;
  options.max_history = 256;
  options.candidates = 16;
  return options;
}

struct Scheduled {
  int64_t arrival_us;
  int64_t user_id;
};

// The schedule the core will follow: the same options give the same requests.
std::vector<Scheduled> Schedule(const workload::WorkloadOptions& workload) {
  std::unique_ptr<workload::Generator> generator = *workload::Generator::Create(workload);
  std::vector<Scheduled> schedule;
  workload::Request r;
  while (generator->Next(&r)) schedule.push_back(Scheduled{r.arrival_us, r.user_id});
  return schedule;
}

// The clock reads this at the start of every test, so that absolute and run times differ.
constexpr int64_t kClockStartUs = 1'000'000'000;
// The run starts this long after the clock's start.
constexpr int64_t kLeadUs = 20'000;
constexpr int64_t kStartUs = kClockStartUs + kLeadUs;

// One run of the core over `workload` against `transport`, on `time`.
RunResult RunCore(const OpenLoopOptions& options, const workload::WorkloadOptions& workload,
                  VirtualTime* time, FakeTransport* transport,
                  std::function<void(OpenLoop*)> before_run = nullptr) {
  std::unique_ptr<workload::Generator> generator = *workload::Generator::Create(workload);
  absl::StatusOr<std::unique_ptr<OpenLoop>> core =
      OpenLoop::Create(options, generator.get(), time->clock(), time, transport);
  EXPECT_TRUE(core.ok()) << core.status();
  if (!core.ok()) return RunResult();
  if (before_run) before_run(core->get());
  return (*core)->Run(kStartUs);
}

TEST(OpenLoop, SendsEveryRequestExactlyAtItsScheduledTime) {
  SCOPED_TRACE(absl::StrCat("seed ", TestSeed()));
  VirtualTime time(kClockStartUs);
  ServerModel model;
  model.delay_us = 5'000;
  FakeTransport transport(&time, model);
  const workload::WorkloadOptions workload = SmallWorkload(200, 1.0);
  const std::vector<Scheduled> schedule = Schedule(workload);
  const RunResult run = RunCore(OpenLoopOptions{}, workload, &time, &transport);

  ASSERT_GT(schedule.size(), 100u) << "seed " << workload.seed;
  ASSERT_EQ(transport.sent().size(), schedule.size());
  ASSERT_EQ(run.completions.size(), schedule.size());
  for (size_t i = 0; i < schedule.size(); ++i) {
    EXPECT_EQ(transport.sent()[i].sent_us, kStartUs + schedule[i].arrival_us) << i;
    EXPECT_EQ(transport.sent()[i].user_id, schedule[i].user_id) << i;
    const Completion& c = run.completions[i];
    EXPECT_EQ(c.scheduled_us, schedule[i].arrival_us) << i;
    EXPECT_EQ(c.code, 0) << i << " " << CodeName(c.code);
    EXPECT_EQ(c.send_lag_us, 0) << i;
    EXPECT_EQ(c.latency_us, 5'000) << i;
  }
  // The run ends with the last reply.
  EXPECT_EQ(run.wall_s, static_cast<double>(schedule.back().arrival_us + 5'000) * 1e-6);
  EXPECT_EQ(run.duration_us, 1'000'000);
  EXPECT_EQ(transport.cancel_calls(), 0);
}

TEST(OpenLoop, KeepsSendingOnScheduleWhileAStalledServerQueuesAndLatencyGrows) {
  SCOPED_TRACE(absl::StrCat("seed ", TestSeed()));
  // One FIFO server at 10 ms per request (100/s) under 200/s offered for 1 s: a queue builds.
  VirtualTime time(kClockStartUs);
  ServerModel model;
  model.service_us = 10'000;
  FakeTransport transport(&time, model);
  OpenLoopOptions options;
  options.deadline_ms = 10'000;
  const workload::WorkloadOptions workload = SmallWorkload(200, 1.0);
  const std::vector<Scheduled> schedule = Schedule(workload);
  const RunResult run = RunCore(options, workload, &time, &transport);

  ASSERT_GT(schedule.size(), 140u) << "seed " << workload.seed;
  ASSERT_EQ(run.completions.size(), schedule.size());
  // Each request waits for every one before it: latency by the FIFO recurrence, exactly.
  int64_t free_us = 0;
  double early_sum = 0, late_sum = 0;
  int early_n = 0, late_n = 0;
  for (size_t i = 0; i < schedule.size(); ++i) {
    free_us = std::max(free_us, schedule[i].arrival_us) + 10'000;
    const Completion& c = run.completions[i];
    ASSERT_EQ(c.code, 0) << i << " " << CodeName(c.code);
    EXPECT_EQ(c.latency_us, free_us - schedule[i].arrival_us) << i;
    // Open loop: every request left on time although replies came later and later.
    EXPECT_EQ(transport.sent()[i].sent_us, kStartUs + schedule[i].arrival_us) << i;
    EXPECT_EQ(c.send_lag_us, 0) << i;
    if (c.scheduled_us < 200'000) early_sum += c.latency_us, ++early_n;
    if (c.scheduled_us >= 800'000) late_sum += c.latency_us, ++late_n;
  }
  ASSERT_GT(early_n, 0);
  ASSERT_GT(late_n, 0);
  // Latency grows with the queue: a second of work arrives per half second of service.
  EXPECT_GT(late_sum / late_n, early_sum / early_n + 250'000)
      << "early " << early_sum / early_n << " us, late " << late_sum / late_n << " us";
}

TEST(OpenLoop, DropsRequestsBeyondMaxInFlightInsteadOfDelayingThem) {
  SCOPED_TRACE(absl::StrCat("seed ", TestSeed()));
  // 300 ms per request in parallel, 100/s offered: ~30 would be outstanding; the cap is 8.
  VirtualTime time(kClockStartUs);
  ServerModel model;
  model.delay_us = 300'000;
  FakeTransport transport(&time, model);
  OpenLoopOptions options;
  options.max_in_flight = 8;
  const workload::WorkloadOptions workload = SmallWorkload(100, 1.0);
  const std::vector<Scheduled> schedule = Schedule(workload);
  const RunResult run = RunCore(options, workload, &time, &transport);

  // Which requests the cap admits: replies due at a request's time arrive before it is sent.
  std::vector<bool> admitted;
  std::deque<int64_t> answers_us;
  for (const Scheduled& s : schedule) {
    while (!answers_us.empty() && answers_us.front() <= s.arrival_us) answers_us.pop_front();
    admitted.push_back(answers_us.size() < 8);
    if (admitted.back()) answers_us.push_back(s.arrival_us + 300'000);
  }
  ASSERT_EQ(run.completions.size(), schedule.size());
  int64_t dropped = 0;
  size_t next_sent = 0;
  for (size_t i = 0; i < schedule.size(); ++i) {
    const Completion& c = run.completions[i];
    EXPECT_EQ(c.scheduled_us, schedule[i].arrival_us) << i;
    if (!admitted[i]) {
      ++dropped;
      EXPECT_EQ(c.code, kDroppedCode) << i;
      EXPECT_EQ(c.latency_us, 0) << i;
      EXPECT_EQ(c.send_lag_us, 0) << i;
      continue;
    }
    // A sent request was not held back: it left at its time and took the server's 300 ms.
    EXPECT_EQ(c.code, 0) << i << " " << CodeName(c.code);
    EXPECT_EQ(c.latency_us, 300'000) << i;
    EXPECT_EQ(c.send_lag_us, 0) << i;
    ASSERT_LT(next_sent, transport.sent().size());
    EXPECT_EQ(transport.sent()[next_sent++].sent_us, kStartUs + schedule[i].arrival_us) << i;
  }
  EXPECT_EQ(next_sent, transport.sent().size());
  EXPECT_GT(dropped, static_cast<int64_t>(schedule.size()) / 3) << "seed " << workload.seed;
  EXPECT_EQ(transport.max_in_flight(), 8);
  const Summary s = Summarize(run, "overall", 0, run.duration_us, 1e9);
  EXPECT_EQ(s.dropped, dropped);
  EXPECT_EQ(s.errors_by_code.at("DROPPED"), dropped);
  EXPECT_EQ(s.sent + s.dropped, s.scheduled);
  EXPECT_EQ(run.first_error.at(kDroppedCode),
            "dropped by helm-bench: 8 requests already in flight");
}

TEST(OpenLoop, DeadlineAndLatencyCountFromTheScheduledTimeNotTheSendTime) {
  SCOPED_TRACE(absl::StrCat("seed ", TestSeed()));
  // The sender runs 30 ms late; the server answers 40 ms after a request arrives, i.e. 70 ms after
  // its scheduled time: past a 50 ms deadline from the schedule (though not from the send).
  VirtualTime time(kClockStartUs, /*oversleep_us=*/30'000);
  ServerModel model;
  model.delay_us = 40'000;
  FakeTransport transport(&time, model);
  OpenLoopOptions options;
  options.deadline_ms = 50;
  const workload::WorkloadOptions workload = SmallWorkload(50, 0.4);
  const std::vector<Scheduled> schedule = Schedule(workload);
  const RunResult run = RunCore(options, workload, &time, &transport);

  ASSERT_GT(schedule.size(), 5u) << "seed " << workload.seed;
  ASSERT_EQ(transport.sent().size(), schedule.size());
  ASSERT_EQ(run.completions.size(), schedule.size());
  for (size_t i = 0; i < schedule.size(); ++i) {
    const int64_t due_us = kStartUs + schedule[i].arrival_us;
    EXPECT_EQ(transport.sent()[i].deadline_us, due_us + 50'000) << i;
    EXPECT_GE(transport.sent()[i].sent_us, due_us + 30'000) << i;
    const Completion& c = run.completions[i];
    EXPECT_EQ(c.code, static_cast<int32_t>(absl::StatusCode::kDeadlineExceeded)) << i;
    EXPECT_EQ(c.latency_us, 50'000) << i;
    EXPECT_EQ(c.send_lag_us, transport.sent()[i].sent_us - due_us) << i;
  }
  // The first request waited exactly the oversleep; a late sender's lag shows in the figures.
  EXPECT_EQ(run.completions.front().send_lag_us, 30'000);
  const Summary s = Summarize(run, "overall", 0, run.duration_us, 1e9);
  EXPECT_EQ(s.errors_by_code.at("DEADLINE_EXCEEDED"), s.scheduled);
  EXPECT_EQ(s.ok, 0);
  EXPECT_GE(s.max_send_lag_us, 30'000);
}

TEST(OpenLoop, CountsErrorsByCodeAndKeepsServingInfoOfOkReplies) {
  SCOPED_TRACE(absl::StrCat("seed ", TestSeed()));
  VirtualTime time(kClockStartUs);
  ServerModel model;
  model.delay_us = 2'000;
  model.code_by_user_mod4 = {absl::StatusCode::kOk, absl::StatusCode::kResourceExhausted,
                             absl::StatusCode::kInvalidArgument, absl::StatusCode::kUnavailable};
  FakeTransport transport(&time, model);
  const workload::WorkloadOptions workload = SmallWorkload(300, 0.7);
  std::map<int64_t, int64_t> by_mod;
  for (const Scheduled& s : Schedule(workload)) ++by_mod[s.user_id % 4];
  const RunResult run = RunCore(OpenLoopOptions{}, workload, &time, &transport);

  const Summary s = Summarize(run, "overall", 0, run.duration_us, 1e9);
  const auto count = [&s](const std::string& code) {
    return s.errors_by_code.count(code) ? s.errors_by_code.at(code) : 0;
  };
  EXPECT_GT(by_mod[0], 0) << "seed " << workload.seed;
  EXPECT_EQ(s.ok, by_mod[0]);
  EXPECT_EQ(count("RESOURCE_EXHAUSTED"), by_mod[1]);
  EXPECT_EQ(count("INVALID_ARGUMENT"), by_mod[2]);
  EXPECT_EQ(count("UNAVAILABLE"), by_mod[3]);
  EXPECT_EQ(s.errors, by_mod[1] + by_mod[2] + by_mod[3]);
  EXPECT_EQ(s.dropped, 0);
  EXPECT_EQ(run.first_error.at(static_cast<int32_t>(absl::StatusCode::kUnavailable)),
            "chosen by the test");
  // Only OK replies name their node (users = 0 mod 4 are even: all on node-a).
  ASSERT_EQ(run.node_ids, std::vector<std::string>{"node-a"});
  for (const Completion& c : run.completions) {
    if (c.code == 0) {
      EXPECT_EQ(c.node, 0);
      EXPECT_EQ(c.info.emb_hits, 16);
      EXPECT_EQ(c.info.cached_tokens, (c.info.cached_tokens + c.info.computed_tokens) * 3 / 4);
    } else {
      EXPECT_EQ(c.node, -1);
      EXPECT_EQ(c.info.emb_hits, 0);
    }
  }
}

TEST(OpenLoop, CancelsStragglersAGracePeriodAfterTheLastDeadline) {
  SCOPED_TRACE(absl::StrCat("seed ", TestSeed()));
  // A transport that misses its deadlines: only CancelAll ends its requests.
  VirtualTime time(kClockStartUs);
  ServerModel model;
  model.never_answers = true;
  FakeTransport transport(&time, model);
  OpenLoopOptions options;
  options.deadline_ms = 100;
  options.straggler_grace_ms = 2'000;
  const workload::WorkloadOptions workload = SmallWorkload(50, 0.5);
  const std::vector<Scheduled> schedule = Schedule(workload);
  const RunResult run = RunCore(options, workload, &time, &transport);

  ASSERT_FALSE(schedule.empty());
  const int64_t give_up_us = schedule.back().arrival_us + 100'000 + 2'000'000;
  EXPECT_EQ(transport.cancel_calls(), 1);
  EXPECT_EQ(transport.cancelled_at_us(), kStartUs + give_up_us);
  EXPECT_EQ(transport.in_flight(), 0);
  ASSERT_EQ(run.completions.size(), schedule.size());
  for (size_t i = 0; i < schedule.size(); ++i) {
    EXPECT_EQ(run.completions[i].code, static_cast<int32_t>(absl::StatusCode::kCancelled)) << i;
    EXPECT_EQ(run.completions[i].latency_us, give_up_us - schedule[i].arrival_us) << i;
  }
  EXPECT_EQ(run.wall_s, static_cast<double>(give_up_us) * 1e-6);
}

TEST(OpenLoop, ARequestAnsweredInsideSendFreesItsSlot) {
  SCOPED_TRACE(absl::StrCat("seed ", TestSeed()));
  // Replies may come before Send returns (on another thread, or inline): the slot is free again.
  VirtualTime time(kClockStartUs);
  ServerModel model;
  model.answer_inline = true;
  FakeTransport transport(&time, model);
  OpenLoopOptions options;
  options.max_in_flight = 1;
  const workload::WorkloadOptions workload = SmallWorkload(200, 0.5);
  const std::vector<Scheduled> schedule = Schedule(workload);
  const RunResult run = RunCore(options, workload, &time, &transport);

  ASSERT_EQ(run.completions.size(), schedule.size());
  for (const Completion& c : run.completions) {
    EXPECT_EQ(c.code, 0) << CodeName(c.code);
    EXPECT_EQ(c.latency_us, 0);
  }
  EXPECT_EQ(transport.sent().size(), schedule.size());
}

TEST(OpenLoop, ProgressCountsRequestsInFlightAndDone) {
  SCOPED_TRACE(absl::StrCat("seed ", TestSeed()));
  VirtualTime time(kClockStartUs);
  ServerModel model;
  model.delay_us = 300'000;
  FakeTransport transport(&time, model);
  const workload::WorkloadOptions workload = SmallWorkload(100, 1.0);
  const std::vector<Scheduled> schedule = Schedule(workload);
  Progress before;
  Progress at_half;
  int64_t probe_us = -1;
  const RunResult run =
      RunCore(OpenLoopOptions{}, workload, &time, &transport, [&](OpenLoop* core) {
        before = core->progress();
        // Scheduled before any request, so at 500 ms it runs before the sends and replies due
        // then: it sees the requests scheduled before 500 ms sent, those before 200 ms answered.
        time.At(kStartUs + 500'000, [&, core] {
          at_half = core->progress();
          probe_us = core->NowUs();
        });
      });

  int64_t sent = 0, done = 0;
  for (const Scheduled& s : schedule) {
    sent += s.arrival_us < 500'000 ? 1 : 0;
    done += s.arrival_us < 200'000 ? 1 : 0;
  }
  EXPECT_EQ(before.sent, 0);
  EXPECT_EQ(probe_us, 500'000);
  EXPECT_GT(done, 0) << "seed " << workload.seed;
  EXPECT_EQ(at_half.sent, sent);
  EXPECT_EQ(at_half.ok, done);
  EXPECT_EQ(at_half.in_flight, sent - done);
  EXPECT_EQ(at_half.errors + at_half.dropped, 0);
  EXPECT_EQ(at_half.ok_within_slo, 0);  // 300 ms > the 80 ms SLO
  EXPECT_EQ(run.completions.size(), schedule.size());
}

TEST(OpenLoop, RejectsBadOptionsNamingThem) {
  OpenLoopOptions options;
  options.max_in_flight = 0;
  absl::Status status = OpenLoop::Validate(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("max_in_flight"), absl::string_view::npos);
  options = OpenLoopOptions{};
  options.deadline_ms = 0;
  EXPECT_NE(OpenLoop::Validate(options).message().find("deadline_ms"), absl::string_view::npos);
  options = OpenLoopOptions{};
  options.straggler_grace_ms = -1;
  EXPECT_NE(OpenLoop::Validate(options).message().find("straggler_grace_ms"),
            absl::string_view::npos);
  EXPECT_TRUE(OpenLoop::Validate(OpenLoopOptions{}).ok());

  VirtualTime time(kClockStartUs);
  std::unique_ptr<workload::Generator> generator =
      *workload::Generator::Create(SmallWorkload(10, 0.1));
  EXPECT_EQ(OpenLoop::Create(OpenLoopOptions{}, generator.get(), time.clock(), &time, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace helm::bench
