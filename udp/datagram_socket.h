// DatagramSocket: a UDP (SOCK_DGRAM) socket over IPv4 or IPv6.
//
// Owns its descriptor (closed on destruction). Every call returns a Status;
// EINTR is retried inside, and UNAVAILABLE means "would block" on a
// non-blocking socket and nothing else (see errno_status.h). Received data
// goes into caller buffers: the socket never allocates per datagram.
//
// An IPv6 socket bound to "::" also serves IPv4 unless `Options::v6_only` is
// set. Addresses are canonical at this API: IPv4 peers of such a socket are
// reported as plain IPv4 (never ::ffff:a.b.c.d) and may be sent to as IPv4.
//
// Usage:
//   absl::StatusOr<DatagramSocket> socket =
//       DatagramSocket::Bind(SocketAddress::Loopback(AddressFamily::kIpv4, 0), {});
//   if (!socket.ok()) return socket.status();
//   SocketAddress local = *socket->LocalAddress();          // the chosen port
//   socket->SendTo(peer, AsBytes("hello"));
//   std::array<uint8_t, 1500> buffer;
//   absl::StatusOr<Datagram> got = socket->RecvFrom(absl::MakeSpan(buffer));
//
// Threading: calls on one socket may come from several threads (the kernel
// serialises them), but moving or destroying it must not race with use.
#ifndef UDPMSG_UDP_DATAGRAM_SOCKET_H_
#define UDPMSG_UDP_DATAGRAM_SOCKET_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "udp/owned_fd.h"
#include "udp/socket_options.h"
#include "udp/socket_address.h"

namespace udpmsg::udp {

// The largest UDP payloads: 65535 - 20 (IPv4 header) - 8 and 65535 - 8.
inline constexpr size_t kMaxUdpPayloadIpv4 = 65507;
inline constexpr size_t kMaxUdpPayloadIpv6 = 65527;

// Views a string's bytes.
inline absl::Span<const uint8_t> AsBytes(absl::string_view text) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

// One received datagram: `size` bytes at the front of the caller's buffer.
struct Datagram {
  size_t size = 0;
  SocketAddress from;
  // The datagram was longer than the buffer; the excess was discarded.
  bool truncated = false;
};

// One datagram to send with SendBatch.
struct OutgoingDatagram {
  SocketAddress to;
  absl::Span<const uint8_t> payload;
};

// One receive slot for RecvBatch: the caller provides `buffer`; the socket
// fills the rest.
struct ReceiveSlot {
  absl::Span<uint8_t> buffer;
  size_t size = 0;
  SocketAddress from;
  bool truncated = false;
};

// An ICMP error the kernel reported for a datagram this socket sent (read
// from the error queue, see DatagramSocket::EnableErrorQueue).
struct SocketError {
  SocketAddress destination;  // where the failed datagram was going
  int error = 0;              // errno value: ECONNREFUSED (port unreachable),
                              // EHOSTUNREACH, ENETUNREACH, EMSGSIZE, ...
  SocketAddress reporter;     // who sent the ICMP message; empty if unknown
};

// Whether a receive failed with `error` only because of an asynchronous ICMP
// report (a datagram sent earlier bounced): with the error queue on, the
// kernel fails the next receive once with it. Nothing is wrong with the
// socket; the details are in the error queue.
bool IsIcmpReportErrno(int error);

class DatagramSocket final {
 public:
  struct Options {
    bool non_blocking = false;
    bool reuse_address = false;  // SO_REUSEADDR
    bool v6_only = false;        // IPV6_V6ONLY on IPv6 sockets
    int receive_buffer_bytes = 0;  // SO_RCVBUF when > 0
    int send_buffer_bytes = 0;     // SO_SNDBUF when > 0
  };

  // Largest batch handled by one sendmmsg/recvmmsg call.
  static constexpr size_t kMaxBatch = 64;

  // A new unbound socket of `family` (kIpv4 or kIpv6).
  static absl::StatusOr<DatagramSocket> Open(AddressFamily family, const Options& options);
  // Open + bind to `local` (port 0 picks a free port; LocalAddress() tells
  // which). A busy port fails with "bind 127.0.0.1:9000: Address already in use".
  static absl::StatusOr<DatagramSocket> Bind(const SocketAddress& local, const Options& options);

  DatagramSocket(DatagramSocket&&) = default;
  DatagramSocket& operator=(DatagramSocket&&) = default;

  // Fixes the default peer: Send/Recv then use it, and the kernel drops
  // datagrams from other sources and reports ICMP errors (ECONNREFUSED).
  absl::Status Connect(const SocketAddress& peer);

  // Sends one datagram. Returns the bytes sent (always the whole payload for
  // UDP). UNAVAILABLE when it would block; INVALID_ARGUMENT/other errno
  // statuses name the peer ("sendto [::1]:9: Connection refused").
  absl::StatusOr<size_t> SendTo(const SocketAddress& peer, absl::Span<const uint8_t> payload);
  // Sends on a connected socket.
  absl::StatusOr<size_t> Send(absl::Span<const uint8_t> payload);

  // Receives one datagram into `buffer`. UNAVAILABLE when none is waiting on
  // a non-blocking socket.
  absl::StatusOr<Datagram> RecvFrom(absl::Span<uint8_t> buffer);

  // sendmmsg: sends datagrams from the front of `batch` (at most kMaxBatch
  // per call) and returns how many went out; fewer than requested means the
  // socket buffer filled (non-blocking). UNAVAILABLE when none could be sent.
  absl::StatusOr<size_t> SendBatch(absl::Span<const OutgoingDatagram> batch);
  // recvmmsg: fills slots from the front of `slots` with whatever is waiting
  // (never blocks for more than the first datagram) and returns the count.
  absl::StatusOr<size_t> RecvBatch(absl::Span<ReceiveSlot> slots);

  // Asks the kernel to queue ICMP errors (port or host unreachable, ...) for
  // ReadErrors: IP_RECVERR, plus IPV6_RECVERR on IPv6 sockets. An unconnected
  // socket otherwise never hears of them. Pending errors make the socket
  // poll with EPOLLERR, and the next receive fails once with the errno.
  absl::Status EnableErrorQueue();
  // Takes up to `max` errors from the queue (recvmsg MSG_ERRQUEUE), never
  // blocking; empty when there are none. Anything but ICMP/ICMPv6 reports
  // (local errors) is skipped.
  absl::StatusOr<std::vector<SocketError>> ReadErrors(size_t max);

  absl::Status SetNonBlocking(bool non_blocking);
  absl::Status SetReceiveBufferSize(int bytes);
  absl::Status SetSendBufferSize(int bytes);
  // What the kernel granted (Linux doubles the request for bookkeeping).
  absl::StatusOr<int> ReceiveBufferSize() const;
  absl::StatusOr<int> SendBufferSize() const;

  // getsockname: the bound address, with the port the kernel chose.
  absl::StatusOr<SocketAddress> LocalAddress() const;

  AddressFamily family() const { return family_; }
  int fd() const { return fd_.get(); }

 private:
  DatagramSocket(OwnedFd fd, AddressFamily family) : fd_(std::move(fd)), family_(family) {}
  // Maps IPv4 peers to v4-mapped form on IPv6 sockets.
  SocketAddress ForSocket(const SocketAddress& peer) const;

  OwnedFd fd_;
  AddressFamily family_;
};

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_DATAGRAM_SOCKET_H_
