// Layer 2 of the learned controller (issue 13, DESIGN.md §4): the online residual adapter. It adds
// a bounded correction u to the base policy's split change, so that the split settles where this
// node's own reward (reward.h) is best rather than where the base, trained on other workloads,
// would put it. A fresh adapter's correction is zero: it decides exactly as the base until its
// first probe.
//
// The method: perturb and observe (one-sided finite differences, i.e. extremum seeking / SPSA
// with a single parameter), in blocks of windows so that each probe outlives the safety gate's
// hysteresis and the split has time to respond.
//   - One parameter: the learned correction c, |c| <= bound, starting at 0. A base policy that
//     steers the split toward a preferred point (any restoring policy) settles where its own change
//     balances c, so c shifts that point; it cannot reshape the policy, which is what keeps it
//     safe. Where the base holds still (its dead band), c is a drift: the split moves by c a window
//     until the base pushes back or r_min / r_max stops it. (Pinned at a bound, a probe toward it
//     moves nothing, so only the other probe direction teaches c anything: the known weak spot.)
//   - Cycles of two blocks of block_windows windows each: a nominal block with u = c, then a probe
//     block with u = clamp(c + s * probe, -bound, bound), where s alternates +1, -1 from one cycle
//     to the next (balanced probes; nothing random, so runs are reproducible).
//   - Each window's reward judges the correction in force during it (the one returned by the
//     previous Update). The first half of each block is not judged (the split is still moving;
//     the gate may delay a probe by up to hold_windows), the rest is averaged. Windows marked
//     unusable (a burst, a rollback: recovery.h) are left out.
//   - After the nominal block that follows a probe: the probe's gain is
//         gain = clamp(J_probe - (J_nominal_before + J_nominal_after) / 2, -1, 1),
//     the reward baseline being the mean of the nominal blocks on either side (a reward drifting
//     linearly, with the load or with the split moving under c, cancels out), and
//         c <- clamp(c + step * gain * (u_probe - u_nominal) / probe, -bound, bound),
//     i.e. c moves toward the probe when the probe earned more reward, away from it otherwise,
//     by at most step per cycle (a probe cut by the bound counts for what it moved).
//   - Exploration is bounded and safe: |u| <= bound always, every change still passes recovery and
//     the safety gate (max_move, [r_min, r_max], hysteresis), and only half of the windows carry a
//     probe.
// Parameters (control.adapter_*): step 0.05, bound 0.05, probe 0.02, block_windows 8.
//
// Freeze() keeps c and stops probing and learning (u = c); Reset() sets c to 0 and restarts the
// cycle. Thread-compatible: one control loop calls it.
#pragma once

#include <cstdint>

namespace helm::control {

struct AdapterOptions {
  double step = 0.05;         // largest change of c per cycle (split units)
  double bound = 0.05;        // trust bound: |u| <= bound (split units)
  double probe = 0.02;        // probe offset (split units); REQUIRES: > 0
  int32_t block_windows = 8;  // windows per block; REQUIRES: >= 2
};

class ResidualAdapter {
 public:
  explicit ResidualAdapter(const AdapterOptions& options) : o_(options) {}

  // Once per control window. `reward` is control::Reward of the window just closed, which judged
  // the correction returned by the previous call (ignored on the first call, when frozen, and
  // when `usable` is false). Returns the correction u to add to the base's split change for the
  // next window.
  double Update(double reward, bool usable);

  // Frozen: no probes, no learning; Update returns c. Unfreezing starts a fresh cycle.
  void Freeze(bool frozen);
  // c = 0, a fresh cycle (the next Update starts a nominal block), probes start with +1.
  void Reset();

  bool frozen() const { return frozen_; }
  double correction() const { return c_; }  // the learned c
  double output() const { return u_; }      // the last u returned
  bool probing() const { return phase_ == Phase::kProbe && !frozen_; }
  int64_t updates() const { return updates_; }  // cycles that changed or judged c
  double last_gain() const { return last_gain_; }

 private:
  enum class Phase { kNominal, kProbe };
  double Output() const;

  AdapterOptions o_;
  double c_ = 0;
  double u_ = 0;
  bool frozen_ = false;
  bool started_ = false;  // a correction was returned and awaits its reward
  Phase phase_ = Phase::kNominal;
  int32_t index_ = 0;  // of the window just returned, within its block
  int sign_ = +1;      // of the next probe
  double sum_[2] = {0, 0};
  int32_t count_[2] = {0, 0};
  double nominal_u_ = 0, probe_u_ = 0;
  bool before_judged_ = false;  // the nominal block before the last probe had judged windows
  double before_mean_ = 0;      // its mean reward
  bool probe_judged_ = false;  // the last probe block had judged windows, awaiting the next nominal
  double probe_mean_ = 0;
  double probe_moved_ = 0;  // (u_probe - u_nominal) / probe of that probe
  double last_gain_ = 0;
  int64_t updates_ = 0;
};

}  // namespace helm::control
