// Synthetic workloads: Zipf users and items, log-normal histories that grow on every revisit, and
// arrivals shaped by the phases' regimes; optionally in sessions.
#include <algorithm>
#include <cmath>
#include <memory>
#include <queue>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "helm/workload/generator.h"
#include "helm/workload/random.h"
#include "workload/generators.h"

namespace helm::workload::internal {
namespace {

constexpr double kTwoPi = 6.283185307179586;

// One user's history, oldest first. Grows at the back; loses its oldest events only when it
// outgrows max_history.
struct UserState {
  std::vector<int64_t> items;
  std::vector<int32_t> actions;
  std::vector<int64_t> timestamps_ms;
};

// Session figures in effect: the profile's, overridden by the options'.
struct SessionShape {
  double requests_mean = 1;
  double gap_log_median = 0;  // log of the median gap (s)
  double gap_sigma = 0;
  int64_t gap_min_us = 0;
  int64_t gap_max_us = 0;
  double new_events_mean = 1;
  int64_t away_min_us = 0;
};

// The next request of a session in progress (one per active session).
struct PendingRequest {
  int64_t t_us = 0;
  uint64_t seq = 0;  // breaks ties in creation order, so the order never depends on the heap
  int64_t user_id = 0;
  int32_t index = 0;      // position in the session (0: its first request)
  int32_t remaining = 0;  // requests of the session after this one
  bool crowd = false;
};

struct LaterFirst {
  bool operator()(const PendingRequest& a, const PendingRequest& b) const {
    return a.t_us != b.t_us ? a.t_us > b.t_us : a.seq > b.seq;
  }
};

// Where a user stands with respect to sessions.
struct UserSessionState {
  int32_t active = 0;         // sessions in progress (more than 1 only when users are too few)
  int64_t away_until_us = 0;  // no new session before this while other users are free
};

class SyntheticGenerator final : public Generator {
 public:
  SyntheticGenerator(const WorkloadOptions& options, DatasetProfile profile,
                     std::vector<Phase> phases, uint64_t catalog_seed)
      : options_(options),
        profile_(std::move(profile)),
        phases_(std::move(phases)),
        rng_(options.seed),
        item_zipf_(profile_.num_items, profile_.item_zipf),
        user_zipf_(profile_.num_users, profile_.user_zipf),
        item_perm_(profile_.num_items, catalog_seed ^ 0x1234567ULL),
        user_perm_(profile_.num_users, options.seed ^ 0x7654321ULL) {
    // mu such that the untruncated log-normal has the profile's mean.
    log_mu_ =
        std::log(profile_.mean_history) - 0.5 * profile_.history_sigma * profile_.history_sigma;
    new_events_mean_ = options.new_events_per_visit > 0 ? options.new_events_per_visit
                                                        : profile_.new_events_per_visit;
    keep_after_truncation_ = std::max(1, profile_.max_history - profile_.max_history / 4);
    auto pick = [](double override_value, double profile_value) {
      return override_value > 0 ? override_value : profile_value;
    };
    session_.requests_mean =
        std::max(1.0, pick(options.session_requests_mean, profile_.session_requests_mean));
    session_.gap_log_median =
        std::log(pick(options.session_gap_median_s, profile_.session_gap_median_s));
    session_.gap_sigma = profile_.session_gap_sigma;
    session_.gap_min_us = static_cast<int64_t>(
        std::llround(pick(options.session_gap_min_s, profile_.session_gap_min_s) * 1e6));
    session_.gap_max_us = static_cast<int64_t>(
        std::llround(pick(options.session_gap_max_s, profile_.session_gap_max_s) * 1e6));
    session_.new_events_mean =
        std::max(1.0, pick(options.session_new_events_mean, profile_.session_new_events_mean));
    session_.away_min_us = static_cast<int64_t>(
        std::llround(pick(options.session_away_min_s, profile_.session_away_min_s) * 1e6));
    // Cumulative action weights, folded onto [0, num_actions).
    std::vector<double> folded(static_cast<size_t>(options.num_actions), 0.0);
    for (size_t a = 0; a < profile_.action_weights.size(); ++a) {
      folded[a % folded.size()] += profile_.action_weights[a];
    }
    double sum = 0;
    for (double w : folded) sum += w;
    double acc = 0;
    for (double w : folded) {
      acc += sum > 0 ? w / sum : 1.0 / static_cast<double>(folded.size());
      action_cdf_.push_back(acc);
    }
    // Seconds of trend regime before each phase: popularity rotation only advances in trend
    // phases and is kept (not undone) by the phases that follow.
    double trend_s = 0;
    for (const Phase& phase : phases_) {
      trend_before_s_.push_back(trend_s);
      if (phase.regime == Regime::kTrend) trend_s += static_cast<double>(phase.duration_us) * 1e-6;
    }
    EnterPhase(0);
    if (options_.sessions) StartSessions();
  }

  bool Next(Request* request) override {
    if (options_.sessions) return NextInSession(request);
    if (!NextArrival()) return false;
    const Phase& phase = phases_[phase_];
    const int64_t t_us = static_cast<int64_t>(t_us_);
    *request = Request();
    request->arrival_us = t_us;
    request->phase = static_cast<int32_t>(phase_);
    request->in_burst = InBurstWindow(phase, t_us);

    const double shift = RotationShift(phase_, t_us);
    item_shift_ = static_cast<int64_t>(shift) % profile_.num_items;
    const int64_t user_shift = static_cast<int64_t>(shift) % profile_.num_users;

    bool crowd = false;
    int64_t user_id = 0;
    if (request->in_burst && rng_.Bernoulli(options_.burst_new_user_share)) {
      crowd = true;
      user_id = profile_.num_users +
                static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(options_.burst_users)));
    } else {
      const int64_t rank = user_zipf_.Sample(rng_);
      user_id = user_perm_(Rotate(rank, user_shift, profile_.num_users));
    }
    FillUserPart(request, user_id, crowd, new_events_mean_);
    return true;
  }

  const std::vector<Phase>& phases() const override { return phases_; }

  double RatePerS(int64_t t_us) const override {
    for (const Phase& phase : phases_) {
      if (t_us >= phase.start_us && t_us < phase.end_us()) return Rate(phase, t_us);
    }
    return 0.0;
  }

  int64_t num_items() const override { return profile_.num_items; }
  int64_t num_users() const override { return profile_.num_users; }
  int32_t max_history() const override { return profile_.max_history; }
  const DatasetProfile& profile() const override { return profile_; }

 private:
  // Everything after the choice of the user: the history (created or extended by about
  // `new_events_mean` events) and the candidates.
  void FillUserPart(Request* request, int64_t user_id, bool crowd, double new_events_mean) {
    const int64_t t_us = request->arrival_us;
    request->user_id = user_id;
    request->crowd_user = crowd;
    // Crowd users' events lean on the hot set while their burst lasts.
    const double hot_share = crowd && request->in_burst ? options_.burst_hot_share : 0.0;

    const int64_t now_ms = kEpochMs + t_us / 1000;
    auto [it, inserted] = user_index_.try_emplace(user_id, static_cast<int32_t>(users_.size()));
    if (inserted) users_.emplace_back();
    UserState& user = users_[it->second];
    if (inserted) {
      const int32_t length = crowd ? NewCrowdHistoryLength() : InitialHistoryLength();
      InitHistory(user, length, now_ms, hot_share);
      request->first_visit = true;
      request->new_events = length;
    } else {
      int64_t k = 1 + rng_.Poisson(std::max(0.0, new_events_mean - 1.0));
      k = std::min<int64_t>(k, keep_after_truncation_);
      request->truncated = AppendEvents(user, static_cast<int32_t>(k), now_ms, hot_share);
      request->new_events = static_cast<int32_t>(k);
    }
    request->history_item_ids = user.items;
    request->history_actions = user.actions;
    request->history_timestamps_ms = user.timestamps_ms;

    FillCandidates(request->in_burst);
    request->candidate_item_ids = candidates_;
  }

  // ---- Sessions ----
  //
  // New sessions start as a non-homogeneous Poisson process at rate(t) / requests_mean, so that
  // with requests_mean requests each the request rate is rate(t) (a session's follow-ups lag its
  // start by its gaps, so the trend and burst curves come out smoothed by a session's length).
  // Each active session keeps exactly one pending request in a min-heap; emitting it schedules the
  // next one a gap later. The run starts in the steady state: a warm-up over the time a session
  // can last simulates the sessions begun before time 0, and those still running at 0 go on
  // (with a user each; users whose sessions ended before 0 are not tracked).

  void StartSessions() {
    session_start_phase_ = 0;
    session_start_t_us_ = static_cast<double>(phases_[0].start_us);
    const SessionShape& shape = session_;
    // Requests k such that P(length - 1 >= k) < 1e-3, and a bound on the time they take.
    const double p = 1.0 / shape.requests_mean;
    const double k = p >= 1.0 ? 0.0 : std::ceil(std::log(1e-3) / std::log1p(-p));
    const double mean_gap_us =
        std::exp(shape.gap_log_median + 0.5 * shape.gap_sigma * shape.gap_sigma) * 1e6;
    const double warmup_us =
        std::min(k * static_cast<double>(shape.gap_max_us), 2.0 * k * std::max(mean_gap_us, 1.0));
    if (!(warmup_us > 0)) return;
    const double rate = Rate(phases_[0], phases_[0].start_us) / shape.requests_mean;
    double t = -warmup_us;
    while (true) {
      t += rng_.Exponential(1e6 / rate);
      if (t >= 0) break;
      // Walk the session's requests up to the first one at or after 0; only sessions still
      // running then need a user (the others would only have set an away time).
      int32_t remaining = SessionLength() - 1;
      int32_t index = 0;
      int64_t at_us = static_cast<int64_t>(std::floor(t));
      while (at_us < 0 && remaining > 0) {
        at_us += SessionGapUs();
        ++index;
        --remaining;
      }
      if (at_us < 0) continue;
      int64_t busy_user = -1;
      int64_t user_id = PickSessionUser(0, /*user_shift=*/0, &busy_user);
      if (user_id < 0) user_id = busy_user;  // users too few: see BeginSession
      ++session_users_[user_id].active;
      Schedule(at_us, user_id, index, remaining, /*crowd=*/false);
    }
  }

  bool NextInSession(Request* request) {
    const int64_t end_us = duration_us();
    while (true) {
      if (!session_start_ready_ && session_start_phase_ < phases_.size()) {
        session_start_ready_ = NextSessionStart();
      }
      const bool start_first =
          session_start_ready_ &&
          (pending_.empty() || static_cast<double>(pending_.top().t_us) > session_start_t_us_);
      if (start_first) {
        session_start_ready_ = false;
        BeginSession(static_cast<int64_t>(session_start_t_us_));
        continue;
      }
      if (pending_.empty()) return false;
      const PendingRequest next = pending_.top();
      pending_.pop();
      if (next.t_us >= end_us) {
        --session_users_[next.user_id].active;
        continue;
      }
      while (next.t_us >= phases_[phase_].end_us()) EnterPhase(phase_ + 1);
      EmitSessionRequest(next, request);
      return true;
    }
  }

  // Thinning against the phase's peak rate, as NextArrival, at 1 / requests_mean of the rate.
  bool NextSessionStart() {
    while (session_start_phase_ < phases_.size()) {
      const Phase& phase = phases_[session_start_phase_];
      const double peak = MaxRate(phase) / session_.requests_mean;
      session_start_t_us_ += rng_.Exponential(1e6 / peak);
      if (session_start_t_us_ >= static_cast<double>(phase.end_us())) {
        ++session_start_phase_;
        if (session_start_phase_ < phases_.size()) {
          session_start_t_us_ = static_cast<double>(phases_[session_start_phase_].start_us);
        }
        continue;
      }
      const int64_t t = static_cast<int64_t>(session_start_t_us_);
      if (phase.regime == Regime::kSteady ||
          rng_.Uniform() * peak < Rate(phase, t) / session_.requests_mean) {
        return true;
      }
    }
    return false;
  }

  void BeginSession(int64_t t_us) {
    const Phase& phase = phases_[session_start_phase_];
    const int32_t length = SessionLength();
    int64_t user_id = -1;
    bool crowd = false;
    if (InBurstWindow(phase, t_us) && rng_.Bernoulli(options_.burst_new_user_share)) {
      // A flash-crowd user not in a session. When the crowd is too small for its share of the
      // sessions, a regular user takes the session (the rate holds, the crowd's share falls).
      for (int tries = 0; tries < kMaxUserDraws && user_id < 0; ++tries) {
        const int64_t id =
            profile_.num_users +
            static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(options_.burst_users)));
        auto it = session_users_.find(id);
        if (it == session_users_.end() || it->second.active == 0) user_id = id;
      }
      crowd = user_id >= 0;
    }
    int64_t busy_user = -1;
    if (user_id < 0) {
      const double shift = RotationShift(session_start_phase_, t_us);
      user_id = PickSessionUser(t_us, static_cast<int64_t>(shift) % profile_.num_users, &busy_user);
    }
    if (user_id < 0) {
      // Every user drawn is in a session: users are too few for the rate (fewer than about the
      // sessions in progress, rate x mean gap). The rate comes first: the last user drawn gets a
      // second session in parallel, so its requests interleave.
      user_id = busy_user;
    }
    ++session_users_[user_id].active;
    Schedule(t_us, user_id, /*index=*/0, length - 1, crowd);
  }

  // A user for a new session: Zipf by activity, preferring users neither in a session nor within
  // their away time, then users merely away, then any user not in a session (uniform draws).
  // -1 when every draw is in a session; `busy_user` is then the last one drawn.
  int64_t PickSessionUser(int64_t t_us, int64_t user_shift, int64_t* busy_user) {
    int64_t away = -1;
    for (int tries = 0; tries < kMaxUserDraws; ++tries) {
      const int64_t rank = user_zipf_.Sample(rng_);
      const int64_t id = user_perm_(Rotate(rank, user_shift, profile_.num_users));
      auto it = session_users_.find(id);
      if (it == session_users_.end()) return id;
      if (it->second.active > 0) {
        *busy_user = id;
        continue;
      }
      if (t_us >= it->second.away_until_us) return id;
      if (away < 0) away = id;
    }
    if (away >= 0) return away;
    for (int tries = 0; tries < kMaxUserDraws; ++tries) {
      const int64_t id =
          static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(profile_.num_users)));
      auto it = session_users_.find(id);
      if (it == session_users_.end() || it->second.active == 0) return id;
      *busy_user = id;
    }
    return -1;
  }

  void EmitSessionRequest(const PendingRequest& next, Request* request) {
    const Phase& phase = phases_[phase_];
    *request = Request();
    request->arrival_us = next.t_us;
    request->phase = static_cast<int32_t>(phase_);
    request->in_burst = InBurstWindow(phase, next.t_us);
    request->session_request = next.index;
    const double shift = RotationShift(phase_, next.t_us);
    item_shift_ = static_cast<int64_t>(shift) % profile_.num_items;
    FillUserPart(request, next.user_id, next.crowd,
                 next.index == 0 ? new_events_mean_ : session_.new_events_mean);
    if (next.remaining > 0) {
      Schedule(next.t_us + SessionGapUs(), next.user_id, next.index + 1, next.remaining - 1,
               next.crowd);
    } else {
      UserSessionState& state = session_users_[next.user_id];
      if (--state.active == 0) state.away_until_us = next.t_us + session_.away_min_us;
    }
  }

  void Schedule(int64_t t_us, int64_t user_id, int32_t index, int32_t remaining, bool crowd) {
    PendingRequest pending;
    pending.t_us = t_us;
    pending.seq = next_seq_++;
    pending.user_id = user_id;
    pending.index = index;
    pending.remaining = remaining;
    pending.crowd = crowd;
    pending_.push(pending);
  }

  // Geometric on {1, 2, ...} with mean requests_mean (inversion).
  int32_t SessionLength() {
    const double p = 1.0 / session_.requests_mean;
    if (p >= 1.0) return 1;
    const double n = 1.0 + std::floor(std::log(rng_.UniformPositive()) / std::log1p(-p));
    return static_cast<int32_t>(std::min(n, 1e6));
  }

  int64_t SessionGapUs() {
    const double gap_us =
        std::exp(session_.gap_log_median + session_.gap_sigma * rng_.Normal()) * 1e6;
    return std::clamp(static_cast<int64_t>(std::llround(std::min(gap_us, 1e15))),
                      session_.gap_min_us, session_.gap_max_us);
  }

  // (rank - shift) mod n for rank, shift in [0, n): no division on the per-event path.
  static int64_t Rotate(int64_t rank, int64_t shift, int64_t n) {
    const int64_t r = rank - shift;
    return r < 0 ? r + n : r;
  }

  double Rate(const Phase& phase, int64_t t_us) const {
    const double base = options_.rate_per_s;
    switch (phase.regime) {
      case Regime::kTrend: {
        const double period_us = options_.trend_period_s > 0
                                     ? options_.trend_period_s * 1e6
                                     : static_cast<double>(phase.duration_us);
        const double x = static_cast<double>(t_us - phase.start_us) / period_us;
        return base * (1.0 - options_.trend_amplitude * std::cos(kTwoPi * x));
      }
      case Regime::kBurst:
        return InBurstWindow(phase, t_us) ? base * options_.burst_rate_multiplier : base;
      default:
        return base;
    }
  }

  double MaxRate(const Phase& phase) const {
    return options_.rate_per_s * options_.PeakRateFactor(phase.regime);
  }

  bool InBurstWindow(const Phase& phase, int64_t t_us) const {
    if (phase.regime != Regime::kBurst) return false;
    const double d = static_cast<double>(phase.duration_us);
    const double begin = static_cast<double>(phase.start_us) + options_.burst_start_fraction * d;
    const double end = begin + options_.burst_length_fraction * d;
    const double t = static_cast<double>(t_us);
    return t >= begin && t < end;
  }

  // Popularity ranks rotated so far (at `t_us`, in phase `index`): trend seconds elapsed times the
  // rotation speed.
  double RotationShift(size_t index, int64_t t_us) const {
    const Phase& phase = phases_[index];
    double trend_s = trend_before_s_[index];
    if (phase.regime == Regime::kTrend) {
      trend_s += static_cast<double>(t_us - phase.start_us) * 1e-6;
    }
    return std::floor(trend_s * options_.trend_rotation_ranks_per_s);
  }

  void EnterPhase(size_t index) {
    phase_ = index;
    if (phase_ >= phases_.size()) return;
    const Phase& phase = phases_[phase_];
    t_us_ = static_cast<double>(phase.start_us);
    if (phase.regime == Regime::kBurst) {
      hot_items_.clear();
      for (int32_t i = 0; i < options_.burst_hot_items; ++i) {
        hot_items_.push_back(
            static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(profile_.num_items))));
      }
    }
  }

  // Non-homogeneous Poisson arrivals by thinning against the phase's peak rate; a candidate
  // arrival past the phase's end restarts the (memoryless) process in the next phase.
  bool NextArrival() {
    while (phase_ < phases_.size()) {
      const Phase& phase = phases_[phase_];
      const double peak = MaxRate(phase);
      t_us_ += rng_.Exponential(1e6 / peak);
      if (t_us_ >= static_cast<double>(phase.end_us())) {
        EnterPhase(phase_ + 1);
        continue;
      }
      const int64_t t = static_cast<int64_t>(t_us_);
      if (phase.regime == Regime::kSteady || rng_.Uniform() * peak < Rate(phase, t)) return true;
    }
    return false;
  }

  // A user whose drawn history exceeds max_history arrives with its most recent 3/4 of the cap,
  // as right after a truncation, so it has room to grow before the prefix next changes.
  int32_t InitialHistoryLength() {
    const double x = std::round(std::exp(log_mu_ + profile_.history_sigma * rng_.Normal()));
    if (x > static_cast<double>(profile_.max_history)) return keep_after_truncation_;
    return static_cast<int32_t>(std::max(x, static_cast<double>(profile_.min_history)));
  }

  // A new user of the flash crowd: a short history (one visit's worth of events).
  int32_t NewCrowdHistoryLength() {
    const int64_t length = 1 + rng_.Poisson(std::max(0.0, new_events_mean_ - 1.0));
    return static_cast<int32_t>(std::min<int64_t>(length, profile_.max_history));
  }

  int64_t SampleItem(double hot_share) {
    if (hot_share > 0 && rng_.Bernoulli(hot_share)) {
      return hot_items_[rng_.Below(hot_items_.size())];
    }
    return item_perm_(Rotate(item_zipf_.Sample(rng_), item_shift_, profile_.num_items));
  }

  int32_t SampleAction() {
    const double u = rng_.Uniform();
    int32_t a = 0;
    while (a + 1 < static_cast<int32_t>(action_cdf_.size()) && u >= action_cdf_[a]) ++a;
    return a;
  }

  void InitHistory(UserState& user, int32_t length, int64_t now_ms, double hot_share) {
    // Room to grow (histories never exceed the cap), so revisits rarely reallocate.
    const size_t capacity =
        static_cast<size_t>(std::min<int64_t>(profile_.max_history, 2 * int64_t{length} + 16));
    user.items.reserve(capacity);
    user.actions.reserve(capacity);
    user.timestamps_ms.reserve(capacity);
    user.items.resize(length);
    user.actions.resize(length);
    user.timestamps_ms.resize(length);
    // Gaps uniform in [0, 2 * mean): the profile's mean without a logarithm per event (initial
    // histories of long-sequence profiles hold thousands of events).
    const uint64_t gap_range_ms =
        std::max<uint64_t>(1, static_cast<uint64_t>(2.0 * profile_.mean_event_gap_s * 1000.0));
    int64_t t = now_ms;
    for (int32_t i = length - 1; i >= 0; --i) {
      user.timestamps_ms[i] = t;
      t -= static_cast<int64_t>(rng_.Below(gap_range_ms));
    }
    for (int32_t i = 0; i < length; ++i) {
      user.items[i] = SampleItem(hot_share);
      user.actions[i] = SampleAction();
    }
  }

  // Appends `k` events spread evenly over (last event, now]; returns true when the oldest events
  // had to be dropped to stay within max_history.
  bool AppendEvents(UserState& user, int32_t k, int64_t now_ms, double hot_share) {
    const int64_t last_ms = user.timestamps_ms.empty() ? now_ms : user.timestamps_ms.back();
    const int64_t span_ms = std::max<int64_t>(0, now_ms - last_ms);
    for (int32_t j = 0; j < k; ++j) {
      user.items.push_back(SampleItem(hot_share));
      user.actions.push_back(SampleAction());
      user.timestamps_ms.push_back(last_ms + span_ms * (j + 1) / k);
    }
    const int64_t size = static_cast<int64_t>(user.items.size());
    if (size <= profile_.max_history) return false;
    // Drop down to 3/4 of the cap in one step, so the prefix then stays stable for a while
    // instead of changing on every request (a sliding window would defeat any KV cache).
    const int64_t drop = size - keep_after_truncation_;
    user.items.erase(user.items.begin(), user.items.begin() + drop);
    user.actions.erase(user.actions.begin(), user.actions.begin() + drop);
    user.timestamps_ms.erase(user.timestamps_ms.begin(), user.timestamps_ms.begin() + drop);
    return true;
  }

  void FillCandidates(bool in_burst) {
    const int32_t total = options_.candidates;
    const int32_t hot =
        in_burst ? static_cast<int32_t>(std::llround(total * options_.burst_hot_share)) : 0;
    const int32_t popular =
        static_cast<int32_t>(std::llround((total - hot) * options_.candidate_popular_share));
    candidates_.resize(total);
    int32_t i = 0;
    for (; i < hot; ++i) candidates_[i] = hot_items_[rng_.Below(hot_items_.size())];
    // The popular ones in one pass over the Zipf sampler (the same draws as one SampleItem each).
    item_zipf_.SampleMany(rng_, candidates_.data() + i, popular);
    for (; i < hot + popular; ++i) {
      candidates_[i] = item_perm_(Rotate(candidates_[i], item_shift_, profile_.num_items));
    }
    for (; i < total; ++i) {
      candidates_[i] = static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(profile_.num_items)));
    }
  }

  const WorkloadOptions options_;
  const DatasetProfile profile_;
  const std::vector<Phase> phases_;
  Rng rng_;
  ZipfSampler item_zipf_;
  ZipfSampler user_zipf_;
  Permutation item_perm_;
  Permutation user_perm_;
  double log_mu_ = 0;
  double new_events_mean_ = 1;
  int32_t keep_after_truncation_ = 1;
  std::vector<double> action_cdf_;
  std::vector<double> trend_before_s_;

  size_t phase_ = 0;
  double t_us_ = 0;
  int64_t item_shift_ = 0;
  std::vector<int64_t> hot_items_;
  absl::flat_hash_map<int64_t, int32_t> user_index_;
  std::vector<UserState> users_;
  std::vector<int64_t> candidates_;

  // Sessions.
  static constexpr int kMaxUserDraws = 32;
  SessionShape session_;
  size_t session_start_phase_ = 0;
  double session_start_t_us_ = 0;
  bool session_start_ready_ = false;
  uint64_t next_seq_ = 0;
  std::priority_queue<PendingRequest, std::vector<PendingRequest>, LaterFirst> pending_;
  absl::flat_hash_map<int64_t, UserSessionState> session_users_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Generator>> NewSyntheticGenerator(
    const WorkloadOptions& options, std::optional<uint64_t> catalog_seed) {
  absl::StatusOr<DatasetProfile> found = FindProfile(options.profile);
  if (!found.ok()) return found.status();
  DatasetProfile profile = *std::move(found);
  if (options.max_users > 0) profile.num_users = std::min(profile.num_users, options.max_users);
  if (options.max_items > 0) profile.num_items = std::min(profile.num_items, options.max_items);
  if (options.max_history > 0)
    profile.max_history = std::min(profile.max_history, options.max_history);
  profile.min_history = std::min(profile.min_history, profile.max_history);
  if (options.sessions) {
    const double gap_min_s =
        options.session_gap_min_s > 0 ? options.session_gap_min_s : profile.session_gap_min_s;
    const double gap_max_s =
        options.session_gap_max_s > 0 ? options.session_gap_max_s : profile.session_gap_max_s;
    if (gap_min_s > gap_max_s) {
      return absl::InvalidArgumentError(
          absl::StrCat("session_gap_min_s: must be <= session_gap_max_s, got ", gap_min_s, " > ",
                       gap_max_s, " (profile ", profile.name, ": [", profile.session_gap_min_s,
                       ", ", profile.session_gap_max_s, "])"));
    }
  }
  absl::StatusOr<std::vector<Phase>> phases =
      ParsePhases(options.phases, options.regime, options.duration_s);
  if (!phases.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("phases: ", phases.status().message()));
  }
  return std::unique_ptr<Generator>(new SyntheticGenerator(
      options, std::move(profile), *std::move(phases), catalog_seed.value_or(options.seed)));
}

}  // namespace helm::workload::internal
