// RawUdpTransport: bench::Transport over bare UDP datagrams, the baseline
// the udpmsg figures are compared with. No handshake, no acknowledgement, no
// retransmission, no pacing: what is lost is lost.
//
// Each Send is one datagram (at most kMaxDatagram bytes). With `batch`,
// sends collect into sendmmsg(2) calls of up to 64 datagrams (flushed when
// full and by Poll and Drain) and receives use recvmmsg(2); without it, one
// sendto/recvfrom per datagram. `drop_when_full` makes a send that would
// block drop the datagram, as a network would; otherwise sends block.
//
// Peers: a client's peer is the address it connected to (datagrams from
// anywhere else are dropped); a listening transport gives each new source
// address a PeerId (at most kMaxPeers; the oldest is forgotten first).
//
// Usage:
//   absl::StatusOr<std::unique_ptr<RawUdpTransport>> t = RawUdpTransport::Create(
//       {.batch = true}, udp::SocketAddress::Loopback(kIpv4, 0), /*listen=*/true);
//
// Threading and ownership: as bench::Transport; owns its socket.
#ifndef UDPMSG_BENCH_RAW_UDP_TRANSPORT_H_
#define UDPMSG_BENCH_RAW_UDP_TRANSPORT_H_

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "bench/transport.h"
#include "udp/datagram_socket.h"

namespace udpmsg::bench {

class RawUdpTransport final : public Transport {
 public:
  static constexpr size_t kMaxDatagram = 2048;
  static constexpr size_t kBatch = udp::DatagramSocket::kMaxBatch;  // 64
  static constexpr size_t kMaxPeers = 4096;
  struct Options {
    bool batch = false;
    bool drop_when_full = true;
    // SO_RCVBUF to ask for (SO_RCVBUFFORCE when allowed, else capped by
    // net.core.rmem_max); 0 keeps the system default.
    int receive_buffer = 0;
  };

  // Errors: the bind's errno status.
  static absl::StatusOr<std::unique_ptr<RawUdpTransport>> Create(const Options& options,
                                                                 const udp::SocketAddress& bind,
                                                                 bool listen);

  // What the kernel granted for SO_RCVBUF (bytes).
  int receive_buffer() const { return receive_buffer_; }

  std::string name() const override { return "raw UDP"; }
  bool is_stream() const override { return false; }
  bool paced() const override { return false; }
  uint64_t send_window() const override { return kBatch * kMaxDatagram; }
  size_t chunk_bytes() const override { return 1200; }
  udp::SocketAddress local_address() const override { return local_; }
  // Never waits: there is no handshake.
  absl::StatusOr<PeerId> Connect(absl::Span<const udp::SocketAddress> to,
                                 absl::Duration timeout) override;
  // Also INVALID_ARGUMENT for more than kMaxDatagram bytes. A datagram the
  // kernel would not take (drop_when_full) is dropped, not an error.
  absl::Status Send(PeerId peer, absl::string_view bytes) override;
  // Datagrams batched and not yet sent.
  uint64_t QueuedBytes(PeerId peer) const override;
  absl::Status Poll(absl::Duration timeout, Handler& handler) override;
  // Sends the batch; nothing is acknowledged.
  absl::Status Drain(absl::Duration timeout) override;
  void Close(PeerId peer, absl::string_view reason, absl::Duration linger) override;
  // datagrams_sent counts this end's datagrams to `peer`.
  absl::StatusOr<TransportStats> Stats(PeerId peer) const override;

 private:
  struct Peer {
    udp::SocketAddress address;
    int64_t datagrams_sent = 0;
  };

  RawUdpTransport(const Options& options, udp::DatagramSocket socket,
                  const udp::SocketAddress& local, int receive_buffer, bool listen);
  PeerId AddPeer(const udp::SocketAddress& address);
  // The peer `from` is (adding it when listening), or 0 to drop it.
  PeerId PeerOf(const udp::SocketAddress& from, Handler& handler);
  absl::Status FlushBatch();
  // One non-blocking receive (one datagram, or one recvmmsg batch).
  // Returns how many datagrams it handed over.
  absl::StatusOr<int> ReceiveOnce(Handler& handler);

  Options options_;
  udp::DatagramSocket socket_;
  udp::SocketAddress local_;
  int receive_buffer_;
  bool listen_;
  PeerId next_id_ = 1;
  absl::flat_hash_map<PeerId, Peer> peers_;
  absl::flat_hash_map<udp::SocketAddress, PeerId> by_address_;
  std::deque<PeerId> order_;  // oldest first, for eviction
  // The last peer seen, to skip the lookups on the common path.
  udp::SocketAddress last_from_;
  PeerId last_peer_ = 0;
  // Send batch (batch mode): datagrams and their destinations.
  std::vector<char> out_;
  std::array<udp::SocketAddress, kBatch> out_to_;
  std::array<size_t, kBatch> out_size_{};
  std::array<PeerId, kBatch> out_peer_{};
  size_t out_count_ = 0;
  // Receive buffers.
  std::vector<char> in_;
  std::array<sockaddr_storage, kBatch> in_from_{};
};

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_RAW_UDP_TRANSPORT_H_
