#include "helm/serve/stats_window.h"

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
  d.compute_us = compute_us - o.compute_us;
  return d;
}

double StatsWindow::arrival_rate_per_s() const {
  const double s = seconds();
  return s > 0 ? requests.arrivals / s : 0.0;
}

}  // namespace helm::serve
