#include "helm/control/safety.h"

#include <algorithm>
#include <cmath>

namespace helm::control {

bool SafetyGate::MoveInFlight(const serve::StatsWindow& w) {
  // The committed split moves in whole chunks: a settled pool's may sit up to a chunk's share
  // from a target between two chunk counts (with no bytes pending).
  const double tolerance = std::max(1e-6, w.chunk_share);
  return std::abs(w.committed_split - w.target_split) > tolerance || w.pending_migration_bytes > 0;
}

double SafetyGate::Apply(const serve::StatsWindow& w, double delta, bool undo) {
  ++windows_since_move_;
  const double target = w.target_split;
  if (MoveInFlight(w)) return target;  // one move in flight at a time
  const double next = std::clamp(target + std::clamp(delta, -max_move_, max_move_), r_min_, r_max_);
  const int sign = next > target + 1e-9 ? 1 : (next < target - 1e-9 ? -1 : 0);
  if (sign == 0) return target;
  if (sign == -last_sign_) {
    if (windows_since_move_ <= hold_windows_ && !undo) {
      ++refused_reversals_;
      return target;
    }
    ++reversals_;
  }
  last_sign_ = sign;
  windows_since_move_ = 0;
  return next;
}

}  // namespace helm::control
