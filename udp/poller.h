// Poller: readiness notification with epoll(7), plus a cross-thread wake-up.
//
// Owns the epoll descriptor and an eventfd used by Wake(). Borrows the
// descriptors registered with Add(): they must be removed (or closed, which
// removes them) before the caller destroys them.
//
// Usage:
//   absl::StatusOr<Poller> poller = Poller::Create();
//   poller->Add(socket.fd(), Poller::kReadable, /*token=*/1);
//   absl::StatusOr<absl::Span<const Poller::Event>> ready =
//       poller->Wait(absl::Milliseconds(50));   // InfiniteDuration() to block
//   for (const Poller::Event& e : *ready) { ... e.token, e.readable ... }
//
// Threading: Wait() from one thread; Wake() from any thread.
#ifndef UDPMSG_UDP_POLLER_H_
#define UDPMSG_UDP_POLLER_H_

#include <sys/epoll.h>

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "udp/owned_fd.h"

namespace udpmsg::udp {

class Poller final {
 public:
  static constexpr uint32_t kReadable = EPOLLIN;
  static constexpr uint32_t kWritable = EPOLLOUT;
  static constexpr size_t kMaxEvents = 64;
  // Used internally for Wake(); Add() refuses it.
  static constexpr uint64_t kReservedToken = ~uint64_t{0};

  struct Event {
    uint64_t token = 0;
    bool readable = false;
    bool writable = false;
    bool error = false;  // EPOLLERR or EPOLLHUP
  };

  static absl::StatusOr<Poller> Create();
  Poller(Poller&&) = default;
  Poller& operator=(Poller&&) = default;

  // INVALID_ARGUMENT for kReservedToken; the errno status of epoll_ctl.
  absl::Status Add(int fd, uint32_t interest, uint64_t token);
  absl::Status Modify(int fd, uint32_t interest, uint64_t token);
  absl::Status Remove(int fd);

  // Waits up to `timeout` (with nanosecond precision via epoll_pwait2, or
  // rounded up to whole milliseconds on kernels before 5.11; zero polls,
  // InfiniteDuration blocks) and returns the ready descriptors. The span is
  // valid until the next Wait. Wake-ups are consumed here and not reported.
  absl::StatusOr<absl::Span<const Event>> Wait(absl::Duration timeout);

  // Makes a concurrent or the next Wait() return promptly.
  void Wake();

 private:
  Poller(OwnedFd epoll, OwnedFd wake) : epoll_(std::move(epoll)), wake_(std::move(wake)) {}

  OwnedFd epoll_;
  OwnedFd wake_;
  std::array<Event, kMaxEvents> ready_{};
};

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_POLLER_H_
