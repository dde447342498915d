#include "bench/sleeper.h"

#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace helm::bench {
namespace {

// Below this much time left, yield instead of sleeping: a sleep can overshoot by ~100 us.
constexpr int64_t kSpinUs = 300;
constexpr int64_t kWakeEarlyUs = 200;

}  // namespace

void RealSleeper::SleepUntil(int64_t due_us) {
  while (true) {
    const int64_t left_us = due_us - clock_->NowMicros();
    if (left_us <= 0) return;
    if (left_us > kSpinUs) {
      absl::SleepFor(absl::Microseconds(left_us - kWakeEarlyUs));
    } else {
      std::this_thread::yield();
    }
  }
}

bool RealSleeper::WaitUntil(absl::FunctionRef<bool()> done, int64_t due_us) {
  // `done` is checked with mu_ held, and Wake() takes mu_, so a Wake() between the check and the
  // wait is not lost.
  absl::MutexLock lock(&mu_);
  while (true) {
    if (done()) return true;
    const int64_t now_us = clock_->NowMicros();
    if (now_us >= due_us) return false;
    if (due_us == kForeverUs) {
      woken_.Wait(&mu_);
    } else {
      woken_.WaitWithTimeout(&mu_, absl::Microseconds(due_us - now_us));
    }
  }
}

void RealSleeper::Wake() {
  absl::MutexLock lock(&mu_);
  woken_.SignalAll();
}

}  // namespace helm::bench
