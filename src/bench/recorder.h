// What the load generator keeps of each finished request: the completions for the final result,
// plus running counters and a latency histogram for the progress line.
//
// Thread-safety: thread-safe. Record may run on many threads at once, concurrently with the
// readers; a reader sees some prefix of the recordings.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bench/stats.h"
#include "helm/common/histogram.h"

namespace helm::bench {

class Recorder {
 public:
  // OK replies with a latency at or below `slo_us` count as within the SLO.
  explicit Recorder(double slo_us) : slo_us_(slo_us) {}

  // Keeps `completion` of the request at position `seq` of the schedule (each seq once);
  // `node_id` (empty: unknown) sets completion.node, and `message` is kept as the first error of
  // its code when it is the first non-OK completion of that code.
  void Record(int64_t seq, Completion completion, const std::string& node_id,
              const std::string& message);

  int64_t ok() const { return ok_.load(std::memory_order_relaxed); }
  int64_t errors() const { return errors_.load(std::memory_order_relaxed); }  // drops excluded
  int64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  int64_t ok_within_slo() const { return ok_within_slo_.load(std::memory_order_relaxed); }
  const LatencyHistogram& ok_latency() const { return ok_latency_; }

  // Moves the completions (in schedule order, by seq), node ids (in order of first appearance)
  // and first errors into `result`.
  void MoveInto(RunResult* result);

 private:
  const double slo_us_;
  std::atomic<int64_t> ok_{0};
  std::atomic<int64_t> errors_{0};
  std::atomic<int64_t> dropped_{0};
  std::atomic<int64_t> ok_within_slo_{0};
  LatencyHistogram ok_latency_;
  absl::Mutex mu_;
  std::vector<std::pair<int64_t, Completion>> completions_ ABSL_GUARDED_BY(mu_);  // by seq
  std::vector<std::string> node_ids_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, std::string> first_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace helm::bench
