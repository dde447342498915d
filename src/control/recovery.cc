#include "helm/control/recovery.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "helm/control/safety.h"

namespace helm::control {
namespace {

// A burst needs at least this many arrivals over the short window: on a nearly idle node a few
// requests more would double the rate.
constexpr double kMinBurstArrivals = 20;

int Sign(double x) { return x > 1e-9 ? 1 : (x < -1e-9 ? -1 : 0); }

}  // namespace

const char* RecoveryModeName(RecoveryMode mode) {
  switch (mode) {
    case RecoveryMode::kBurst:
      return "burst";
    case RecoveryMode::kRollback:
      return "rollback";
    case RecoveryMode::kNormal:
      break;
  }
  return "normal";
}

double Recovery::Cusum::Observe(double x, double floor, const RecoveryOptions& o, bool calm) {
  ++n;
  bool outlier = false;
  if (n > 1) {
    const double z = (x - mean) / std::max(std::sqrt(var), floor);
    outlier = z > o.cusum_h;
    s = std::min(2 * o.cusum_h, std::max(0.0, s + z - o.cusum_k));
  }
  // Plain averages while warming up, then EWMAs over the long window. The mean follows a burst (a
  // lasting level becomes the new normal); sigma learns from calm windows only.
  const double alpha = n <= o.warmup_windows ? 1.0 / double(n) : 1.0 / o.long_windows;
  const double d = x - mean;
  mean += alpha * d;
  if (n <= o.warmup_windows || (calm && !outlier)) var = (1 - alpha) * (var + alpha * d * d);
  // Warm-up statistics come from estimates of a few windows: start the watch afresh after it.
  if (n == o.warmup_windows) s = 0;
  return s;
}

void Recovery::ObserveBurst(const serve::StatsWindow& w, bool p99_valid, double log_p99) {
  if (w.seconds() <= 0) return;  // an empty window has no rate
  const double seconds = w.seconds();
  const double rate = w.requests.arrivals / seconds;
  rates_.push_back(rate);
  if (rates_.size() > static_cast<size_t>(o_.long_windows)) rates_.pop_front();
  ++windows_;
  const size_t short_n = std::min<size_t>(rates_.size(), o_.short_windows);
  const double short_sum = std::accumulate(rates_.end() - short_n, rates_.end(), 0.0);
  const double short_mean = short_sum / short_n;
  short_rate_ = short_mean;
  const double long_mean = std::accumulate(rates_.begin(), rates_.end(), 0.0) / rates_.size();
  ratio_ = long_mean > 0 ? short_mean / long_mean : 1.0;
  const double mean = std::max(rate_cusum_.mean, 0.0);
  const double rate_floor = std::max({std::sqrt(mean / seconds), 0.01 * mean, 1e-9});
  s_rate_ = rate_cusum_.Observe(rate, rate_floor, o_, !in_burst_);
  if (p99_valid) s_p99_ = p99_cusum_.Observe(log_p99, 0.01, o_, !in_burst_);

  // The requests' shape: a change of mix, not a burst, when it moved.
  if (w.kv.requests > 0) {
    const double n = static_cast<double>(w.kv.requests);
    shapes_.emplace_back(w.emb.lookups / n, w.kv.requested_tokens / n);
    if (shapes_.size() > static_cast<size_t>(o_.long_windows)) shapes_.pop_front();
  }
  const bool shifted_before = shape_shift_;
  shape_shift_ = false;
  if (o_.shape_margin > 0 && shapes_.size() > static_cast<size_t>(o_.short_windows)) {
    const auto mean = [](auto begin, auto end, auto field) {
      double sum = 0;
      for (auto it = begin; it != end; ++it) sum += field(*it);
      return sum / static_cast<double>(end - begin);
    };
    const auto moved = [&](auto field) {
      const double recent = mean(shapes_.end() - o_.short_windows, shapes_.end(), field);
      const double usual = mean(shapes_.begin(), shapes_.end(), field);
      const double limit = 1 + o_.shape_margin;
      return recent > 0 && usual > 0 && (recent > usual * limit || usual > recent * limit);
    };
    shape_shift_ = moved([](const auto& s) { return s.first; }) ||
                   moved([](const auto& s) { return s.second; });
  }
  shape_shift_began_ = shape_shift_ && !shifted_before;

  const bool warm = windows_ >= o_.warmup_windows;
  const bool material = short_sum * seconds >= kMinBurstArrivals;
  const double half_ratio = (1 + o_.burst_ratio) / 2;
  const bool cusum_alarm =
      s_rate_ > o_.cusum_h || (p99_cusum_.n >= o_.warmup_windows && s_p99_ > o_.cusum_h);
  // Entering takes the full ratio, or a CUSUM alarm and half of it; a burst goes on while either
  // holds on its own.
  const bool trigger =
      warm && material && !shape_shift_ &&
      (in_burst_ ? ratio_ >= half_ratio || cusum_alarm
                 : ratio_ >= o_.burst_ratio || (cusum_alarm && ratio_ >= half_ratio));
  if (in_burst_ && ++burst_windows_ >= o_.long_windows) {
    // The long window has seen nothing but the new level: it is the new normal (Knative leaves
    // panic mode after one stable window). The CUSUMs start afresh from it.
    EndBurst();
    rate_cusum_.mean = long_mean;
    rate_cusum_.s = p99_cusum_.s = s_rate_ = s_p99_ = 0;
    return;
  }
  if (trigger) {
    if (!in_burst_) {
      in_burst_ = true;
      burst_windows_ = 0;
      ++bursts_;
      watching_ = false;  // what P99 does now is the burst's doing, not the last move's
      rising_ = 0;
    }
    calm_ = 0;
  } else if (in_burst_ && ++calm_ >= o_.cooldown_windows) {
    EndBurst();
  }
}

void Recovery::EndBurst() {
  in_burst_ = false;
  calm_ = 0;
  burst_windows_ = 0;
}

void Recovery::ObserveMove(const serve::StatsWindow& w, bool p99_valid, double log_p99) {
  const double target = w.target_split;
  if (!primed_) {
    primed_ = true;
    last_target_ = stable_split_ = target;
  }
  if (std::abs(target - last_target_) > 1e-6) {  // the target moved at this window's start
    held_ = 0;
    held_sum_ = held_rate_sum_ = 0;
    if (!rolling_back_ && !watching_ && have_stable_p99_ &&
        std::abs(target - stable_split_) > 1e-6) {
      watching_ = true;
      watched_ = 0;
      rising_ = 0;
      previous_log_p99_ = stable_log_p99_;
    }
  }
  last_target_ = target;
  const bool settled = !SafetyGate::MoveInFlight(w);
  if (rolling_back_ && settled && std::abs(target - rollback_to_) <= 1e-6) {
    rolling_back_ = false;
    blocked_left_ = o_.long_windows;
  }
  if (!settled || !p99_valid || rolling_back_) return;
  if (in_burst_) {  // a burst's P99 says nothing about the split
    held_ = 0;
    held_sum_ = held_rate_sum_ = 0;
    return;
  }
  const double margin = std::log1p(o_.rollback_margin);
  const double rate = w.requests.arrivals / std::max(w.seconds(), 1e-6);
  last_log_p99_ = log_p99;
  last_rate_ = rate;
  if (watching_) {
    ++watched_;
    // P99 rising with the load is the load's doing, and with a change of mix the mix's: only a
    // window whose short-window mean rate is within the margin of the stable split's, its
    // requests' shape kept, can blame the move.
    const bool same_load = !shape_shift_ && short_rate_ <= stable_rate_ * (1 + o_.rollback_margin);
    const bool rising =
        same_load && log_p99 > stable_log_p99_ + margin && log_p99 >= previous_log_p99_ - margin;
    rising_ = rising ? rising_ + 1 : 0;
    previous_log_p99_ = log_p99;
    if (rising_ >= o_.rollback_windows && std::abs(target - stable_split_) > 1e-6) {
      rolling_back_ = true;
      rollback_to_ = stable_split_;
      undone_sign_ = Sign(target - stable_split_);
      ++rollbacks_;
      rollback_began_ = true;
      watching_ = false;
      rising_ = 0;
      return;
    }
    if (rising) {
      held_ = 0;
      held_sum_ = held_rate_sum_ = 0;
      return;
    }
    // A move whose P99 has not kept rising for twice the rollback windows is accepted.
    if (watched_ > 2 * o_.rollback_windows) watching_ = false;
  }
  ++held_;
  held_sum_ += log_p99;
  held_rate_sum_ += rate;
  if (held_ >= o_.rollback_windows) {
    stable_split_ = target;
    stable_log_p99_ = held_sum_ / held_;
    stable_rate_ = held_rate_sum_ / held_;
    have_stable_p99_ = true;
    watching_ = false;
  }
}

void Recovery::KeepMove() {
  if (!rolling_back_) return;
  rolling_back_ = false;
  undone_sign_ = 0;
  stable_split_ = last_target_;
  stable_log_p99_ = last_log_p99_;
  stable_rate_ = last_rate_;
  have_stable_p99_ = true;
  held_ = 0;
  held_sum_ = held_rate_sum_ = 0;
  ++kept_moves_;
}

void Recovery::Observe(const serve::StatsWindow& w, double p99_us) {
  const bool p99_valid =
      w.requests.completions >= o_.min_window_answers && w.latency_us.Count() > 0;
  if (p99_valid && p99_us < 0) p99_us = w.latency_us.Quantile(0.99);
  const double log_p99 = p99_valid ? std::log(std::max(1.0, p99_us)) : 0.0;
  if (blocked_left_ > 0) --blocked_left_;
  shape_shift_began_ = rollback_began_ = false;  // edges of this window only
  ObserveBurst(w, p99_valid, log_p99);
  ObserveMove(w, p99_valid, log_p99);
}

RecoveryVerdict Recovery::Filter(double target, double proposed_delta) const {
  RecoveryVerdict v;
  if (rolling_back_) {
    v.mode = RecoveryMode::kRollback;
    v.delta = rollback_to_ - target;
    v.undo = true;
  } else if (in_burst_) {
    v.mode = RecoveryMode::kBurst;
    v.delta = std::clamp(proposed_delta, -o_.burst_max_move, o_.burst_max_move);
  } else if (blocked_left_ > 0 && undone_sign_ != 0 && Sign(proposed_delta) == undone_sign_) {
    v.mode = RecoveryMode::kRollback;
    v.delta = 0;
  } else {
    v.delta = proposed_delta;
  }
  return v;
}

}  // namespace helm::control
