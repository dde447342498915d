// How the open-loop core passes time: the waiting primitive comes from the clock's side, so the
// core never sleeps or reads a wall clock itself. RealSleeper waits in real time for a clock that
// advances on its own; tests use a sleeper that advances a FakeClock instead (delivering the fake
// server's replies that fall due on the way), so a run takes no real time and is deterministic.
#pragma once

#include <cstdint>
#include <limits>

#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "helm/common/clock.h"

namespace helm::bench {

// A time far enough in the future that WaitUntil never times out.
inline constexpr int64_t kForeverUs = std::numeric_limits<int64_t>::max();

class Sleeper {
 public:
  virtual ~Sleeper() = default;

  // Returns once the clock reads at least `due_us` (at once when it already does).
  virtual void SleepUntil(int64_t due_us) = 0;

  // Returns true once `done()` holds, or done() once the clock reads at least `due_us`.
  // `done` is checked on entry and after every Wake(); it may take locks of its own but must not
  // call into this sleeper. A sleeper whose time cannot advance any further (a fake with nothing
  // left to deliver) may return done() early rather than block forever.
  virtual bool WaitUntil(absl::FunctionRef<bool()> done, int64_t due_us) = 0;

  // Makes a WaitUntil in progress check `done` again. Thread-safe; callable from any thread.
  virtual void Wake() = 0;
};

// Waits in real time for `clock` (which must advance on its own, e.g. Clock::Real()): sleeps most
// of the way, then yields, for ~100 us accuracy without burning a core.
// Thread-safety: one thread sleeps or waits at a time; Wake() from any thread.
class RealSleeper final : public Sleeper {
 public:
  // `clock` must outlive the sleeper.
  explicit RealSleeper(Clock* clock) : clock_(clock) {}

  void SleepUntil(int64_t due_us) override;
  bool WaitUntil(absl::FunctionRef<bool()> done, int64_t due_us) override;
  void Wake() override;

 private:
  Clock* const clock_;
  absl::Mutex mu_;
  absl::CondVar woken_;
};

}  // namespace helm::bench
