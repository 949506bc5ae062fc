// TcpTransport: bench::Transport over the kernel's TCP (udp::StreamSocket),
// for comparison with udpmsg.
//
// Non-blocking sockets under one ppoll(2). Send hands bytes to the kernel at
// once and keeps what it would not take in a per-connection buffer, written
// out as the socket drains; QueuedBytes is that buffer (the kernel's own
// send buffer is not counted), Drain empties it. A listening transport
// accepts up to kMaxConnections at a time (more are closed at once).
//
// Options: `congestion` names the kernel congestion control set on each
// connection this end opens (TCP_CONGESTION, before the first byte; empty:
// the system default); `no_delay` sets TCP_NODELAY on every connection.
//
// Usage:
//   absl::StatusOr<std::unique_ptr<TcpTransport>> server =
//       TcpTransport::Create({}, udp::SocketAddress::Loopback(kIpv4, 0), true);
//
// Threading and ownership: as bench::Transport; owns its sockets.
#ifndef UDPMSG_BENCH_TCP_TRANSPORT_H_
#define UDPMSG_BENCH_TCP_TRANSPORT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/transport.h"
#include "udp/stream_socket.h"

namespace udpmsg::bench {

class TcpTransport final : public Transport {
 public:
  static constexpr size_t kMaxConnections = 64;
  struct Options {
    std::string congestion;  // "" (system default), "cubic", "reno", "bbr", ...
    bool no_delay = false;
    uint64_t send_window = 256 << 10;  // kept buffered above the kernel's
    size_t chunk_bytes = 64 * 1024;
  };

  // A listening transport binds `bind`; a client ignores it (the kernel
  // picks the source when connecting). Errors: the bind/listen errno status.
  static absl::StatusOr<std::unique_ptr<TcpTransport>> Create(const Options& options,
                                                              const udp::SocketAddress& bind,
                                                              bool listen);
  ~TcpTransport() override;

  std::string name() const override { return "tcp"; }
  bool is_stream() const override { return true; }
  bool paced() const override { return true; }
  uint64_t send_window() const override { return options_.send_window; }
  size_t chunk_bytes() const override { return options_.chunk_bytes; }
  udp::SocketAddress local_address() const override { return local_; }
  // Blocks for the kernel's connect timeout, not `timeout`. Also: the
  // errno status of setsockopt(TCP_CONGESTION) (EPERM: not allowed
  // to unprivileged users; ENOENT: not in this kernel).
  absl::StatusOr<PeerId> Connect(absl::Span<const udp::SocketAddress> to,
                                 absl::Duration timeout) override;
  absl::Status Send(PeerId peer, absl::string_view bytes) override;
  uint64_t QueuedBytes(PeerId peer) const override;
  absl::Status Poll(absl::Duration timeout, Handler& handler) override;
  absl::Status Drain(absl::Duration timeout) override;
  void Close(PeerId peer, absl::string_view reason, absl::Duration linger) override;
  absl::StatusOr<TransportStats> Stats(PeerId peer) const override;

 private:
  struct Connection {
    udp::StreamSocket socket;
    std::string name;
    std::string out;       // bytes the kernel has not taken yet
    size_t out_sent = 0;   // of `out`, already written
    std::string error;     // set when the connection failed: reported, removed
  };

  TcpTransport(const Options& options, std::optional<udp::StreamListener> listener,
               const udp::SocketAddress& local)
      : options_(options), listener_(std::move(listener)), local_(local) {}
  PeerId Add(udp::StreamSocket socket, std::string name);
  // Writes what `c` has buffered until the kernel stops taking it.
  void WriteOut(Connection& c);

  Options options_;
  std::optional<udp::StreamListener> listener_;
  udp::SocketAddress local_;
  PeerId next_id_ = 1;
  // A node map: a Connection stays put while handlers add or remove others.
  std::map<PeerId, Connection> connections_;
  std::vector<uint8_t> buffer_ = std::vector<uint8_t>(64 * 1024);
};

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_TCP_TRANSPORT_H_
