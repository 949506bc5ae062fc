// UdpmsgTransport: bench::Transport over udpmsg's reliable::Runtime.
//
// Every Send is one message on channel 0, reliable-ordered or unreliable as
// the options say (or, for an echo server, in the mode the peer last used).
// QueuedBytes is what the endpoint still holds for the connection (sent and
// not yet acknowledged, or not yet sent).
//
// Usage:
//   UdpmsgTransport::Options o;
//   o.congestion = reliable::CongestionControl::kBbr;
//   absl::StatusOr<std::unique_ptr<UdpmsgTransport>> t =
//       UdpmsgTransport::Create(o, udp::SocketAddress::Loopback(kIpv4, 0), /*listen=*/false);
//
// Threading and ownership: as bench::Transport; owns its Runtime.
#ifndef UDPMSG_BENCH_UDPMSG_TRANSPORT_H_
#define UDPMSG_BENCH_UDPMSG_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "bench/transport.h"
#include "reliable/runtime.h"

namespace udpmsg::bench {

class UdpmsgTransport final : public Transport {
 public:
  enum class Delivery {
    kReliable,    // reliable-ordered
    kUnreliable,  // unreliable, unordered
    kMatchPeer,   // the mode of the peer's last message (echo servers)
  };
  struct Options {
    reliable::CongestionControl congestion = reliable::CongestionControl::kNewReno;
    Delivery delivery = Delivery::kReliable;
    size_t max_datagram = 0;  // 0: the library's default
    // When positive: the handshake and peer timeouts (and keepalives
    // within it); zero keeps the library's defaults.
    absl::Duration timeout = absl::ZeroDuration();
    uint64_t send_window = 4 << 20;  // what a bulk sender keeps queued
    // Sealed packets (EndpointOptions::encrypt; both ends must agree).
    bool encrypt = false;
    size_t chunk_bytes = 64 * 1024;  // the message size of bulk data
  };

  // Binds the runtime's socket to `bind`; `listen` accepts connections.
  // Errors: Runtime::Create's (the bind's errno status, INVALID_ARGUMENT).
  static absl::StatusOr<std::unique_ptr<UdpmsgTransport>> Create(const Options& options,
                                                                 const udp::SocketAddress& bind,
                                                                 bool listen);

  std::string name() const override { return "udpmsg"; }
  bool is_stream() const override { return false; }
  bool paced() const override { return true; }
  uint64_t send_window() const override { return options_.send_window; }
  size_t chunk_bytes() const override { return options_.chunk_bytes; }
  udp::SocketAddress local_address() const override { return runtime_->local_address(); }
  absl::StatusOr<PeerId> Connect(absl::Span<const udp::SocketAddress> to,
                                 absl::Duration timeout) override;
  absl::Status Send(PeerId peer, absl::string_view bytes) override;
  absl::Status SendShared(PeerId peer, std::shared_ptr<const void> owner,
                          absl::string_view bytes) override;
  uint64_t QueuedBytes(PeerId peer) const override;
  absl::Status Poll(absl::Duration timeout, Handler& handler) override;
  absl::Status Drain(absl::Duration timeout) override;
  void Close(PeerId peer, absl::string_view reason, absl::Duration linger) override;
  absl::StatusOr<TransportStats> Stats(PeerId peer) const override;
  void Wake() override { runtime_->Wake(); }

 private:
  UdpmsgTransport(const Options& options, std::unique_ptr<reliable::Runtime> runtime,
                  bool listen)
      : options_(options), runtime_(std::move(runtime)), listen_(listen) {}

  reliable::DeliveryMode ModeFor(PeerId peer) const;

  Options options_;
  std::unique_ptr<reliable::Runtime> runtime_;
  bool listen_;
  // kMatchPeer: the mode of each connection's last message. One entry per
  // open connection (the endpoint bounds those).
  absl::flat_hash_map<PeerId, reliable::DeliveryMode> peer_mode_;
  // Connections this end closed: their last events are not reported. An
  // entry leaves with the connection's kClosed event.
  absl::flat_hash_set<PeerId> closing_;
};

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_UDPMSG_TRANSPORT_H_
