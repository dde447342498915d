#include "helm/control/adapter.h"

#include <algorithm>
#include <cmath>

namespace helm::control {

double ResidualAdapter::Output() const {
  if (frozen_ || phase_ == Phase::kNominal) return c_;
  return std::clamp(c_ + sign_ * o_.probe, -o_.bound, o_.bound);
}

double ResidualAdapter::Update(double reward, bool usable) {
  if (frozen_) {
    u_ = c_;
    return u_;
  }
  const int p = phase_ == Phase::kNominal ? 0 : 1;
  if (started_) {
    // The reward judges the window just returned; the first half of a block is the split moving.
    if (usable && index_ >= o_.block_windows / 2) {
      sum_[p] += reward;
      ++count_[p];
    }
    if (++index_ == o_.block_windows) {  // the block is over
      index_ = 0;
      const bool judged = count_[p] > 0;
      const double mean = judged ? sum_[p] / count_[p] : 0.0;
      sum_[p] = 0;
      count_[p] = 0;
      if (phase_ == Phase::kNominal) {
        // A probe is judged against the mean of the nominal blocks before and after it: a reward
        // drifting linearly (the load, or the split moving under c) cancels out.
        if (probe_judged_ && before_judged_ && judged) {
          const double gain = std::clamp(probe_mean_ - (before_mean_ + mean) / 2, -1.0, 1.0);
          c_ = std::clamp(c_ + o_.step * gain * probe_moved_, -o_.bound, o_.bound);
          last_gain_ = gain;
          ++updates_;
        }
        probe_judged_ = false;
        before_judged_ = judged;
        before_mean_ = mean;
        phase_ = Phase::kProbe;
      } else {
        probe_judged_ = judged;
        probe_mean_ = mean;
        probe_moved_ = (probe_u_ - nominal_u_) / o_.probe;
        sign_ = -sign_;
        phase_ = Phase::kNominal;
      }
    }
  }
  started_ = true;
  u_ = Output();
  if (index_ == 0) (phase_ == Phase::kNominal ? nominal_u_ : probe_u_) = u_;
  return u_;
}

void ResidualAdapter::Freeze(bool frozen) {
  if (frozen_ == frozen) return;
  frozen_ = frozen;
  // Either way the cycle starts afresh: a half-judged block must not mix frozen windows in.
  started_ = false;
  phase_ = Phase::kNominal;
  index_ = 0;
  sum_[0] = sum_[1] = 0;
  count_[0] = count_[1] = 0;
  before_judged_ = probe_judged_ = false;
}

void ResidualAdapter::Reset() {
  const bool frozen = frozen_;
  *this = ResidualAdapter(o_);
  frozen_ = frozen;
}

}  // namespace helm::control
