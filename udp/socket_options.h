// Small helpers shared by the datagram and stream sockets: integer socket
// options, O_NONBLOCK, and the local/peer address of a descriptor. Each
// returns the errno status naming the option ("setsockopt SO_RCVBUF=4096: ...").
// They borrow `fd`. Thread-safe.
#ifndef UDPMSG_UDP_SOCKET_OPTIONS_H_
#define UDPMSG_UDP_SOCKET_OPTIONS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "udp/socket_address.h"

namespace udpmsg::udp {

absl::Status SetIntOption(int fd, int level, int name, int value, absl::string_view what);
absl::StatusOr<int> GetIntOption(int fd, int level, int name, absl::string_view what);
absl::Status SetNonBlockingFd(int fd, bool non_blocking);
// getsockname / getpeername, as the kernel reports them (v4-mapped kept).
absl::StatusOr<SocketAddress> SockName(int fd);
absl::StatusOr<SocketAddress> PeerName(int fd);

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_SOCKET_OPTIONS_H_
