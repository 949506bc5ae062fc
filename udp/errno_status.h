// Conversion of errno values into absl::Status for the socket layer.
//
// absl::ErrnoToStatus maps many network errors (EADDRINUSE, ECONNREFUSED,
// ENETUNREACH, ...) to kUnavailable. In udpmsg kUnavailable means exactly one
// thing: the operation would block on a non-blocking descriptor. ErrnoStatus
// keeps that promise by mapping every other error that Abseil calls
// "unavailable" to kFailedPrecondition (the peer or the system is not in a
// state that allows the operation).
//
// Usage:
//   if (::bind(fd, addr.data(), addr.size()) != 0) {
//     return ErrnoStatus(errno, absl::StrCat("bind ", addr.ToString()));
//   }
//   // -> FAILED_PRECONDITION: bind 127.0.0.1:9000: Address already in use
//
// Thread-safe.
#ifndef UDPMSG_UDP_ERRNO_STATUS_H_
#define UDPMSG_UDP_ERRNO_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace udpmsg::udp {

// Returns a non-OK status "<what>: <strerror(error)>" with a code that follows
// the rule above. `error` must be non-zero.
absl::Status ErrnoStatus(int error, absl::string_view what);

// strerror() without the thread-safety problem.
std::string ErrnoText(int error);

// The errno an ErrnoStatus was made from (carried as a payload; EAGAIN for
// any UNAVAILABLE status, which means "would block" here); 0 for any other
// status.
int ErrnoOf(const absl::Status& status);

// True when `status` says the call would block (EAGAIN/EWOULDBLOCK).
inline bool IsWouldBlock(const absl::Status& status) { return absl::IsUnavailable(status); }

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_ERRNO_STATUS_H_
