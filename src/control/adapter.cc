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
      if (phase_ == Phase::kNominal) {
        phase_ = Phase::kProbe;
      } else {
        if (count_[0] > 0 && count_[1] > 0) {
          const double gain = std::clamp(sum_[1] / count_[1] - sum_[0] / count_[0], -1.0, 1.0);
          const double moved = (probe_u_ - nominal_u_) / o_.probe;
          c_ = std::clamp(c_ + o_.step * gain * moved, -o_.bound, o_.bound);
          last_gain_ = gain;
          ++updates_;
        }
        sum_[0] = sum_[1] = 0;
        count_[0] = count_[1] = 0;
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
}

void ResidualAdapter::Reset() {
  const bool frozen = frozen_;
  *this = ResidualAdapter(o_);
  frozen_ = frozen;
}

}  // namespace helm::control
