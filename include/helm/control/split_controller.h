// The split-controller interface (DESIGN.md §4, issue 12): a node's statistics window in, the
// pool's target EMB share out. The simulator's nodes and (next) helm-node's control loop call it
// once per statistics window and pass its answer to NodeCore::SetTargetSplit. Implementations:
//
//   static     holds pool.initial_split: the baseline every adaptive policy is measured against.
//   heuristic  hill climbing on the window's P99 (perturb and observe, as in maximum-power-point
//              trackers and in Cliffhanger's hill climbing over cache shares). A probe moves the
//              split by `step`; if the next settled window's P99 is better by more than the
//              `hysteresis` fraction, the move is kept and the next probe follows at once. If not,
//              the probe is undone, the next one will go the other way, and the split is held for
//              hold_windows x 2^(failed probes - 1) windows (up to x16): on steady load probes get
//              rare. A probe that made P99 clearly worse right after a kept one (the optimum was
//              passed) also halves the step (down to `min_step`). A held split whose P99 drifts by
//              more than twice the band (the load changed) ends the hold and resets the step. No
//              move while one is in flight (committed != target) and none on a window with fewer
//              than `min_window_answers` answers (its P99 is noise). Each decision moves the split
//              by at most one step; the result stays in [r_min, r_max]. reversals() counts moves
//              opposite to the previous move (an undone probe is one).
//   marginal   the shadow-queue gradient (Cliffhanger, NSDI 2016; ARC's ghost lists): each cache
//              keeps a ghost list of what it evicted last (pool.ghost_share of the pool), so a
//              window tells what growing either cache by that share would have saved, in time:
//              g_emb (miss fetch time) and g_kv (recompute time; features.h 16-18). Averaged over
//              windows (an EWMA over ~3), the split moves toward the larger gain when it is larger
//              by more than the `hysteresis` fraction of the two and by at least marginal_min_gain
//              of the window, by 2 x step x |g_emb - g_kv| / (g_emb + g_kv): `step` where one gain
//              is 3x the other, twice it where only one cache would gain (a clear case converges
//              in half the windows), less near the hysteresis; otherwise it holds. No decision
//              while a move is in flight; the safety rules (safety.h: max_move, hold_windows
//              against reversals, [r_min, r_max]) apply. It reads no latency: the gain is measured,
//              not probed for.
//   predictive model-predictive: every window it predicts the P99 the window would have had at
//              each split on a grid (r_min to r_max by `min_step`) from the node's own answers
//              with their batches and both caches' miniature copies (predict.h: miniature caches,
//              or AET miss-ratio curves without them; an M/G/1 queue's wait), and
//              moves toward the best one when that is better than the current split's prediction
//              by more than the `hysteresis` fraction. The reuse-time histograms are averaged over
//              windows (each window's weight halves every window). It sees the whole curve where
//              the ghosts see its slope, so it can cross a cliff: a cache worth nothing until it
//              holds a whole working set. The safety rules apply (max_move per window, no decision
//              while a move is in flight or on a window with fewer than min_window_answers).
//   helm       the learned controller (helm_controller.h): base policy, residual adapter,
//              burst-aware recovery, safety rules.
//   oracle     offline, in the simulator only (simulator.h): each window's best split found by
//              replaying the window from a copy of the cluster at every candidate split.
//
// Thread-compatible: one control loop calls Decide.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "helm/control/features.h"
#include "helm/control/options.h"
#include "helm/control/predict.h"
#include "helm/control/safety.h"
#include "helm/control/split_model.h"
#include "helm/pool/options.h"
#include "helm/serve/stats_window.h"

namespace helm::control {

class SplitController {
 public:
  virtual ~SplitController() = default;
  // The target split for the next window, given the window just closed (its committed and target
  // splits are the pool's at the window's end).
  virtual double Decide(const serve::StatsWindow& window) = 0;
  virtual std::string name() const = 0;
  // Decisions that turned a move round (the heuristic's flapping count; 0 for static).
  virtual int64_t reversals() const { return 0; }
  // What the controller is doing now, for the state stream, GetStats and metrics (e.g. "static",
  // "heuristic", or the learned controller's layer in charge). Defaults to name().
  virtual std::string mode() const { return name(); }
  // The last decision as one JSON object (features, each layer's output, the action, the reward)
  // for the node's audit log; empty before the first decision or for controllers that keep none.
  virtual std::string LastDecisionJson() const { return {}; }
};

// "static", "heuristic", "marginal" or "helm" (helm_controller.h: the base policy of
// control.policy_path, its features and reward scaled by `scales`, with the adapter and recovery as
// control says); InvalidArgument naming control.policy for "oracle" (the simulator runs it) or an
// unknown policy, and naming the key for bad knobs (min_step > step, a policy file that cannot be
// read, burst_short_windows >= burst_long_windows, ...).
absl::StatusOr<std::unique_ptr<SplitController>> CreateSplitController(
    const ControlOptions& options, const pool::PoolOptions& pool,
    const struct FeatureScales* scales = nullptr);

// Whether a node running `options`' controller keeps the reuse tracker and the miniature caches
// the predictive model reads (predict.h): for the predictive controller, and for the learned one
// when its policy reads the model's features (features.h 19-20). A policy that cannot be read
// needs none (CreateSplitController reports it).
bool NeedsReuseTracking(const ControlOptions& options);

class StaticController final : public SplitController {
 public:
  explicit StaticController(double split) : split_(split) {}
  double Decide(const serve::StatsWindow&) override { return split_; }
  std::string name() const override { return "static"; }

 private:
  double split_;
};

class HillClimbController final : public SplitController {
 public:
  HillClimbController(const ControlOptions& options, double r_min, double r_max);
  double Decide(const serve::StatsWindow& window) override;
  std::string name() const override { return "heuristic"; }
  int64_t reversals() const override { return reversals_; }
  double step() const { return step_; }

 private:
  // Proposes target + direction * step within bounds; holds when at a bound.
  double Move(double target, double p99_us);

  static constexpr int32_t kMaxBackoff = 5;  // a hold grows to hold_windows x 2^4 at most

  ControlOptions options_;
  double r_min_, r_max_;
  double step_;
  int direction_ = +1;
  bool evaluating_ = false;      // a probe was made; the next settled window judges it
  double reference_p99_us_ = 0;  // P99 before the probe
  double probe_from_ = 0;        // the split before the probe
  double held_p99_us_ = 0;       // P99 of the split being held
  int32_t hold_left_ = 0;
  int32_t failed_probes_ = 0;
  bool climbed_ = false;  // the last probe was kept
  int last_move_sign_ = 0;
  int64_t reversals_ = 0;
};

class MarginalController final : public SplitController {
 public:
  MarginalController(const ControlOptions& options, double r_min, double r_max);
  double Decide(const serve::StatsWindow& window) override;
  std::string name() const override { return "marginal"; }
  int64_t reversals() const override { return gate_.reversals(); }
  // The averaged gains the last decision compared (shares of a window).
  double emb_gain() const { return g_emb_; }
  double kv_gain() const { return g_kv_; }

 private:
  ControlOptions options_;
  SafetyGate gate_;
  bool primed_ = false;
  double g_emb_ = 0, g_kv_ = 0;
};

class PredictiveController final : public SplitController {
 public:
  PredictiveController(const ControlOptions& options, const FeatureScales& scales, double r_min,
                       double r_max);
  double Decide(const serve::StatsWindow& window) override;
  std::string name() const override { return "predictive"; }
  int64_t reversals() const override { return gate_.reversals(); }
  std::string LastDecisionJson() const override { return last_json_; }
  // The split of the lowest predicted P99 at the last decision (LastDecisionJson has both P99s).
  double best_split() const { return best_split_; }

 private:
  ControlOptions options_;
  SafetyGate gate_;
  SplitModel model_;
  double best_split_ = 0;
  std::string last_json_;
};

}  // namespace helm::control
