// The safety rules every learned split decision passes through (issue 13, DESIGN.md §4), whatever
// the policy (or the trainer's sampled action) proposes:
//   - no decision while a move is in flight (migration bytes pending, or the committed split more
//     than a chunk's share from the target);
//   - the change is capped at max_move per window, and the split stays in [r_min, r_max] (each
//     cache keeps at least its floor of the pool);
//   - hysteresis: a move opposite to the previous one within hold_windows windows of it is refused
//     (and counted), so noise does not make the split flap; one allowed later counts as a reversal.
//
// Thread-compatible: one control loop calls Apply once per window.
#pragma once

#include <cstdint>

#include "helm/serve/stats_window.h"

namespace helm::control {

class SafetyGate {
 public:
  SafetyGate(double max_move, int32_t hold_windows, double r_min, double r_max)
      : max_move_(max_move), hold_windows_(hold_windows), r_min_(r_min), r_max_(r_max) {}

  // True when a move is in flight at the window's end: Apply will keep the target whatever delta.
  static bool MoveInFlight(const serve::StatsWindow& window);

  // The next target for a proposed change `delta` of the window's target. Call once per window.
  // `undo`: the change undoes a bad move (recovery.h's rollback); the hysteresis does not refuse
  // it (it still counts as a reversal), every other rule holds.
  double Apply(const serve::StatsWindow& window, double delta, bool undo = false);

  int64_t reversals() const { return reversals_; }
  int64_t refused_reversals() const { return refused_reversals_; }

 private:
  double max_move_;
  int32_t hold_windows_;
  double r_min_, r_max_;
  int last_sign_ = 0;
  int64_t windows_since_move_ = int64_t{1} << 20;
  int64_t reversals_ = 0, refused_reversals_ = 0;
};

}  // namespace helm::control
