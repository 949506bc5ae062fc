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
// Path MTU discovery by probing (RFC 8899, reliable/pmtud.h): sets
// IP_MTU_DISCOVER=IP_PMTUDISC_PROBE, and on an IPv6 socket also
// IPV6_MTU_DISCOVER=IPV6_PMTUDISC_PROBE (the IPv4 one then covers v4-mapped
// peers). Datagrams leave with DF set and are never fragmented by this
// host; one larger than the interface MTU fails with EMSGSIZE; the kernel's
// path MTU cache (fed by ICMP, which anyone can forge) never shrinks what is
// sent: the prober decides. The errno status of the failing setsockopt.
absl::Status EnablePathMtuProbing(int fd);
// getsockname / getpeername, as the kernel reports them (v4-mapped kept).
absl::StatusOr<SocketAddress> SockName(int fd);
absl::StatusOr<SocketAddress> PeerName(int fd);

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_SOCKET_OPTIONS_H_
