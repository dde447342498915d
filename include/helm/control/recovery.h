// Layer 3 of the learned controller (issue 13, DESIGN.md §4): burst-aware recovery. It watches
// every statistics window and filters the split change the layers above propose.
//
// Burst detection (arrivals per second of each window):
//   - ratio: the mean rate over the last short_windows windows against the mean over the last
//     long_windows (Knative's panic mode: 2x over a window 1/10 as long; defaults 3 and 30);
//   - CUSUM, one-sided upward, on the rate and on log P99 (windows with min_window_answers
//     answers):  S <- min(2h, max(0, S + (x - mean) / sigma - k)), alarm while S > h, with
//     k = cusum_k (0.5) and h = cusum_h (5) in standard deviations. mean and sigma are estimated
//     online: plain averages over the first warmup_windows windows, then EWMAs over long_windows
//     windows; the mean follows a burst, sigma learns only from calm windows (z <= h, no burst);
//     sigma is floored at the Poisson noise of the window's count and at 1% of the mean (rate), or
//     at 0.01 (log P99).
//   A burst begins when the ratio reaches burst_ratio, or when either CUSUM alarms and the ratio
//   reaches (1 + burst_ratio) / 2: the CUSUMs see a real shift before the ratio does, the half
//   ratio keeps a slow trend or a few percent of drift from counting. It goes on while the half
//   ratio or a CUSUM alarm holds, and ends after cooldown_windows windows with neither, or after
//   long_windows windows at most (a level that lasted a whole long window is the new normal, as
//   Knative leaves panic mode after a stable window; the CUSUMs restart from it). Nothing counts
//   before warmup_windows windows, nor with fewer than 20 arrivals over the short window.
//   During a burst a proposed change is capped at burst_max_move (0: the split is frozen: refill
//   traffic would compete with the burst's misses for the PCIe link).
//   A burst is more of the same requests. When the requests' shape moves instead (the mean EMB
//   lookups or history tokens per request over the short window off their mean over the long
//   window by more than shape_margin, as a ratio either way), what rises is another kind of
//   request: a change of mix that moves the best split, which is what the controller is for. No
//   burst begins, and one under way counts the window calm.
//
// Rollback: the stable split is one held for rollback_windows settled windows (no move in flight,
// enough answers, no burst) whose P99 did not rise; its P99 is their mean (in log). After the
// target moves away from it, each settled window whose P99 is above the stable P99 by more than
// rollback_margin, and not below the previous window's by more than that margin, counts as rising
// if the mean arrival rate over the short window is within the margin of the stable split's (P99
// rising with the load is the load's doing) and the requests' shape has not moved (nor with a
// change of mix); rollback_windows of them in a row undo the move:
// the target goes back to the stable split (capped per window by the safety gate, whose hysteresis
// does not refuse an undo), and then, for long_windows windows, changes in the undone direction are
// refused. A move whose P99 has not kept rising within 2 x rollback_windows settled windows is
// kept. A burst ends the watch: the rise is the burst's doing, not the move's.
//
// Thread-compatible: one control loop calls Observe, then Filter, once per window.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include "helm/serve/stats_window.h"

namespace helm::control {

struct RecoveryOptions {
  double burst_ratio = 2.0;
  int32_t short_windows = 3;
  int32_t long_windows = 30;  // REQUIRES: > short_windows
  double cusum_k = 0.5;
  double cusum_h = 5.0;
  int32_t warmup_windows = 10;
  double burst_max_move = 0.0;
  int32_t cooldown_windows = 5;
  double shape_margin = 0.25;  // 0: the requests' shape is not watched
  int32_t rollback_windows = 3;
  double rollback_margin = 0.10;
  int64_t min_window_answers = 50;  // fewer answers: the window's P99 is not judged
};

enum class RecoveryMode { kNormal, kBurst, kRollback };
const char* RecoveryModeName(RecoveryMode mode);  // "normal", "burst", "rollback"

struct RecoveryVerdict {
  RecoveryMode mode = RecoveryMode::kNormal;
  double delta = 0;   // the change to pass on to the safety gate
  bool undo = false;  // a rollback: the gate's hysteresis must not refuse it
};

class Recovery {
 public:
  explicit Recovery(const RecoveryOptions& options) : o_(options) {}

  // Observes the window just closed: call once per window, also while a move is in flight.
  // `p99_us`: the window's latency_us.Quantile(0.99) when the caller has it (saves a scan of the
  // histogram); negative: computed here.
  void Observe(const serve::StatsWindow& window, double p99_us = -1);
  // Filters `proposed_delta`, the change of `target` (the observed window's target_split) that the
  // layers above ask for. REQUIRES: Observe was called with that window.
  RecoveryVerdict Filter(double target, double proposed_delta) const;

  bool in_burst() const { return in_burst_; }
  bool rolling_back() const { return rolling_back_; }
  double stable_split() const { return stable_split_; }
  double rate_ratio() const { return ratio_; }  // short / long mean rate, last window
  // The requests' shape moved by more than shape_margin at the last window (a change of mix).
  bool shape_shift() const { return shape_shift_; }
  // ... and had not at the window before: the first window of a change of mix.
  bool shape_shift_began() const { return shape_shift_began_; }
  double cusum_rate() const { return s_rate_; }
  double cusum_p99() const { return s_p99_; }
  int64_t bursts() const { return bursts_; }               // bursts begun
  int64_t rollbacks() const { return rollbacks_; }         // rollbacks begun
  bool rollback_began() const { return rollback_began_; }  // at the last window
  double rollback_to() const { return rollback_to_; }      // while rolling_back()
  // The caller knows better than the P99 (the predictive model prefers the current split): the
  // rollback under way is dropped, and the current target is the stable split, with the last
  // settled window's P99 and load. No effect when no rollback is under way.
  void KeepMove();
  int64_t kept_moves() const { return kept_moves_; }

 private:
  // One-sided CUSUM with online mean and sigma (see the header comment).
  struct Cusum {
    int64_t n = 0;
    double mean = 0, var = 0, s = 0;
    // Returns the statistic after observing x; sigma >= floor.
    double Observe(double x, double floor, const RecoveryOptions& o, bool calm);
  };
  void ObserveBurst(const serve::StatsWindow& w, bool p99_valid, double log_p99);
  void ObserveMove(const serve::StatsWindow& w, bool p99_valid, double log_p99);
  void EndBurst();

  RecoveryOptions o_;
  // Burst detection.
  std::deque<double> rates_;
  // Per window with requests: EMB lookups and history tokens per request (the last long_windows).
  std::deque<std::pair<double, double>> shapes_;
  bool shape_shift_ = false, shape_shift_began_ = false;
  bool rollback_began_ = false;
  int64_t windows_ = 0;
  double ratio_ = 1;
  double short_rate_ = 0;  // mean arrivals/s over the last short_windows windows
  Cusum rate_cusum_, p99_cusum_;
  double s_rate_ = 0, s_p99_ = 0;
  bool in_burst_ = false;
  int32_t calm_ = 0;
  int32_t burst_windows_ = 0;
  int64_t bursts_ = 0;
  // Moves and rollback.
  bool primed_ = false;
  double last_target_ = 0;
  double stable_split_ = 0;
  double stable_log_p99_ = 0;
  double stable_rate_ = 0;  // arrivals/s over the stable split's held windows
  bool have_stable_p99_ = false;
  int32_t held_ = 0;          // settled windows with a P99 since the target last moved
  double held_sum_ = 0;       // of log P99
  double held_rate_sum_ = 0;  // of arrivals/s
  bool watching_ = false;
  int32_t watched_ = 0;  // settled windows judged since the move
  int32_t rising_ = 0;
  double previous_log_p99_ = 0;
  double last_log_p99_ = 0;  // of the last settled window with a P99
  double last_rate_ = 0;     // its arrivals/s
  bool rolling_back_ = false;
  double rollback_to_ = 0;
  int undone_sign_ = 0;
  int32_t blocked_left_ = 0;
  int64_t rollbacks_ = 0;
  int64_t kept_moves_ = 0;
};

}  // namespace helm::control
