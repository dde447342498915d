#include "helm/route/node_health.h"

#include <algorithm>

#include "spdlog/spdlog.h"

namespace helm::route {

NodeHealth::NodeHealth(ClusterState* cluster, const NodeHealthOptions& options, Clock* clock)
    : cluster_(cluster), options_(options), clock_(clock) {}

NodeHealth::State& NodeHealth::StateLocked(int node) {
  if (static_cast<size_t>(node) >= states_.size()) states_.resize(node + 1);
  return states_[node];
}

bool NodeHealth::OnRequestResult(int node, bool node_failed, std::string_view detail) {
  absl::MutexLock lock(&mu_);
  State& s = StateLocked(node);
  if (!node_failed) {
    s.consecutive_failures = 0;
    return false;
  }
  ++s.consecutive_failures;
  if (s.consecutive_failures < options_.failures_to_eject || s.ejected) return false;
  s.ejected = true;
  cluster_->SetHealthy(node, false);
  spdlog::warn("router: node {} ({}) ejected after {} consecutive failures: {}", node,
               cluster_->address(node), s.consecutive_failures, detail);
  return true;
}

void NodeHealth::OnHealthCheck(int node, bool serving, std::string_view detail) {
  absl::MutexLock lock(&mu_);
  State& s = StateLocked(node);
  if (s.removed) return;  // left the node list while the check was out
  const bool was = cluster_->healthy(node);
  const bool readmitted = serving && s.ejected;
  if (serving) {
    s.ejected = false;
    s.consecutive_failures = 0;
  }
  cluster_->SetHealthy(node, serving);
  if (serving != was) {
    if (serving) {
      spdlog::info("router: node {} ({}) is healthy{}", node, cluster_->address(node),
                   readmitted ? " (readmitted after ejection)" : "");
    } else {
      spdlog::info("router: node {} ({}) is not serving: {}", node, cluster_->address(node),
                   detail);
    }
  }
}

void NodeHealth::OnStreamEnded(int node, bool unreachable) {
  if (!unreachable) return;
  absl::MutexLock lock(&mu_);
  StateLocked(node);
  // The node went away: stop sending it traffic now rather than at the next health check.
  if (cluster_->healthy(node)) {
    spdlog::info("router: node {} ({}) is unreachable (its state stream broke)", node,
                 cluster_->address(node));
  }
  cluster_->SetHealthy(node, false);
}

void NodeHealth::SetRemoved(int node, bool removed) {
  absl::MutexLock lock(&mu_);
  State& s = StateLocked(node);
  if (s.removed == removed) return;
  s.removed = removed;
  if (removed) {
    cluster_->SetHealthy(node, false);
    spdlog::info("router: node {} ({}) left the node list", node, cluster_->address(node));
  } else {
    s.last_check_us = -1;  // check it at once
  }
}

std::vector<int> NodeHealth::TakeDueChecks() {
  const int64_t now = clock_->NowMicros();
  const int n = cluster_->num_nodes();
  std::vector<int> due;
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < n; ++i) {
    State& s = StateLocked(i);
    if (s.removed) continue;
    if (s.last_check_us < 0 || now - s.last_check_us >= options_.check_interval_us) {
      s.last_check_us = now;
      due.push_back(i);
    }
  }
  return due;
}

int64_t NodeHealth::MicrosUntilNextCheck() const {
  const int64_t now = clock_->NowMicros();
  const int n = cluster_->num_nodes();
  int64_t wait = options_.check_interval_us;
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < n; ++i) {
    if (static_cast<size_t>(i) >= states_.size()) return 0;  // never checked
    const State& s = states_[i];
    if (s.removed) continue;
    if (s.last_check_us < 0) return 0;
    wait = std::min(wait, std::max<int64_t>(0, s.last_check_us + options_.check_interval_us - now));
  }
  return wait;
}

bool NodeHealth::ejected(int node) const {
  absl::MutexLock lock(&mu_);
  return static_cast<size_t>(node) < states_.size() && states_[node].ejected;
}

bool NodeHealth::removed(int node) const {
  absl::MutexLock lock(&mu_);
  return static_cast<size_t>(node) < states_.size() && states_[node].removed;
}

int NodeHealth::consecutive_failures(int node) const {
  absl::MutexLock lock(&mu_);
  return static_cast<size_t>(node) < states_.size() ? states_[node].consecutive_failures : 0;
}

}  // namespace helm::route
