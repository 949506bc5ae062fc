// EnetTransport: bench::Transport over ENet 1.3 (reliable packets on channel
// 0), the library udpmsg is most often compared with.
//
// Each Send is one reliable ENet packet. QueuedBytes counts the bytes of the
// commands ENet still holds for the peer (queued, or sent and not yet
// acknowledged). Poll services the host; while anything is queued it waits
// at most 1 ms, since ENet sends only when serviced. Retransmits are ENet's
// packetsLost, summed over its 10 s windows.
//
// IPv4 only (ENet 1.3): Create and Connect return INVALID_ARGUMENT for an
// IPv6 address.
//
// Usage:
//   absl::StatusOr<std::unique_ptr<EnetTransport>> t =
//       EnetTransport::Create({}, udp::SocketAddress::Any(kIpv4, 0), /*listen=*/false);
//
// Threading and ownership: as bench::Transport; owns its ENetHost (and every
// packet it created until ENet takes it).
#ifndef UDPMSG_BENCH_ENET_TRANSPORT_H_
#define UDPMSG_BENCH_ENET_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/btree_map.h"
#include "bench/transport.h"

struct _ENetHost;
struct _ENetPeer;
struct _ENetEvent;

namespace udpmsg::bench {

class EnetTransport final : public Transport {
 public:
  struct Options {
    size_t mtu = 1200;            // the host's MTU (ENet's default is 1400)
    size_t chunk_bytes = 1100;    // packets that fit the MTU unfragmented
    size_t queue_packets = 256;   // a bulk sender's window, in packets
    size_t max_peers = 32;        // a listening host's connections
  };

  // Errors: INTERNAL when ENet does not initialize; UNAVAILABLE when the
  // host cannot be created (the port is taken); INVALID_ARGUMENT for IPv6.
  static absl::StatusOr<std::unique_ptr<EnetTransport>> Create(const Options& options,
                                                               const udp::SocketAddress& bind,
                                                               bool listen);
  ~EnetTransport() override;

  std::string name() const override { return "enet"; }
  bool is_stream() const override { return false; }
  bool paced() const override { return true; }
  uint64_t send_window() const override { return options_.queue_packets * options_.chunk_bytes; }
  size_t chunk_bytes() const override { return options_.chunk_bytes; }
  udp::SocketAddress local_address() const override { return local_; }
  absl::StatusOr<PeerId> Connect(absl::Span<const udp::SocketAddress> to,
                                 absl::Duration timeout) override;
  absl::Status Send(PeerId peer, absl::string_view bytes) override;
  uint64_t QueuedBytes(PeerId peer) const override;
  absl::Status Poll(absl::Duration timeout, Handler& handler) override;
  absl::Status Drain(absl::Duration timeout) override;
  void Close(PeerId peer, absl::string_view reason, absl::Duration linger) override;
  absl::StatusOr<TransportStats> Stats(PeerId peer) const override;

 private:
  struct Peer {
    _ENetPeer* peer = nullptr;
    uint64_t lost_before = 0;  // packetsLost of the windows ENet has reset
    uint32_t lost_seen = 0;    // packetsLost when last looked at
  };

  EnetTransport(const Options& options, _ENetHost* host, const udp::SocketAddress& local)
      : options_(options), host_(host), local_(local) {}
  // Hands one serviced event to `handler` (nullptr: drops it).
  void Dispatch(_ENetEvent& event, Handler* handler);
  void CountLosses();
  bool AnythingQueued() const;

  Options options_;
  _ENetHost* host_;
  udp::SocketAddress local_;
  PeerId next_id_ = 1;
  absl::btree_map<PeerId, Peer> peers_;
};

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_ENET_TRANSPORT_H_
