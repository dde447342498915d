// Trace replay: the events of a CSV trace, in time order, become Rank requests.
//
// Events are replayed in timestamp order (file order among equal timestamps). A user's k-th event
// (0-based, k >= 1, k a multiple of trace_events_per_request) is a request whose history is the
// user's events before it (capped like synthetic histories: when it outgrows max_history it drops
// to 3/4 of the cap in one step) and whose candidates are the event's own item (the item the user
// actually engaged with next) followed by items drawn by their frequency in the trace and uniform
// items of the catalog. Arrival times are the trace's timestamps sped up by trace_speedup, or
// Poisson at rate_per_s in trace order when trace_speedup is 0.
#include <algorithm>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "helm/workload/generator.h"
#include "helm/workload/random.h"
#include "helm/workload/trace.h"
#include "workload/generators.h"

namespace helm::workload::internal {
namespace {

struct UserState {
  int64_t events_seen = 0;  // including events dropped by truncation
  std::vector<int64_t> items;
  std::vector<int32_t> actions;
  std::vector<int64_t> timestamps_ms;
  bool truncated_since_request = false;
};

class TraceGenerator final : public Generator {
 public:
  TraceGenerator(const WorkloadOptions& options, std::vector<TraceEvent> events,
                 DatasetProfile profile, std::vector<Phase> phases, int64_t num_requests)
      : options_(options),
        events_(std::move(events)),
        profile_(std::move(profile)),
        phases_(std::move(phases)),
        num_requests_(num_requests),
        rng_(options.seed),
        arrival_rng_(options.seed ^ 0xa5a5a5a5ULL) {
    keep_after_truncation_ = std::max(1, profile_.max_history - profile_.max_history / 4);
  }

  bool Next(Request* request) override {
    if (pending_ >= 0) {
      Append(events_[static_cast<size_t>(pending_)]);
      pending_ = -1;
    }
    if (emitted_ >= num_requests_) return false;
    while (cursor_ < events_.size()) {
      const size_t index = cursor_++;
      const TraceEvent& event = events_[index];
      auto [it, inserted] =
          user_index_.try_emplace(event.user_id, static_cast<int32_t>(users_.size()));
      if (inserted) users_.emplace_back();
      UserState& user = users_[it->second];
      const int64_t k = user.events_seen;
      if (k == 0 || k % options_.trace_events_per_request != 0) {
        Append(event);
        continue;
      }
      *request = Request();
      request->arrival_us = NextArrivalUs(event);
      request->user_id = event.user_id;
      request->phase = 0;
      request->first_visit = k == options_.trace_events_per_request;
      request->new_events = request->first_visit ? static_cast<int32_t>(user.items.size())
                                                 : options_.trace_events_per_request;
      request->truncated = user.truncated_since_request;
      user.truncated_since_request = false;
      request->history_item_ids = user.items;
      request->history_actions = user.actions;
      request->history_timestamps_ms = user.timestamps_ms;
      FillCandidates(event.item_id);
      request->candidate_item_ids = candidates_;
      pending_ = static_cast<int64_t>(index);
      ++emitted_;
      return true;
    }
    return false;
  }

  const std::vector<Phase>& phases() const override { return phases_; }
  double RatePerS(int64_t t_us) const override {
    if (t_us < 0 || t_us >= duration_us()) return 0.0;
    return options_.trace_speedup > 0 ? static_cast<double>(num_requests_) * 1e6 /
                                            static_cast<double>(std::max<int64_t>(1, duration_us()))
                                      : options_.rate_per_s;
  }
  int64_t num_items() const override { return profile_.num_items; }
  int64_t num_users() const override { return profile_.num_users; }
  int32_t max_history() const override { return profile_.max_history; }
  const DatasetProfile& profile() const override { return profile_; }

 private:
  int64_t NextArrivalUs(const TraceEvent& event) {
    if (options_.trace_speedup > 0) {
      if (first_request_ms_ < 0) first_request_ms_ = event.timestamp_ms;
      return static_cast<int64_t>(static_cast<double>(event.timestamp_ms - first_request_ms_) *
                                  1000.0 / options_.trace_speedup);
    }
    const int64_t t = static_cast<int64_t>(poisson_t_us_);
    poisson_t_us_ += arrival_rng_.Exponential(1e6 / options_.rate_per_s);
    return t;
  }

  void Append(const TraceEvent& event) {
    UserState& user = users_[user_index_.at(event.user_id)];
    ++user.events_seen;
    user.items.push_back(event.item_id);
    user.actions.push_back(event.action);
    user.timestamps_ms.push_back(event.timestamp_ms);
    const int64_t size = static_cast<int64_t>(user.items.size());
    if (size <= profile_.max_history) return;
    const int64_t drop = size - keep_after_truncation_;
    user.items.erase(user.items.begin(), user.items.begin() + drop);
    user.actions.erase(user.actions.begin(), user.actions.begin() + drop);
    user.timestamps_ms.erase(user.timestamps_ms.begin(), user.timestamps_ms.begin() + drop);
    user.truncated_since_request = true;
  }

  void FillCandidates(int64_t next_item) {
    const int32_t total = options_.candidates;
    const int32_t popular =
        static_cast<int32_t>(std::llround((total - 1) * options_.candidate_popular_share));
    candidates_.resize(total);
    candidates_[0] = next_item;
    int32_t i = 1;
    // A uniformly chosen event's item: items drawn by their frequency in the trace.
    for (; i < 1 + popular; ++i) candidates_[i] = events_[rng_.Below(events_.size())].item_id;
    for (; i < total; ++i) {
      candidates_[i] = static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(profile_.num_items)));
    }
  }

  const WorkloadOptions options_;
  const std::vector<TraceEvent> events_;  // in replay order
  const DatasetProfile profile_;
  const std::vector<Phase> phases_;
  const int64_t num_requests_;  // requests within the run's duration
  Rng rng_;
  Rng arrival_rng_;
  int32_t keep_after_truncation_ = 1;

  size_t cursor_ = 0;
  int64_t pending_ = -1;  // event of the last request, appended to its user on the next call
  int64_t emitted_ = 0;
  int64_t first_request_ms_ = -1;
  double poisson_t_us_ = 0;
  absl::flat_hash_map<int64_t, int32_t> user_index_;
  std::vector<UserState> users_;
  std::vector<int64_t> candidates_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Generator>> NewTraceGenerator(const WorkloadOptions& options) {
  TraceParseOptions parse;
  parse.num_actions = options.num_actions;
  parse.max_items = options.max_items;
  parse.fold_items = options.trace_fold_items;
  absl::StatusOr<std::vector<TraceEvent>> read = ReadTraceFile(options.trace_path, parse);
  if (!read.ok()) return read.status();
  std::vector<TraceEvent> events = *std::move(read);
  std::stable_sort(events.begin(), events.end(), [](const TraceEvent& a, const TraceEvent& b) {
    return a.timestamp_ms < b.timestamp_ms;
  });

  // A dry pass over the replay order: the users, the catalog, and which events become requests
  // (and when), so the run's duration is known up front.
  DatasetProfile profile;
  profile.name = "trace";
  profile.source = options.trace_path;
  absl::flat_hash_map<int64_t, int64_t> seen;
  int64_t max_item = 0;
  for (const TraceEvent& event : events) max_item = std::max(max_item, event.item_id);
  const int64_t per_request = options.trace_events_per_request;
  const int64_t duration_limit_us = static_cast<int64_t>(options.duration_s * 1e6);
  Rng arrival_rng(options.seed ^ 0xa5a5a5a5ULL);
  double poisson_t_us = 0;
  int64_t first_ms = -1;
  int64_t num_requests = 0;
  int64_t last_arrival_us = 0;
  bool ended = false;
  for (const TraceEvent& event : events) {
    const int64_t k = seen[event.user_id]++;
    if (ended || k == 0 || k % per_request != 0) continue;
    int64_t arrival_us = 0;
    if (options.trace_speedup > 0) {
      if (first_ms < 0) first_ms = event.timestamp_ms;
      arrival_us = static_cast<int64_t>(static_cast<double>(event.timestamp_ms - first_ms) *
                                        1000.0 / options.trace_speedup);
    } else {
      arrival_us = static_cast<int64_t>(poisson_t_us);
      poisson_t_us += arrival_rng.Exponential(1e6 / options.rate_per_s);
    }
    if (arrival_us >= duration_limit_us) {
      ended = true;
      continue;
    }
    ++num_requests;
    last_arrival_us = arrival_us;
  }
  if (num_requests == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.trace_path,
                     ": the trace yields no request (a user's first event only seeds its "
                     "history; requests come at every ",
                     per_request, "-th later event)"));
  }
  profile.num_users = static_cast<int64_t>(seen.size());
  profile.num_items = options.max_items > 0 ? options.max_items : max_item + 1;
  profile.mean_history =
      static_cast<double>(events.size()) / static_cast<double>(profile.num_users);
  profile.max_history = options.max_history > 0 ? options.max_history : (1 << 20);

  Phase phase;
  phase.regime = Regime::kTrace;
  phase.name = "trace";
  phase.start_us = 0;
  phase.duration_us = ended ? duration_limit_us : last_arrival_us + 1;
  return std::unique_ptr<Generator>(
      new TraceGenerator(options, std::move(events), std::move(profile), {phase}, num_requests));
}

}  // namespace helm::workload::internal
