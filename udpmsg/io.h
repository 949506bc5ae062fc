// udpmsg I/O helpers for programs that wait on their own descriptors beside
// a Host or a socket (stdin, a signalfd, a listener): an owning descriptor,
// an epoll readiness loop, and errno-to-Status conversion under the
// library's rule that UNAVAILABLE means "would block" and nothing else.
//
// Usage:
//   udpmsg::OwnedFd fd(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
//   if (!fd) return udpmsg::ErrnoStatus(errno, "signalfd");   // closed by ~OwnedFd
//   absl::StatusOr<udpmsg::Poller> poller = udpmsg::Poller::Create();
//   poller->Add(fd.get(), udpmsg::Poller::kReadable, /*token=*/1);
//   absl::StatusOr<absl::Span<const udpmsg::Poller::Event>> ready =
//       poller->Wait(absl::Milliseconds(50));
//   if (udpmsg::IsWouldBlock(status)) { ... try again later ... }
//
// A Host has its own loop: give it extra descriptors with Host::Watch
// instead of a second Poller.
//
// Ownership: OwnedFd owns one descriptor (move-only); Poller owns its epoll
// and wake-up descriptors and borrows the descriptors added to it.
// Threading: Poller::Wait from one thread, Poller::Wake from any; the
// functions are thread-safe.
// Status codes: Poller::Create/Add/Modify/Remove/Wait return the errno
// status of the failed epoll call (see udp/poller.h).
#ifndef UDPMSG_UDPMSG_IO_H_
#define UDPMSG_UDPMSG_IO_H_

#include "udp/errno_status.h"
#include "udp/owned_fd.h"
#include "udp/poller.h"

namespace udpmsg {

using udp::OwnedFd;
using udp::Poller;
// "<what>: <strerror>" with a code that keeps UNAVAILABLE for EAGAIN alone.
using udp::ErrnoStatus;
// strerror(), thread-safe.
using udp::ErrnoText;
// True when a status says the call would block.
using udp::IsWouldBlock;

}  // namespace udpmsg

#endif  // UDPMSG_UDPMSG_IO_H_
