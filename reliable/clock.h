// Clock: the one place time is read. The reliability core never reads a clock
// itself: time is a parameter of every call. The runtime asks a Clock; tests
// use FakeClock and move it by hand.
//
// Threading: RealClock is thread-safe; FakeClock is not synchronised.
#ifndef UDPMSG_RELIABLE_CLOCK_H_
#define UDPMSG_RELIABLE_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace udpmsg::reliable {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
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
