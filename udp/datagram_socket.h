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
// Segmentation offload (Linux UDP GSO and GRO), for bulk senders:
//   - EnableSegmentation() lets SendTrains hand the kernel a whole train of
//     equal-size datagrams for one peer in one message (a UDP_SEGMENT control
//     message); the kernel (or the NIC) cuts it into datagrams, so a train of
//     up to kMaxTrainSegments datagrams costs one trip through the stack.
//     A train goes as one iovec: the kernel copies one long iovec about five
//     times faster than a train's worth of ~1.4 KB ones (docs/performance.md).
//     Datagrams that lie back to back in the caller's memory (the runtime's
//     DatagramBatch) are sent from there; others are first copied into one
//     contiguous buffer of the socket's (kGatherBytes per call; the trains
//     past it wait for the next call).
//     Receivers see ordinary datagrams. Without it SendTrains sends every
//     datagram of every train as its own message (plain sendmmsg).
//   - EnableCoalescing() (UDP_GRO) lets the kernel hand RecvBatch several
//     datagrams from one peer in one buffer: the slot's `segment_size` then
//     says how to cut it (SplitSegments), and the buffer must hold up to 64
//     KiB (kCoalescedBufferBytes), or the tail is lost as truncated.
//   A kernel that refuses UDP_SEGMENT later, at send time (EIO: a device
//   without checksum offload), turns segmentation off for the rest of the
//   socket's life; EINVAL (a segment larger than the device MTU after a route
//   change, or SO_NO_CHECK) does so only after kMaxInvalidTrains refusals in
//   a row. Either way the refused train is sent again as plain datagrams in
//   the same call: no datagram is ever lost because of segmentation.
//
//   sock->EnableSegmentation();   // an error only means "not on this kernel"
//   std::array<absl::Span<const uint8_t>, 3> parts = {a, b, c};  // equal sizes (c may be shorter)
//   OutgoingTrain train{peer, parts};
//   absl::StatusOr<size_t> sent = sock->SendTrains(absl::MakeConstSpan(&train, 1));  // datagrams
//
// Threading: calls on one socket may come from several threads (the kernel
// serialises them), except that SendTrains, EnableSegmentation and
// EnableCoalescing update the socket's offload state: call those from one
// thread at a time. Moving or destroying it must not race with use.
#ifndef UDPMSG_UDP_DATAGRAM_SOCKET_H_
#define UDPMSG_UDP_DATAGRAM_SOCKET_H_

#include <algorithm>
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

// A train for SendTrains: datagrams for one peer, in order, every one as
// long as the first except the last, which may be shorter. 1 to
// DatagramSocket::kMaxTrainSegments of them, MaxTrainBytes(to) bytes at most
// in all. The spans are borrowed for the call.
struct OutgoingTrain {
  SocketAddress to;
  absl::Span<const absl::Span<const uint8_t>> datagrams;
};

// One receive slot for RecvBatch: the caller provides `buffer`; the socket
// fills the rest.
struct ReceiveSlot {
  absl::Span<uint8_t> buffer;
  size_t size = 0;
  SocketAddress from;
  bool truncated = false;
  // Nonzero when the kernel coalesced several datagrams from `from` into the
  // buffer (UDP GRO, see EnableCoalescing): each is `segment_size` bytes but
  // the last, which may be shorter. SplitSegments cuts them apart.
  size_t segment_size = 0;
};

// The datagrams in a received slot: the whole `size` bytes as one datagram
// when `segment_size` is 0, else consecutive pieces of `segment_size` bytes
// (the last may be shorter). Calls `f(absl::Span<const uint8_t>)` for each.
template <typename F>
void SplitSegments(const ReceiveSlot& slot, F&& f) {
  const uint8_t* data = slot.buffer.data();
  if (slot.segment_size == 0 || slot.segment_size >= slot.size) {
    f(absl::MakeConstSpan(data, slot.size));
    return;
  }
  for (size_t at = 0; at < slot.size; at += slot.segment_size) {
    f(absl::MakeConstSpan(data + at, std::min(slot.segment_size, slot.size - at)));
  }
}

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
    // SO_REUSEPORT: several sockets (of one user) bound to one address share
    // its datagrams, a group the kernel balances by 4-tuple hash unless a
    // steering program says otherwise (udp/shard_steering.h).
    bool reuse_port = false;
    bool v6_only = false;        // IPV6_V6ONLY on IPv6 sockets
    int receive_buffer_bytes = 0;  // SO_RCVBUF when > 0
    int send_buffer_bytes = 0;     // SO_SNDBUF when > 0
  };

  // Largest batch handled by one sendmmsg/recvmmsg call (messages: trains
  // count one each when segmentation is on).
  static constexpr size_t kMaxBatch = 64;
  // EINVAL refusals of trains in a row that turn segmentation off.
  static constexpr int kMaxInvalidTrains = 8;
  // Most datagrams in one train (the kernel's UDP_MAX_SEGMENTS on older
  // kernels), and most datagrams SendTrains passes in one call.
  static constexpr size_t kMaxTrainSegments = 64;
  static constexpr size_t kMaxDatagramsPerCall = 1024;
  // Most bytes of trains (of two or more datagrams) one SendTrains call
  // copies into the socket's contiguous buffer, allocated on the first such
  // train: four full trains, the largest burst a connection's pacer allows
  // (reliable::Pacer). The trains past it wait for the next call.
  static constexpr size_t kGatherBytes = 256 * 1024;
  // A receive buffer that holds any coalesced (GRO) buffer whole.
  static constexpr size_t kCoalescedBufferBytes = 65536;
  // Most payload bytes in one train to `to`: 65507 for IPv4 peers (also when
  // v4-mapped on an IPv6 socket), 65527 for IPv6.
  static size_t MaxTrainBytes(const SocketAddress& to);

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
  // With coalescing on, a slot may hold several datagrams (`segment_size`).
  absl::StatusOr<size_t> RecvBatch(absl::Span<ReceiveSlot> slots);

  // Turns UDP GSO on for SendTrains (checks that the kernel knows
  // UDP_SEGMENT). FAILED_PRECONDITION "setsockopt UDP_SEGMENT=0: Protocol
  // not available" (ENOPROTOOPT) or INVALID_ARGUMENT (EINVAL) when it does
  // not; the socket then keeps sending plain datagrams, which always works.
  absl::Status EnableSegmentation();
  // Whether SendTrains currently sends trains as one message each (false
  // before EnableSegmentation and after a refusal at send time).
  bool segmentation_enabled() const { return segmentation_; }
  // The errno with which the kernel refused a train at send time (EIO,
  // EINVAL, ...), turning segmentation off; 0 if it never did.
  int segmentation_refused_errno() const { return segmentation_refused_errno_; }
  // SendTrains calls whose trains the kernel refused and that went out as
  // plain datagrams instead (whether or not segmentation stayed on).
  uint64_t refused_train_calls() const { return refused_train_calls_; }

  // Turns UDP GRO on (setsockopt UDP_GRO): RecvBatch may then return
  // coalesced buffers (see ReceiveSlot::segment_size), so every slot needs
  // kCoalescedBufferBytes. Errors as for EnableSegmentation.
  absl::Status EnableCoalescing();
  bool coalescing_enabled() const { return coalescing_; }

  // Sends trains from the front of `trains` and returns how many DATAGRAMS
  // went out, counted across the trains in order (a partial count means the
  // socket buffer filled, the call's kGatherBytes were used, or the
  // datagram after them failed: the caller sends the rest again, and in
  // the last case then sees that error). With segmentation on, each train
  // of two or more datagrams is one message of a sendmmsg (at most
  // kMaxBatch trains, kMaxDatagramsPerCall datagrams and kGatherBytes of
  // copied trains per call);
  // otherwise every datagram is its own message (at most kMaxBatch).
  // UNAVAILABLE when nothing could be sent (would block); another errno
  // status ("sendmmsg 1 trains (1 datagrams), first to 127.0.0.1:9: ...")
  // concerns the first datagram, as for SendBatch. A train the kernel
  // refuses to segment is re-sent as plain datagrams (see above).
  // INVALID_ARGUMENT, sending nothing, for a malformed first train (empty,
  // too long, or unequal sizes).
  absl::StatusOr<size_t> SendTrains(absl::Span<const OutgoingTrain> trains);
  // Trains of two or more datagrams SendTrains handed the kernel (each as
  // one iovec), and those of them it first had to copy into gather_ (their
  // datagrams did not lie back to back).
  uint64_t gathered_trains() const { return gathered_trains_; }
  uint64_t copied_trains() const { return copied_trains_; }

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
  // SendTrains without segmentation: one message per datagram.
  absl::StatusOr<size_t> SendTrainsPlain(absl::Span<const OutgoingTrain> trains);

  OwnedFd fd_;
  AddressFamily family_;
  bool segmentation_ = false;
  int segmentation_refused_errno_ = 0;
  // EINVAL refusals of a train since the last train the kernel took.
  int invalid_trains_in_a_row_ = 0;
  uint64_t refused_train_calls_ = 0;
  bool coalescing_ = false;
  std::vector<uint8_t> gather_;  // kGatherBytes once a train needed it
  uint64_t gathered_trains_ = 0;
  uint64_t copied_trains_ = 0;
};

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_DATAGRAM_SOCKET_H_
