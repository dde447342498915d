#include "helm/control/split_controller.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "helm/control/features.h"
#include "helm/control/helm_controller.h"
#include "helm/control/policy.h"
#include "helm/control/predict.h"
#include "helm/control/safety.h"

namespace helm::control {

absl::StatusOr<std::unique_ptr<SplitController>> CreateSplitController(
    const ControlOptions& options, const pool::PoolOptions& pool, const FeatureScales* scales) {
  if (options.min_step > options.step) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "control.min_step: must be <= control.step (%g), got %g", options.step, options.min_step));
  }
  if (options.policy == "static") {
    return std::unique_ptr<SplitController>(new StaticController(pool.initial_split));
  }
  if (options.policy == "heuristic") {
    return std::unique_ptr<SplitController>(
        new HillClimbController(options, pool.r_min, pool.r_max));
  }
  if (options.policy == "marginal") {
    return std::unique_ptr<SplitController>(
        new MarginalController(options, pool.r_min, pool.r_max));
  }
  if (options.policy == "predictive") {
    return std::unique_ptr<SplitController>(new PredictiveController(
        options, scales ? *scales : FeatureScales{}, pool.r_min, pool.r_max));
  }
  if (options.policy == "helm") {
    if (options.policy_path.empty()) {
      return absl::InvalidArgumentError("control.policy_path: policy helm needs a policy file");
    }
    absl::StatusOr<Policy> policy = LoadPolicy(options.policy_path);
    if (!policy.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("control.policy_path: ", policy.status().message()));
    }
    if (absl::Status valid = options.Validate(); !valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("control.", valid.message()));
    }
    return std::unique_ptr<SplitController>(new HelmController(
        *std::move(policy), scales ? *scales : FeatureScales{}, options, pool.r_min, pool.r_max));
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "control.policy: '%s' runs only in helm-sim (the oracle replays windows offline); nodes "
      "take static, heuristic, marginal or helm",
      options.policy));
}

bool NeedsReuseTracking(const ControlOptions& options) {
  if (options.policy == "predictive") return true;
  if (options.policy != "helm") return false;
  const absl::StatusOr<Policy> policy = LoadPolicy(options.policy_path);
  return policy.ok() && ReadsModel(policy->mlp.inputs());
}

HillClimbController::HillClimbController(const ControlOptions& options, double r_min, double r_max)
    : options_(options), r_min_(r_min), r_max_(r_max), step_(options.step) {}

double HillClimbController::Move(double target, double p99_us) {
  const double next = std::clamp(target + direction_ * step_, r_min_, r_max_);
  if (std::abs(next - target) < 1e-9) {  // at a bound: the next probe goes the other way
    direction_ = -direction_;
    hold_left_ = options_.hold_windows;
    return target;
  }
  reference_p99_us_ = p99_us;
  probe_from_ = target;
  evaluating_ = true;
  return next;
}

double HillClimbController::Decide(const serve::StatsWindow& w) {
  const double target = w.target_split;
  double next = target;
  // A move still in flight, or too few answers for a P99: judge nothing, change nothing.
  // (The pool moves in whole chunks: a settled split may sit within a chunk's share of the target.)
  if (SafetyGate::MoveInFlight(w) || w.requests.completions < options_.min_window_answers) {
    return target;
  }
  const double p99 = w.latency_us.Quantile(0.99);
  const double band = options_.hysteresis;
  if (evaluating_) {
    evaluating_ = false;
    if (p99 < reference_p99_us_ * (1 - band)) {  // better: keep going
      failed_probes_ = 0;
      climbed_ = true;
      next = Move(target, p99);
    } else {  // not clearly better: undo, probe the other way next, wait longer each time
      // Worse right after climbing: the optimum was passed, so look closer.
      if (climbed_ && p99 > reference_p99_us_ * (1 + band)) {
        step_ = std::max(options_.min_step, step_ / 2);
      }
      climbed_ = false;
      direction_ = -direction_;
      failed_probes_ = std::min(failed_probes_ + 1, kMaxBackoff);
      hold_left_ = options_.hold_windows << (failed_probes_ - 1);
      held_p99_us_ = reference_p99_us_;
      next = probe_from_;
    }
  } else if (hold_left_ > 0 && std::abs(p99 - held_p99_us_) <= 2 * band * held_p99_us_) {
    --hold_left_;
  } else {
    // The hold is over, or the held split's P99 moved by more than twice the band (the load
    // changed): probe afresh with the full step.
    if (hold_left_ > 0) {
      failed_probes_ = 0;
      step_ = options_.step;
      hold_left_ = 0;
    }
    next = Move(target, p99);
  }
  const int sign = next > target + 1e-9 ? 1 : (next < target - 1e-9 ? -1 : 0);
  if (sign != 0) {
    if (sign == -last_move_sign_) ++reversals_;
    last_move_sign_ = sign;
  }
  return next;
}

MarginalController::MarginalController(const ControlOptions& options, double r_min, double r_max)
    : options_(options), gate_(options.max_move, options.hold_windows, r_min, r_max) {}

double MarginalController::Decide(const serve::StatsWindow& w) {
  const double emb = FeatureExtractor::EmbGrowthGain(w), kv = FeatureExtractor::KvGrowthGain(w);
  constexpr double kAlpha = 1.0 / 3;  // EWMA over ~3 windows
  if (!primed_) {
    g_emb_ = emb;
    g_kv_ = kv;
    primed_ = true;
  } else {
    g_emb_ += kAlpha * (emb - g_emb_);
    g_kv_ += kAlpha * (kv - g_kv_);
  }
  const double diff = g_emb_ - g_kv_;
  const double lopsided = std::abs(diff) / (g_emb_ + g_kv_);  // in (0, 1] when diff != 0
  double delta = 0;
  if (std::abs(diff) >= options_.marginal_min_gain && lopsided > options_.hysteresis) {
    // In proportion to how lopsided the gains are: `step` where one is 3x the other (0.5), up to
    // twice it where only one cache would gain; the gate caps it at max_move.
    delta = std::copysign(2.0 * options_.step * lopsided, diff);
  }
  return gate_.Apply(w, delta);
}

PredictiveController::PredictiveController(const ControlOptions& options,
                                           const FeatureScales& scales, double r_min, double r_max)
    : options_(options),
      gate_(options.max_move, options.hold_windows, r_min, r_max),
      model_(scales, options, r_min, r_max) {}

double PredictiveController::Decide(const serve::StatsWindow& w) {
  model_.Observe(w);
  const std::optional<SplitModel::View> view = model_.Predict(w);
  if (!view) return gate_.Apply(w, 0);
  const SplitPrediction &now = view->now, &best = view->best;
  const RecomputePrice& price = view->price;
  const double r0 = w.committed_split;
  best_split_ = best.split;
  double delta = 0;
  if (best.p99_us < now.p99_us * (1 - options_.hysteresis)) delta = best.split - w.target_split;
  const double next = gate_.Apply(w, delta);
  // The whole predicted curve too, [split, P99 us] pairs, so that an audit shows why; and what the
  // miniature caches read, [split, share] pairs: each KV copy's share of the sampled answers'
  // history tokens reused, each EMB copy's miss ratio.
  const auto pairs = [](size_t n, auto split, auto value, int precision) {
    std::string out;
    for (size_t i = 0; i < n; ++i) {
      absl::StrAppendFormat(&out, "%s[%.4f,%.*f]", i > 0 ? "," : "", split(i), precision, value(i));
    }
    return out;
  };
  const std::vector<SplitPrediction>& p = view->curve;
  const std::string curve = pairs(
      p.size(), [&](size_t i) { return p[i].split; }, [&](size_t i) { return p[i].p99_us; }, 0);
  double history = 0;
  for (const serve::AnswerSample& a : w.answers) history += a.history_tokens;
  const std::string caches = pairs(
      std::min<size_t>(w.kv_shadow_splits.size(), serve::kMaxKvShadows),
      [&](size_t k) { return w.kv_shadow_splits[k]; },
      [&](size_t k) {
        double reused = 0;
        for (const serve::AnswerSample& a : w.answers) reused += a.reuse.kv_shadow_prefix[k];
        return history > 0 ? reused / history : 0.0;
      },
      4);
  const std::string emb_caches = pairs(
      w.emb_shadow_miss_ratios.size(), [&](size_t k) { return w.emb_shadow_splits[k]; },
      [&](size_t k) { return w.emb_shadow_miss_ratios[k]; }, 4);
  last_json_ =
      absl::StrFormat(R"({"policy":"predictive","split":%.4f,"p99_now_us":%.1f,"best_split":%.4f,)"
                      R"("p99_best_us":%.1f,"utilisation":%.3f,"target":%.4f,"row_us":%.4g,)"
                      R"("attention_us":%.4g,"predicted":[%s],"kv_copies_hit":[%s],)"
                      R"("emb_copies_miss":[%s]})",
                      r0, now.p99_us, best.split, best.p99_us, now.utilisation, next, price.row_us,
                      price.attention_us, curve, caches, emb_caches);
  return next;
}

}  // namespace helm::control
