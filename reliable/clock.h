// Clock: the one place time is read. The reliability core never reads a clock
// itself: time is a parameter of every call. The runtime asks a Clock; tests
// use FakeClock and move it by hand.
//
// Threading: RealClock is thread-safe; FakeClock is not synchronised.
#ifndef UDPMSG_RELIABLE_CLOCK_H_
#define UDPMSG_RELIABLE_CLOCK_H_

#include <chrono>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace udpmsg::reliable {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// The real clock, made monotonic: the wall time at construction plus the
// steady clock's progress since, so timers never see time go backwards when
// the system clock is stepped. Copies share the origin.
class RealClock final : public Clock {
 public:
  RealClock() : wall_(absl::Now()), steady_(std::chrono::steady_clock::now()) {}
  absl::Time Now() const override {
    return wall_ + absl::FromChrono(std::chrono::steady_clock::now() - steady_);
  }

 private:
  absl::Time wall_;
  std::chrono::steady_clock::time_point steady_;
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() + absl::Hours(24)) : now_(start) {}
  absl::Time Now() const override { return now_; }
  void Advance(absl::Duration d) { now_ += d; }
  void Set(absl::Time t) { now_ = t; }

 private:
  absl::Time now_;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_CLOCK_H_
