#include "helm/control/helm_controller.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "nlohmann/json.hpp"

namespace helm::control {

AdapterOptions AdapterOptionsFrom(const ControlOptions& o) {
  AdapterOptions a;
  a.step = o.adapter_step;
  a.bound = o.adapter_bound;
  a.probe = o.adapter_probe;
  a.block_windows = o.adapter_block_windows;
  return a;
}

RecoveryOptions RecoveryOptionsFrom(const ControlOptions& o) {
  RecoveryOptions r;
  r.burst_ratio = o.burst_ratio;
  r.short_windows = o.burst_short_windows;
  r.long_windows = o.burst_long_windows;
  r.cusum_k = o.cusum_k;
  r.cusum_h = o.cusum_h;
  r.warmup_windows = o.cusum_warmup_windows;
  r.burst_max_move = o.burst_max_move;
  r.cooldown_windows = o.burst_cooldown_windows;
  r.shape_margin = o.burst_shape_margin;
  r.rollback_windows = o.rollback_windows;
  r.rollback_margin = o.rollback_margin;
  r.min_window_answers = o.min_window_answers;
  return r;
}

HelmController::HelmController(Policy base, const FeatureScales& scales,
                               const ControlOptions& options, double r_min, double r_max)
    : base_(std::move(base)),
      scales_(scales),
      extractor_(FeatureExtractor::For(base_.mlp.inputs(), scales, options, r_min, r_max)),
      gate_(options.max_move, options.hold_windows, r_min, r_max),
      logits_(base_.actions.size()),
      reset_on_shift_(options.adapter_reset_on_shift),
      model_veto_(options.rollback_model_veto) {
  if (options.adapter) adapter_.emplace(AdapterOptionsFrom(options));
  if (options.recovery) recovery_.emplace(RecoveryOptionsFrom(options));
  last_.mode = "base";  // before the first decision
}

double HelmController::Decide(const serve::StatsWindow& w) {
  HelmDecision& d = last_;
  d.window_end_us = w.end_us;
  d.target_before = w.target_split;
  if (!primed_) {
    previous_target_ = w.target_split;
    primed_ = true;
  }
  d.reward = Reward(w, previous_target_, scales_);
  previous_target_ = w.target_split;
  d.features = extractor_.Extract(w);
  d.in_flight = SafetyGate::MoveInFlight(w);

  // Layer 3 observes first: whether this window was a burst decides what the adapter learns.
  d.recovery_on = recovery_.has_value();
  if (recovery_) {
    // The reward's latency term is P99 / SLO below its cap: the P99 without another histogram scan.
    const double slo_us = std::max(1.0, scales_.slo_us);
    recovery_->Observe(w, d.reward.latency < 4 ? d.reward.latency * slo_us : -1.0);
    // A rollback begins: kept instead where the predictive model (when the base reads it) sees
    // the split it would return to as no better than this one.
    d.rollback_vetoed = false;
    if (recovery_->rollback_began()) {
      const std::optional<double> back = extractor_.PredictedP99Ratio(recovery_->rollback_to());
      if (model_veto_ && back && *back >= 1.0) {
        recovery_->KeepMove();
        d.rollback_vetoed = true;
      }
    }
  }
  const bool calm = !recovery_ || (!recovery_->in_burst() && !recovery_->rolling_back());
  // A change of mix starts the adapter afresh: its correction was learned on the old mix.
  if (recovery_ && recovery_->shape_shift_began() && adapter_ && reset_on_shift_) adapter_->Reset();

  // Layer 1.
  d.base_action = -1;
  d.base_delta = 0;
  if (!d.in_flight) {
    base_.mlp.Forward(d.features.data(), logits_.data());
    d.base_action =
        static_cast<int>(std::max_element(logits_.begin(), logits_.end()) - logits_.begin());
    d.base_delta = base_.actions[d.base_action];
  }
  // Layer 2.
  d.adapter_on = adapter_.has_value();
  d.adapter_u = adapter_ ? adapter_->Update(d.reward.reward, calm) : 0.0;
  d.adapter_c = adapter_ ? adapter_->correction() : 0.0;
  d.adapter_probing = adapter_ && adapter_->probing();
  d.proposed = d.base_delta + d.adapter_u;
  // Layer 3.
  RecoveryVerdict v;
  v.delta = d.proposed;
  if (recovery_) v = recovery_->Filter(w.target_split, d.proposed);
  d.recovery_mode = v.mode;
  d.recovery_delta = v.delta;
  // The safety rules.
  d.target = gate_.Apply(w, v.delta, v.undo);

  if (v.mode != RecoveryMode::kNormal) {
    d.mode = RecoveryModeName(v.mode);
  } else if (adapter_ && std::abs(d.adapter_u) > 1e-9) {
    d.mode = "adapter";
  } else {
    d.mode = "base";
  }
  ++decisions_;
  return d.target;
}

std::string HelmController::LastDecisionJson() const {
  if (decisions_ == 0) return {};
  const HelmDecision& d = last_;
  nlohmann::json j;
  j["t_us"] = d.window_end_us;
  j["mode"] = d.mode;
  j["in_flight"] = d.in_flight;
  j["features"] = std::vector<float>(d.features.begin(), d.features.end());
  j["base"] = {{"action", d.base_action}, {"delta", d.base_delta}};
  if (d.adapter_on) {
    j["adapter"] = {{"u", d.adapter_u},
                    {"c", d.adapter_c},
                    {"probing", d.adapter_probing},
                    {"frozen", adapter_->frozen()}};
  } else {
    j["adapter"] = nullptr;
  }
  if (d.recovery_on) {
    j["recovery"] = {
        {"mode", RecoveryModeName(d.recovery_mode)}, {"delta", d.recovery_delta},
        {"ratio", recovery_->rate_ratio()},          {"cusum_rate", recovery_->cusum_rate()},
        {"cusum_p99", recovery_->cusum_p99()},       {"stable_split", recovery_->stable_split()},
        {"shape_shift", recovery_->shape_shift()},   {"rollback_vetoed", d.rollback_vetoed}};
  } else {
    j["recovery"] = nullptr;
  }
  j["proposed"] = d.proposed;
  j["target_before"] = d.target_before;
  j["target"] = d.target;
  j["reward"] = {{"reward", d.reward.reward},
                 {"latency", d.reward.latency},
                 {"violations", d.reward.violations},
                 {"refill", d.reward.refill},
                 {"churn", d.reward.churn}};
  return j.dump();
}

}  // namespace helm::control
