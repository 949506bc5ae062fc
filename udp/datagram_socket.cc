#include "udp/datagram_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "udp/errno_status.h"

namespace udpmsg::udp {
namespace {

// Errors with which the kernel refuses to segment a train at send time: EIO
// when the route's device cannot checksum the segments (no checksum
// offload), EINVAL for SO_NO_CHECK / UDP_NO_CHECK6_TX or a segment larger
// than the device MTU, the others from kernels or devices without UDP GSO.
bool IsSegmentationRefusal(int error) {
  return error == EIO || error == EINVAL || error == ENOPROTOOPT || error == EOPNOTSUPP;
}

// Why `train` cannot be sent as one train; OK when it can.
absl::Status CheckTrain(const OutgoingTrain& train) {
  const size_t count = train.datagrams.size();
  if (count == 0) return absl::InvalidArgumentError("empty train");
  if (count > DatagramSocket::kMaxTrainSegments) {
    return absl::InvalidArgumentError(absl::StrCat("train of ", count, " datagrams (at most ",
                                                   DatagramSocket::kMaxTrainSegments, ")"));
  }
  if (count == 1) return absl::OkStatus();
  const size_t segment = train.datagrams[0].size();
  if (segment == 0) return absl::InvalidArgumentError("train of empty datagrams");
  size_t total = 0;
  for (size_t i = 0; i < count; ++i) {
    const size_t size = train.datagrams[i].size();
    if (size > segment || (size < segment && i + 1 < count)) {
      return absl::InvalidArgumentError(absl::StrCat("train datagram ", i, " has ", size,
                                                     " bytes, the first ", segment));
    }
    total += size;
  }
  if (total > DatagramSocket::MaxTrainBytes(train.to)) {
    return absl::InvalidArgumentError(absl::StrCat("train of ", total, " bytes to ",
                                                   train.to.ToString(), " (at most ",
                                                   DatagramSocket::MaxTrainBytes(train.to), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

size_t DatagramSocket::MaxTrainBytes(const SocketAddress& to) {
  return to.family() == AddressFamily::kIpv6 && !to.IsV4Mapped() ? kMaxUdpPayloadIpv6
                                                                 : kMaxUdpPayloadIpv4;
}

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
  if (options.reuse_port) {
    absl::Status s = SetIntOption(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
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

namespace {

// Whether each datagram starts where the one before it ends.
bool Contiguous(absl::Span<const absl::Span<const uint8_t>> datagrams) {
  for (size_t i = 1; i < datagrams.size(); ++i) {
    if (datagrams[i].data() != datagrams[i - 1].data() + datagrams[i - 1].size()) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<size_t> DatagramSocket::SendTrains(absl::Span<const OutgoingTrain> trains) {
  if (trains.empty()) return 0;
  if (absl::Status s = CheckTrain(trains[0]); !s.ok()) return s;
  if (!segmentation_) return SendTrainsPlain(trains);
  // One message per train; a train of two or more carries its segment size
  // in a UDP_SEGMENT control message. Its datagrams go as one iovec: over
  // the caller's bytes when they lie back to back, else copied into gather_
  // back to back first. The kernel's copy of a train from 44
  // iovecs of 1,378 bytes was 28.6% of a clean-veth sender's samples, from
  // one iovec 6.0% (plus 6-7% for this copy); sender CPU per GB -15%,
  // goodput +18% (docs/performance.md). A train that would take gather_
  // past kGatherBytes waits for the next call (a partial count).
  struct Control {
    alignas(cmsghdr) char bytes[CMSG_SPACE(sizeof(uint16_t))];
  };
  std::array<mmsghdr, kMaxBatch> headers{};
  std::array<iovec, kMaxBatch> vectors;  // one per train
  std::array<SocketAddress, kMaxBatch> targets;
  std::array<Control, kMaxBatch> controls;
  std::array<bool, kMaxBatch> copied{};  // through gather_
  size_t count = 0;
  size_t datagrams_in_call = 0;
  size_t gathered = 0;  // bytes of gather_
  for (; count < trains.size() && count < kMaxBatch; ++count) {
    const OutgoingTrain& train = trains[count];
    // A malformed later train waits for the next call, which reports it.
    if (count > 0 && !CheckTrain(train).ok()) break;
    if (datagrams_in_call + train.datagrams.size() > kMaxDatagramsPerCall) break;
    iovec& v = vectors[count];
    if (train.datagrams.size() == 1) {
      v.iov_base = const_cast<uint8_t*>(train.datagrams[0].data());
      v.iov_len = train.datagrams[0].size();
    } else if (Contiguous(train.datagrams)) {
      // Back to back in the caller's buffer already (reliable's
      // DatagramBatch): one iovec over them, no copy.
      v.iov_base = const_cast<uint8_t*>(train.datagrams.front().data());
      v.iov_len = static_cast<size_t>(train.datagrams.back().data() +
                                      train.datagrams.back().size() -
                                      train.datagrams.front().data());
    } else {
      size_t bytes = 0;
      for (const absl::Span<const uint8_t>& d : train.datagrams) bytes += d.size();
      // Never for the first train: one is at most 65,527 bytes.
      if (gathered + bytes > kGatherBytes) break;
      if (gather_.empty()) gather_.resize(kGatherBytes);
      uint8_t* at = gather_.data() + gathered;
      v.iov_base = at;
      v.iov_len = bytes;
      for (const absl::Span<const uint8_t>& d : train.datagrams) {
        std::memcpy(at, d.data(), d.size());
        at += d.size();
      }
      gathered += bytes;
      copied[count] = true;
    }
    targets[count] = ForSocket(train.to);
    msghdr& m = headers[count].msg_hdr;
    m.msg_name = const_cast<sockaddr*>(targets[count].data());
    m.msg_namelen = targets[count].size();
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    if (train.datagrams.size() > 1) {
      m.msg_control = controls[count].bytes;
      m.msg_controllen = sizeof(controls[count].bytes);
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      const uint16_t segment = static_cast<uint16_t>(train.datagrams[0].size());
      std::memcpy(CMSG_DATA(c), &segment, sizeof(segment));
    }
    datagrams_in_call += train.datagrams.size();
  }
  for (;;) {
    const int n = ::sendmmsg(fd(), headers.data(), static_cast<unsigned>(count), MSG_NOSIGNAL);
    if (n >= 0) {
      // A later train that failed (a refusal included) comes first in the
      // caller's next call and fails there, synchronously.
      size_t datagrams = 0;
      for (int i = 0; i < n; ++i) {
        datagrams += trains[i].datagrams.size();
        if (trains[i].datagrams.size() > 1) {
          invalid_trains_in_a_row_ = 0;
          ++gathered_trains_;
          if (copied[static_cast<size_t>(i)]) ++copied_trains_;
        }
      }
      return datagrams;
    }
    const int error = errno;
    if (error == EINTR) continue;
    if (trains[0].datagrams.size() > 1 && IsSegmentationRefusal(error)) {
      // EINVAL also means "one segment is larger than the device's MTU"
      // (a route that shrank under a connection's settled size): these go
      // again as plain datagrams, and segmentation stays on until
      // kMaxInvalidTrains refusals in a row say it is the socket (SO_NO_CHECK,
      // say). EIO and the rest mean the kernel or device will not segment at
      // all: plain datagrams from now on.
      if (error != EINVAL || ++invalid_trains_in_a_row_ >= kMaxInvalidTrains) {
        segmentation_ = false;
        segmentation_refused_errno_ = error;
      }
      ++refused_train_calls_;
      return SendTrainsPlain(trains);
    }
    return ErrnoStatus(error, absl::StrCat("sendmmsg ", count, " trains (", datagrams_in_call,
                                           " datagrams), first to ", trains[0].to.ToString()));
  }
}

absl::StatusOr<size_t> DatagramSocket::SendTrainsPlain(absl::Span<const OutgoingTrain> trains) {
  std::array<mmsghdr, kMaxBatch> headers{};
  std::array<iovec, kMaxBatch> vectors{};
  std::array<SocketAddress, kMaxBatch> targets;
  size_t count = 0;
  for (size_t t = 0; t < trains.size() && count < kMaxBatch; ++t) {
    if (t > 0 && !CheckTrain(trains[t]).ok()) break;
    const SocketAddress target = ForSocket(trains[t].to);
    for (size_t i = 0; i < trains[t].datagrams.size() && count < kMaxBatch; ++i, ++count) {
      targets[count] = target;
      vectors[count].iov_base = const_cast<uint8_t*>(trains[t].datagrams[i].data());
      vectors[count].iov_len = trains[t].datagrams[i].size();
      headers[count].msg_hdr.msg_name = const_cast<sockaddr*>(targets[count].data());
      headers[count].msg_hdr.msg_namelen = targets[count].size();
      headers[count].msg_hdr.msg_iov = &vectors[count];
      headers[count].msg_hdr.msg_iovlen = 1;
    }
  }
  for (;;) {
    const int n = ::sendmmsg(fd(), headers.data(), static_cast<unsigned>(count), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    return ErrnoStatus(errno, absl::StrCat("sendmmsg ", count, " datagrams, first to ",
                                           trains[0].to.ToString()));
  }
}

absl::Status DatagramSocket::EnableSegmentation() {
  // Segment size 0 (the default) changes nothing; the point is whether the
  // kernel knows the option. A kernel that did not would ignore the control
  // message and send a whole train as one datagram.
  if (absl::Status s = SetIntOption(fd(), SOL_UDP, UDP_SEGMENT, 0, "UDP_SEGMENT"); !s.ok()) {
    return s;
  }
  segmentation_ = true;
  return absl::OkStatus();
}

absl::Status DatagramSocket::EnableCoalescing() {
  if (absl::Status s = SetIntOption(fd(), SOL_UDP, UDP_GRO, 1, "UDP_GRO"); !s.ok()) return s;
  coalescing_ = true;
  return absl::OkStatus();
}

absl::StatusOr<size_t> DatagramSocket::RecvBatch(absl::Span<ReceiveSlot> slots) {
  const size_t count = std::min(slots.size(), kMaxBatch);
  if (count == 0) return 0;
  // With GRO on, each message may carry a UDP_GRO control message (an int:
  // the segment size of a coalesced buffer).
  struct Control {
    alignas(cmsghdr) char bytes[CMSG_SPACE(sizeof(int))];
  };
  std::array<mmsghdr, kMaxBatch> headers{};
  std::array<iovec, kMaxBatch> vectors{};
  std::array<Control, kMaxBatch> controls;
  for (size_t i = 0; i < count; ++i) {
    vectors[i].iov_base = slots[i].buffer.data();
    vectors[i].iov_len = slots[i].buffer.size();
    headers[i].msg_hdr.msg_name = slots[i].from.mutable_data();
    headers[i].msg_hdr.msg_namelen = SocketAddress::capacity();
    headers[i].msg_hdr.msg_iov = &vectors[i];
    headers[i].msg_hdr.msg_iovlen = 1;
    if (coalescing_) {
      headers[i].msg_hdr.msg_control = controls[i].bytes;
      headers[i].msg_hdr.msg_controllen = sizeof(controls[i].bytes);
    }
  }
  for (;;) {
    // MSG_WAITFORONE: block (on a blocking socket) only for the first one.
    int n = ::recvmmsg(fd(), headers.data(), static_cast<unsigned>(count), MSG_WAITFORONE,
                       nullptr);
    if (n >= 0) {
      for (int i = 0; i < n; ++i) {
        msghdr& m = headers[i].msg_hdr;
        slots[i].from.set_size(m.msg_namelen);
        slots[i].from = slots[i].from.Unmapped();
        slots[i].size = headers[i].msg_len;
        slots[i].truncated = (m.msg_flags & MSG_TRUNC) != 0;
        slots[i].segment_size = 0;
        if (!coalescing_) continue;
        for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
          if (c->cmsg_level != SOL_UDP || c->cmsg_type != UDP_GRO) continue;
          if (c->cmsg_len < CMSG_LEN(sizeof(int))) continue;
          int segment = 0;
          std::memcpy(&segment, CMSG_DATA(c), sizeof(segment));
          if (segment > 0 && static_cast<size_t>(segment) < slots[i].size) {
            slots[i].segment_size = static_cast<size_t>(segment);
          }
        }
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
