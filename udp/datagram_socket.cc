#include "udp/datagram_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "udp/errno_status.h"

namespace udpmsg::udp {

absl::StatusOr<DatagramSocket> DatagramSocket::Open(AddressFamily family,
                                                    const Options& options) {
  if (family == AddressFamily::kUnspecified) {
    return absl::InvalidArgumentError("datagram socket needs IPv4 or IPv6, not 'any'");
  }
  int type = SOCK_DGRAM | SOCK_CLOEXEC | (options.non_blocking ? SOCK_NONBLOCK : 0);
  OwnedFd fd(::socket(ToNative(family), type, 0));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("socket ", FamilyName(family), " UDP"));
  if (options.reuse_address) {
    absl::Status s = SetIntOption(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    if (!s.ok()) return s;
  }
  if (family == AddressFamily::kIpv6) {
    absl::Status s =
        SetIntOption(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, options.v6_only ? 1 : 0, "IPV6_V6ONLY");
    if (!s.ok()) return s;
  }
  if (options.receive_buffer_bytes > 0) {
    absl::Status s = SetIntOption(fd.get(), SOL_SOCKET, SO_RCVBUF, options.receive_buffer_bytes,
                                  "SO_RCVBUF");
    if (!s.ok()) return s;
  }
  if (options.send_buffer_bytes > 0) {
    absl::Status s =
        SetIntOption(fd.get(), SOL_SOCKET, SO_SNDBUF, options.send_buffer_bytes, "SO_SNDBUF");
    if (!s.ok()) return s;
  }
  return DatagramSocket(std::move(fd), family);
}

absl::StatusOr<DatagramSocket> DatagramSocket::Bind(const SocketAddress& local,
                                                    const Options& options) {
  absl::StatusOr<DatagramSocket> socket = Open(local.family(), options);
  if (!socket.ok()) return socket.status();
  if (::bind(socket->fd(), local.data(), local.size()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("bind ", local.ToString()));
  }
  return socket;
}

SocketAddress DatagramSocket::ForSocket(const SocketAddress& peer) const {
  if (family_ == AddressFamily::kIpv6 && peer.family() == AddressFamily::kIpv4) {
    return peer.V4Mapped();
  }
  return peer;
}

absl::Status DatagramSocket::Connect(const SocketAddress& peer) {
  SocketAddress target = ForSocket(peer);
  while (::connect(fd(), target.data(), target.size()) != 0) {
    if (errno == EINTR) continue;
    return ErrnoStatus(errno, absl::StrCat("connect ", peer.ToString()));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> DatagramSocket::SendTo(const SocketAddress& peer,
                                              absl::Span<const uint8_t> payload) {
  SocketAddress target = ForSocket(peer);
  for (;;) {
    ssize_t n = ::sendto(fd(), payload.data(), payload.size(), MSG_NOSIGNAL, target.data(),
                         target.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    return ErrnoStatus(errno, absl::StrCat("sendto ", peer.ToString(), " (", payload.size(),
                                           " bytes)"));
  }
}

absl::StatusOr<size_t> DatagramSocket::Send(absl::Span<const uint8_t> payload) {
  for (;;) {
    ssize_t n = ::send(fd(), payload.data(), payload.size(), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    absl::StatusOr<SocketAddress> peer = PeerName(fd());
    return ErrnoStatus(errno, absl::StrCat("send ", peer.ok() ? peer->ToString() : "(unconnected)",
                                           " (", payload.size(), " bytes)"));
  }
}

absl::StatusOr<Datagram> DatagramSocket::RecvFrom(absl::Span<uint8_t> buffer) {
  Datagram result;
  for (;;) {
    socklen_t length = SocketAddress::capacity();
    ssize_t n = ::recvfrom(fd(), buffer.data(), buffer.size(), MSG_TRUNC,
                           result.from.mutable_data(), &length);
    if (n >= 0) {
      result.from.set_size(length);
      result.from = result.from.Unmapped();
      result.truncated = static_cast<size_t>(n) > buffer.size();
      result.size = result.truncated ? buffer.size() : static_cast<size_t>(n);
      return result;
    }
    if (errno == EINTR) continue;
    absl::StatusOr<SocketAddress> local = SockName(fd());
    return ErrnoStatus(errno,
                       absl::StrCat("recvfrom on ", local.ok() ? local->ToString() : "(unbound)"));
  }
}

absl::StatusOr<size_t> DatagramSocket::SendBatch(absl::Span<const OutgoingDatagram> batch) {
  const size_t count = std::min(batch.size(), kMaxBatch);
  if (count == 0) return 0;
  std::array<mmsghdr, kMaxBatch> headers{};
  std::array<iovec, kMaxBatch> vectors{};
  std::array<SocketAddress, kMaxBatch> targets;
  for (size_t i = 0; i < count; ++i) {
    targets[i] = ForSocket(batch[i].to);
    vectors[i].iov_base = const_cast<uint8_t*>(batch[i].payload.data());
    vectors[i].iov_len = batch[i].payload.size();
    headers[i].msg_hdr.msg_name = const_cast<sockaddr*>(targets[i].data());
    headers[i].msg_hdr.msg_namelen = targets[i].size();
    headers[i].msg_hdr.msg_iov = &vectors[i];
    headers[i].msg_hdr.msg_iovlen = 1;
  }
  for (;;) {
    int n = ::sendmmsg(fd(), headers.data(), static_cast<unsigned>(count), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    return ErrnoStatus(errno, absl::StrCat("sendmmsg ", count, " datagrams, first to ",
                                           batch[0].to.ToString()));
  }
}

absl::StatusOr<size_t> DatagramSocket::RecvBatch(absl::Span<ReceiveSlot> slots) {
  const size_t count = std::min(slots.size(), kMaxBatch);
  if (count == 0) return 0;
  std::array<mmsghdr, kMaxBatch> headers{};
  std::array<iovec, kMaxBatch> vectors{};
  for (size_t i = 0; i < count; ++i) {
    vectors[i].iov_base = slots[i].buffer.data();
    vectors[i].iov_len = slots[i].buffer.size();
    headers[i].msg_hdr.msg_name = slots[i].from.mutable_data();
    headers[i].msg_hdr.msg_namelen = SocketAddress::capacity();
    headers[i].msg_hdr.msg_iov = &vectors[i];
    headers[i].msg_hdr.msg_iovlen = 1;
  }
  for (;;) {
    // MSG_WAITFORONE: block (on a blocking socket) only for the first one.
    int n = ::recvmmsg(fd(), headers.data(), static_cast<unsigned>(count), MSG_WAITFORONE,
                       nullptr);
    if (n >= 0) {
      for (int i = 0; i < n; ++i) {
        slots[i].from.set_size(headers[i].msg_hdr.msg_namelen);
        slots[i].from = slots[i].from.Unmapped();
        slots[i].size = headers[i].msg_len;
        slots[i].truncated = (headers[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
      }
      return static_cast<size_t>(n);
    }
    if (errno == EINTR) continue;
    absl::StatusOr<SocketAddress> local = SockName(fd());
    return ErrnoStatus(errno,
                       absl::StrCat("recvmmsg on ", local.ok() ? local->ToString() : "(unbound)"));
  }
}

bool IsIcmpReportErrno(int error) {
  switch (error) {
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EHOSTDOWN:
    case ENETDOWN:
    case EMSGSIZE:
    case EPROTO:
    case ENOPROTOOPT:
    case EACCES:
      return true;
    default:
      return false;
  }
}

absl::Status DatagramSocket::EnableErrorQueue() {
  // IPv4 traffic (v4-mapped on a dual-stack socket too) reports through
  // IP_RECVERR, IPv6 through IPV6_RECVERR.
  if (absl::Status s = SetIntOption(fd(), SOL_IP, IP_RECVERR, 1, "IP_RECVERR"); !s.ok()) return s;
  if (family_ == AddressFamily::kIpv6) {
    return SetIntOption(fd(), SOL_IPV6, IPV6_RECVERR, 1, "IPV6_RECVERR");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SocketError>> DatagramSocket::ReadErrors(size_t max) {
  std::vector<SocketError> errors;
  while (errors.size() < max) {
    SocketAddress destination;
    alignas(cmsghdr) std::array<char, 512> control;
    std::array<uint8_t, 64> head;  // the start of the failed datagram; unused
    iovec iov{head.data(), head.size()};
    msghdr msg{};
    msg.msg_name = destination.mutable_data();
    msg.msg_namelen = SocketAddress::capacity();
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    const ssize_t n = ::recvmsg(fd(), &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;  // queue empty
      absl::StatusOr<SocketAddress> local = SockName(fd());
      return ErrnoStatus(errno, absl::StrCat("recvmsg(MSG_ERRQUEUE) on ",
                                             local.ok() ? local->ToString() : "(unbound)"));
    }
    destination.set_size(msg.msg_namelen);
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      const bool v4 = c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR;
      const bool v6 = c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR;
      if (!v4 && !v6) continue;
      if (c->cmsg_len < CMSG_LEN(sizeof(sock_extended_err))) continue;
      sock_extended_err ee;
      std::memcpy(&ee, CMSG_DATA(c), sizeof(ee));
      if (ee.ee_origin != SO_EE_ORIGIN_ICMP && ee.ee_origin != SO_EE_ORIGIN_ICMP6) continue;
      SocketError e;
      e.destination = destination.Unmapped();
      e.error = static_cast<int>(ee.ee_errno);
      // The offender's address follows the extended error in the same cmsg.
      const sockaddr* offender = SO_EE_OFFENDER(reinterpret_cast<sock_extended_err*>(CMSG_DATA(c)));
      const size_t room = c->cmsg_len - CMSG_LEN(sizeof(sock_extended_err));
      absl::StatusOr<SocketAddress> from =
          SocketAddress::FromSockaddr(offender, static_cast<socklen_t>(room));
      if (from.ok()) e.reporter = from->Unmapped();
      errors.push_back(e);
    }
  }
  return errors;
}

absl::Status DatagramSocket::SetNonBlocking(bool non_blocking) {
  return SetNonBlockingFd(fd(), non_blocking);
}

absl::Status DatagramSocket::SetReceiveBufferSize(int bytes) {
  return SetIntOption(fd(), SOL_SOCKET, SO_RCVBUF, bytes, "SO_RCVBUF");
}

absl::Status DatagramSocket::SetSendBufferSize(int bytes) {
  return SetIntOption(fd(), SOL_SOCKET, SO_SNDBUF, bytes, "SO_SNDBUF");
}

absl::StatusOr<int> DatagramSocket::ReceiveBufferSize() const {
  return GetIntOption(fd(), SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF");
}

absl::StatusOr<int> DatagramSocket::SendBufferSize() const {
  return GetIntOption(fd(), SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF");
}

absl::StatusOr<SocketAddress> DatagramSocket::LocalAddress() const { return SockName(fd()); }

}  // namespace udpmsg::udp
