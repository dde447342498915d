// Injectable time source. Components take a `Clock*` so that tests drive time with a FakeClock and
// never sleep. Both implementations are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

namespace helm {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time in microseconds since an arbitrary epoch fixed for the clock's lifetime.
  virtual int64_t NowMicros() const = 0;
  // Wall-clock time in milliseconds since the Unix epoch (for timestamps shown to people).
  virtual int64_t WallMillis() const = 0;

  // The process-wide real clock (steady_clock / system_clock). Never null; never destroyed.
  static Clock* Real();
};

// A clock that moves only when told to. Starts at `start_us` (wall time = start_us / 1000).
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_us = 0) : now_us_(start_us) {}
  int64_t NowMicros() const override { return now_us_.load(std::memory_order_acquire); }
  int64_t WallMillis() const override { return NowMicros() / 1000; }
  void AdvanceMicros(int64_t delta_us) { now_us_.fetch_add(delta_us, std::memory_order_acq_rel); }
  void SetMicros(int64_t now_us) { now_us_.store(now_us, std::memory_order_release); }

 private:
  std::atomic<int64_t> now_us_;
};

}  // namespace helm
