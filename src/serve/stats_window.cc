#include "helm/serve/stats_window.h"

#include <utility>

#include "helm/common/hash.h"

namespace helm::serve {

NodeCounters NodeCounters::operator-(const NodeCounters& o) const {
  NodeCounters d;
  d.arrivals = arrivals - o.arrivals;
  d.rejected = rejected - o.rejected;
  d.completions = completions - o.completions;
  d.failures = failures - o.failures;
  d.deadline_exceeded = deadline_exceeded - o.deadline_exceeded;
  d.batches = batches - o.batches;
  d.batched_requests = batched_requests - o.batched_requests;
  d.computed_rows = computed_rows - o.computed_rows;
  d.computed_attention = computed_attention - o.computed_attention;
  d.compute_us = compute_us - o.compute_us;
  return d;
}

void AnswerReservoir::Add(const AnswerSample& answer) {
  ++seen_;
  if (sample_.size() < capacity_) {
    sample_.push_back(answer);
    return;
  }
  // The n-th answer replaces a uniformly chosen one with probability capacity / n.
  const uint64_t slot = SplitMix64(state_++) % static_cast<uint64_t>(seen_);
  if (slot < capacity_) sample_[slot] = answer;
}

std::vector<AnswerSample> AnswerReservoir::Take() {
  seen_ = 0;
  return std::exchange(sample_, {});
}

double StatsWindow::arrival_rate_per_s() const {
  const double s = seconds();
  return s > 0 ? requests.arrivals / s : 0.0;
}

}  // namespace helm::serve
