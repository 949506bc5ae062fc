#include "udp/socket_options.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "absl/strings/str_cat.h"
#include "udp/errno_status.h"

namespace udpmsg::udp {

absl::Status SetIntOption(int fd, int level, int name, int value, absl::string_view what) {
  if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
    return ErrnoStatus(errno, absl::StrCat("setsockopt ", what, "=", value));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> GetIntOption(int fd, int level, int name, absl::string_view what) {
  int value = 0;
  socklen_t length = sizeof(value);
  if (::getsockopt(fd, level, name, &value, &length) != 0) {
    return ErrnoStatus(errno, absl::StrCat("getsockopt ", what));
  }
  return value;
}

absl::Status SetNonBlockingFd(int fd, bool non_blocking) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0) return ErrnoStatus(errno, "fcntl F_GETFL");
  flags = non_blocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, flags) != 0) return ErrnoStatus(errno, "fcntl F_SETFL");
  return absl::OkStatus();
}

absl::Status EnablePathMtuProbing(int fd) {
  absl::StatusOr<int> domain = GetIntOption(fd, SOL_SOCKET, SO_DOMAIN, "SO_DOMAIN");
  if (!domain.ok()) return domain.status();
  if (*domain == AF_INET6) {
    absl::Status s = SetIntOption(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE,
                                  "IPV6_MTU_DISCOVER");
    if (!s.ok()) return s;
    // A v6-only socket has no IPv4 side to configure.
    absl::StatusOr<int> v6only = GetIntOption(fd, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY");
    if (!v6only.ok() || *v6only != 0) return v6only.status();
  }
  return SetIntOption(fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE, "IP_MTU_DISCOVER");
}

absl::StatusOr<SocketAddress> SockName(int fd) {
  SocketAddress address;
  socklen_t length = SocketAddress::capacity();
  if (::getsockname(fd, address.mutable_data(), &length) != 0) {
    return ErrnoStatus(errno, "getsockname");
  }
  return SocketAddress::FromSockaddr(address.data(), length);
}

absl::StatusOr<SocketAddress> PeerName(int fd) {
  SocketAddress address;
  socklen_t length = SocketAddress::capacity();
  if (::getpeername(fd, address.mutable_data(), &length) != 0) {
    return ErrnoStatus(errno, "getpeername");
  }
  return SocketAddress::FromSockaddr(address.data(), length);
}

}  // namespace udpmsg::udp
