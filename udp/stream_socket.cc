#include "udp/stream_socket.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "udp/socket_options.h"
#include "udp/errno_status.h"

namespace udpmsg::udp {
namespace {

std::string PeerText(int fd) {
  absl::StatusOr<SocketAddress> peer = PeerName(fd);
  return peer.ok() ? peer->Unmapped().ToString() : std::string("(unconnected)");
}

}  // namespace

absl::StatusOr<StreamSocket> StreamSocket::Connect(absl::Span<const SocketAddress> addresses) {
  if (addresses.empty()) return absl::InvalidArgumentError("connect: no addresses to try");
  std::vector<std::string> failures;
  absl::StatusCode last_code = absl::StatusCode::kUnknown;
  for (const SocketAddress& address : addresses) {
    OwnedFd fd(::socket(address.native_family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
      absl::Status s = ErrnoStatus(errno, absl::StrCat("socket for ", address.ToString()));
      last_code = s.code();
      failures.emplace_back(s.message());
      continue;
    }
    int rc;
    do {
      rc = ::connect(fd.get(), address.data(), address.size());
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) return StreamSocket(std::move(fd));
    absl::Status s = ErrnoStatus(errno, absl::StrCat("connect ", address.ToString()));
    last_code = s.code();
    failures.emplace_back(s.message());
  }
  return absl::Status(last_code, absl::StrJoin(failures, "; "));
}

absl::StatusOr<size_t> StreamSocket::Send(absl::Span<const uint8_t> data) {
  for (;;) {
    ssize_t n = ::send(fd(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    return ErrnoStatus(errno, absl::StrCat("send ", PeerText(fd())));
  }
}

absl::Status StreamSocket::SendAll(absl::Span<const uint8_t> data) {
  size_t sent = 0;
  while (sent < data.size()) {
    absl::StatusOr<size_t> n = Send(data.subspan(sent));
    if (n.ok()) {
      sent += *n;
      continue;
    }
    if (!IsWouldBlock(n.status())) {
      return absl::Status(n.status().code(), absl::StrCat(n.status().message(), " after ", sent,
                                                          " of ", data.size(), " bytes"));
    }
    pollfd p{fd(), POLLOUT, 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) {
      return ErrnoStatus(errno, absl::StrCat("poll for send to ", PeerText(fd())));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> StreamSocket::Recv(absl::Span<uint8_t> buffer) {
  for (;;) {
    ssize_t n = ::recv(fd(), buffer.data(), buffer.size(), 0);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    return ErrnoStatus(errno, absl::StrCat("recv from ", PeerText(fd())));
  }
}

absl::Status StreamSocket::Shutdown(ShutdownHow how) {
  int native = how == ShutdownHow::kRead ? SHUT_RD : how == ShutdownHow::kWrite ? SHUT_WR
                                                                                : SHUT_RDWR;
  if (::shutdown(fd(), native) != 0) {
    return ErrnoStatus(errno, absl::StrCat("shutdown ", PeerText(fd())));
  }
  return absl::OkStatus();
}

absl::Status StreamSocket::SetNonBlocking(bool non_blocking) {
  return SetNonBlockingFd(fd(), non_blocking);
}

absl::Status StreamSocket::SetNoDelay(bool no_delay) {
  return SetIntOption(fd(), IPPROTO_TCP, TCP_NODELAY, no_delay ? 1 : 0, "TCP_NODELAY");
}

absl::Status StreamSocket::SetSendBufferSize(int bytes) {
  return SetIntOption(fd(), SOL_SOCKET, SO_SNDBUF, bytes, "SO_SNDBUF");
}

absl::Status StreamSocket::SetReceiveBufferSize(int bytes) {
  return SetIntOption(fd(), SOL_SOCKET, SO_RCVBUF, bytes, "SO_RCVBUF");
}

absl::StatusOr<SocketAddress> StreamSocket::PeerAddress() const {
  absl::StatusOr<SocketAddress> peer = PeerName(fd());
  if (!peer.ok()) return peer.status();
  return peer->Unmapped();
}

absl::StatusOr<SocketAddress> StreamSocket::LocalAddress() const {
  absl::StatusOr<SocketAddress> local = SockName(fd());
  if (!local.ok()) return local.status();
  return local->Unmapped();
}

absl::StatusOr<StreamListener> StreamListener::Listen(const SocketAddress& local, int backlog,
                                                      const Options& options) {
  int type = SOCK_STREAM | SOCK_CLOEXEC | (options.non_blocking ? SOCK_NONBLOCK : 0);
  OwnedFd fd(::socket(local.native_family(), type, 0));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("socket for ", local.ToString()));
  if (options.reuse_address) {
    absl::Status s = SetIntOption(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    if (!s.ok()) return s;
  }
  if (local.family() == AddressFamily::kIpv6) {
    absl::Status s =
        SetIntOption(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, options.v6_only ? 1 : 0, "IPV6_V6ONLY");
    if (!s.ok()) return s;
  }
  if (::bind(fd.get(), local.data(), local.size()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("bind ", local.ToString()));
  }
  if (::listen(fd.get(), backlog) != 0) {
    return ErrnoStatus(errno, absl::StrCat("listen ", local.ToString()));
  }
  return StreamListener(std::move(fd));
}

absl::StatusOr<AcceptedStream> StreamListener::Accept(bool non_blocking_client) {
  for (;;) {
    SocketAddress peer;
    socklen_t length = SocketAddress::capacity();
    int flags = SOCK_CLOEXEC | (non_blocking_client ? SOCK_NONBLOCK : 0);
    int fd = ::accept4(fd_.get(), peer.mutable_data(), &length, flags);
    if (fd >= 0) {
      peer.set_size(length);
      return AcceptedStream{StreamSocket(OwnedFd(fd)), peer.Unmapped()};
    }
    // A connection that died while queued (ECONNABORTED) is not our error.
    if (errno == EINTR || errno == ECONNABORTED) continue;
    absl::StatusOr<SocketAddress> local = LocalAddress();
    return ErrnoStatus(errno,
                       absl::StrCat("accept on ", local.ok() ? local->ToString() : "(unbound)"));
  }
}

absl::StatusOr<SocketAddress> StreamListener::LocalAddress() const { return SockName(fd()); }

}  // namespace udpmsg::udp
