#include "bench/recorder.h"

#include <algorithm>

namespace helm::bench {

void Recorder::Record(int64_t seq, Completion completion, const std::string& node_id,
                      const std::string& message) {
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
  completions_.emplace_back(seq, completion);
}

void Recorder::MoveInto(RunResult* result) {
  absl::MutexLock lock(&mu_);
  std::sort(completions_.begin(), completions_.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  result->completions.clear();
  result->completions.reserve(completions_.size());
  for (const auto& [seq, completion] : completions_) result->completions.push_back(completion);
  completions_.clear();
  result->node_ids = std::move(node_ids_);
  result->first_error = std::move(first_error_);
}

}  // namespace helm::bench
