// The learned split controller, control.policy "helm" (issue 13, DESIGN.md §4): the three layers
// composed, once per statistics window:
//
//   window -> features (features.h)
//          -> Layer 1, the frozen base policy (policy.h): the argmax action's split change d_base
//          -> Layer 2, the residual adapter (adapter.h), if control.adapter: d = d_base + u, where
//             u (|u| <= adapter_bound) learns from the reward of each window (reward.h)
//          -> Layer 3, burst-aware recovery (recovery.h), if control.recovery: caps or freezes d
//             during a burst, or replaces it by the way back to the last stable split (rollback)
//          -> the safety rules (safety.h): one move in flight, max_move, [r_min, r_max], hysteresis
//          -> the next target split.
//
// With adapter and recovery off it decides exactly as the base policy behind the safety gate
// (PolicyController). While a move is in flight the layers still observe the window (the adapter's
// blocks and recovery's detectors go on) but the target stays. The adapter learns only from
// windows recovery calls normal (a burst or a rollback says nothing about the correction).
//
// mode(): the layer in charge of the last decision: "rollback" or "burst" (recovery overrode the
// layers above), "adapter" (the adapter's correction was nonzero), else "base".
// LastDecisionJson(): one JSON object per decision (last_decision() below, field for field):
//   {"t_us", "mode", "in_flight", "features": [19],
//    "base": {"action", "delta"},
//    "adapter": {"u", "c", "probing", "frozen"} | null,
//    "recovery": {"mode", "delta", "ratio", "cusum_rate", "cusum_p99", "stable_split",
//                 "shape_shift"} | null,
//    "proposed", "target_before", "target",
//    "reward": {"reward", "latency", "violations", "refill", "churn"}}   (the window just closed)
//
// Thread-compatible: one control loop calls Decide.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "helm/control/adapter.h"
#include "helm/control/features.h"
#include "helm/control/options.h"
#include "helm/control/policy.h"
#include "helm/control/recovery.h"
#include "helm/control/reward.h"
#include "helm/control/safety.h"
#include "helm/control/split_controller.h"

namespace helm::control {

// One decision, every layer's part: for the audit log, the simulator and the benchmarks.
struct HelmDecision {
  int64_t window_end_us = 0;
  Features features{};
  bool in_flight = false;  // a move was in flight: the target stayed, whatever the layers said
  int base_action = -1;    // index into the policy's actions; -1 while a move is in flight
  double base_delta = 0;
  bool adapter_on = false;
  double adapter_u = 0;  // the correction added
  double adapter_c = 0;  // its learned part
  bool adapter_probing = false;
  bool recovery_on = false;
  RecoveryMode recovery_mode = RecoveryMode::kNormal;
  bool rollback_vetoed = false;  // a rollback began and the model kept the move
  double recovery_delta = 0;     // the change recovery passed on
  double proposed = 0;           // base + adapter
  double target_before = 0;      // the window's target split
  double target = 0;             // the decision
  RewardTerms reward;            // of the window just closed (it judged the previous decision)
  std::string mode;
};

AdapterOptions AdapterOptionsFrom(const ControlOptions& options);
RecoveryOptions RecoveryOptionsFrom(const ControlOptions& options);

class HelmController final : public SplitController {
 public:
  // `scales` normalise the features and the reward (slo_us, pool_bytes).
  HelmController(Policy base, const FeatureScales& scales, const ControlOptions& options,
                 double r_min, double r_max);

  double Decide(const serve::StatsWindow& window) override;
  std::string name() const override { return "helm"; }
  int64_t reversals() const override { return gate_.reversals(); }
  std::string mode() const override { return last_.mode; }
  std::string LastDecisionJson() const override;

  const HelmDecision& last_decision() const { return last_; }
  int64_t decisions() const { return decisions_; }
  int64_t refused_reversals() const { return gate_.refused_reversals(); }
  // Null when the layer is off. The adapter may be frozen or reset between decisions.
  ResidualAdapter* adapter() { return adapter_ ? &*adapter_ : nullptr; }
  const Recovery* recovery() const { return recovery_ ? &*recovery_ : nullptr; }

 private:
  Policy base_;
  FeatureScales scales_;
  FeatureExtractor extractor_;
  SafetyGate gate_;
  std::optional<ResidualAdapter> adapter_;
  std::optional<Recovery> recovery_;
  std::vector<float> logits_;
  bool primed_ = false;
  bool reset_on_shift_ = true;  // control.adapter_reset_on_shift
  bool model_veto_ = true;      // control.rollback_model_veto
  double previous_target_ = 0;  // the target before the window's (for the reward's churn)
  HelmDecision last_;
  int64_t decisions_ = 0;
};

}  // namespace helm::control
