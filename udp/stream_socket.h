// TCP stream sockets, offered beside the datagram sockets for comparison.
//
// StreamSocket owns a connected TCP descriptor; StreamListener owns a
// listening one. Both close on destruction, are move-only, retry EINTR
// inside, and return UNAVAILABLE only for "would block".
//
// Usage (client):
//   absl::StatusOr<std::vector<SocketAddress>> addrs =
//       ResolveHostPort("localhost:3490", AddressFamily::kUnspecified, SocketType::kStream);
//   absl::StatusOr<StreamSocket> conn = StreamSocket::Connect(*addrs);  // tries each in order
//   conn->SendAll(AsBytes("hello"));
//   conn->Shutdown(ShutdownHow::kWrite);
//
// Usage (server):
//   absl::StatusOr<StreamListener> listener = StreamListener::Listen(
//       SocketAddress::Any(AddressFamily::kIpv6, 0), /*backlog=*/16, {});
//   absl::StatusOr<AcceptedStream> client = listener->Accept();
//
// Threading: as for DatagramSocket; one reader and one writer may use a
// StreamSocket concurrently.
#ifndef UDPMSG_UDP_STREAM_SOCKET_H_
#define UDPMSG_UDP_STREAM_SOCKET_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "udp/owned_fd.h"
#include "udp/socket_address.h"

namespace udpmsg::udp {

enum class ShutdownHow { kRead, kWrite, kBoth };

class StreamSocket final {
 public:
  // Tries each address in order and returns the first connection. When all
  // fail, the status is the last attempt's code with every attempt's reason:
  //   "connect [::1]:9: Connection refused; connect 127.0.0.1:9: Connection refused"
  // INVALID_ARGUMENT for an empty list.
  static absl::StatusOr<StreamSocket> Connect(absl::Span<const SocketAddress> addresses);

  // Takes ownership of a connected descriptor (from accept).
  explicit StreamSocket(OwnedFd fd) : fd_(std::move(fd)) {}
  StreamSocket(StreamSocket&&) = default;
  StreamSocket& operator=(StreamSocket&&) = default;

  // One send(2): may send fewer bytes than given (returns how many).
  // UNAVAILABLE when nothing could be sent on a non-blocking socket.
  absl::StatusOr<size_t> Send(absl::Span<const uint8_t> data);
  // Sends everything, looping over partial sends; on a non-blocking socket it
  // waits for writability with poll(2) between attempts. An error (e.g.
  // "send [::1]:80: Broken pipe" when the peer closed) reports how much was
  // sent before it in the message.
  absl::Status SendAll(absl::Span<const uint8_t> data);

  // One recv(2) into `buffer`. Returns 0 when the peer closed its side
  // (orderly shutdown). UNAVAILABLE when nothing is waiting (non-blocking).
  absl::StatusOr<size_t> Recv(absl::Span<uint8_t> buffer);

  absl::Status Shutdown(ShutdownHow how);
  absl::Status SetNonBlocking(bool non_blocking);
  // TCP_NODELAY: disable Nagle's algorithm.
  absl::Status SetNoDelay(bool no_delay);
  absl::Status SetSendBufferSize(int bytes);
  absl::Status SetReceiveBufferSize(int bytes);

  // getpeername / getsockname.
  absl::StatusOr<SocketAddress> PeerAddress() const;
  absl::StatusOr<SocketAddress> LocalAddress() const;

  int fd() const { return fd_.get(); }

 private:
  OwnedFd fd_;
};

struct AcceptedStream {
  StreamSocket socket;
  SocketAddress peer;  // canonical (IPv4 clients of a dual-stack listener as IPv4)
};

class StreamListener final {
 public:
  struct Options {
    bool non_blocking = false;
    bool reuse_address = true;  // SO_REUSEADDR: rebind while old connections linger
    bool v6_only = false;       // IPv6 listeners on "::" accept IPv4 too by default
  };

  // socket + bind + listen(backlog). "bind 0.0.0.0:80: Permission denied".
  static absl::StatusOr<StreamListener> Listen(const SocketAddress& local, int backlog,
                                               const Options& options);

  StreamListener(StreamListener&&) = default;
  StreamListener& operator=(StreamListener&&) = default;

  // accept4 with CLOEXEC (and NONBLOCK if `non_blocking_client`).
  // UNAVAILABLE when no connection is pending on a non-blocking listener.
  absl::StatusOr<AcceptedStream> Accept(bool non_blocking_client = false);

  absl::StatusOr<SocketAddress> LocalAddress() const;
  int fd() const { return fd_.get(); }

 private:
  explicit StreamListener(OwnedFd fd) : fd_(std::move(fd)) {}
  OwnedFd fd_;
};

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_STREAM_SOCKET_H_
