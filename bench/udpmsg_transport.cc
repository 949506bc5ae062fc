#include "bench/udpmsg_transport.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace udpmsg::bench {

using reliable::DeliveryMode;
using reliable::Event;
using reliable::Runtime;

absl::StatusOr<std::unique_ptr<UdpmsgTransport>> UdpmsgTransport::Create(
    const Options& options, const udp::SocketAddress& bind, bool listen) {
  Runtime::Options o;
  o.bind = bind;
  o.endpoint.accept_incoming = listen;
  o.endpoint.encrypt = options.encrypt;
  reliable::ConnectionOptions& c = o.endpoint.connection;
  c.congestion_control = options.congestion;
  if (options.max_datagram > 0) c.max_datagram = options.max_datagram;
  if (options.timeout > absl::ZeroDuration()) {
    c.handshake_timeout = options.timeout;
    c.peer_timeout = options.timeout;
    c.idle_timeout = std::max(options.timeout, absl::Seconds(30));
    c.keepalive = std::min(absl::Seconds(5), options.timeout / 3);
  }
  absl::StatusOr<std::unique_ptr<Runtime>> runtime = Runtime::Create(o);
  if (!runtime.ok()) return runtime.status();
  return std::unique_ptr<UdpmsgTransport>(
      new UdpmsgTransport(options, *std::move(runtime), listen));
}

absl::StatusOr<PeerId> UdpmsgTransport::Connect(absl::Span<const udp::SocketAddress> to,
                                                absl::Duration timeout) {
  if (to.empty()) return absl::InvalidArgumentError("udpmsg: no address to connect to");
  absl::StatusOr<reliable::ConnectionId> id = runtime_->Connect(to.front());
  if (!id.ok()) return id.status();
  if (absl::Status s = runtime_->AwaitConnected(*id, timeout); !s.ok()) return s;
  return *id;
}

DeliveryMode UdpmsgTransport::ModeFor(PeerId peer) const {
  if (options_.delivery == Delivery::kUnreliable) return DeliveryMode::kUnreliable;
  if (options_.delivery == Delivery::kMatchPeer) {
    if (auto it = peer_mode_.find(peer); it != peer_mode_.end()) return it->second;
  }
  return DeliveryMode::kReliableOrdered;
}

absl::Status UdpmsgTransport::Send(PeerId peer, absl::string_view bytes) {
  return runtime_->Send(peer, 0, ModeFor(peer), std::string(bytes)).status();
}

absl::Status UdpmsgTransport::SendShared(PeerId peer, std::shared_ptr<const void> owner,
                                         absl::string_view bytes) {
  return runtime_->Send(peer, 0, ModeFor(peer), reliable::MessageBytes(std::move(owner), bytes))
      .status();
}

uint64_t UdpmsgTransport::QueuedBytes(PeerId peer) const {
  return runtime_->QueuedBytes(peer);
}

absl::Status UdpmsgTransport::Poll(absl::Duration timeout, Handler& handler) {
  // At least 1 us: Runtime::Poll(0) does not look at the socket at all.
  absl::StatusOr<Runtime::PollResult> r =
      runtime_->Poll(std::max(timeout, absl::Microseconds(1)));
  if (!r.ok()) return r.status();
  for (const Event& e : r->events) {
    if (closing_.contains(e.connection)) {
      if (e.type == Event::Type::kClosed) closing_.erase(e.connection);
      continue;
    }
    switch (e.type) {
      case Event::Type::kConnected:
        if (listen_) handler.OnConnected(e.connection, e.peer.ToString());
        break;
      case Event::Type::kMessage:
        if (options_.delivery == Delivery::kMatchPeer) peer_mode_[e.connection] = e.mode;
        handler.OnReceived(e.connection, e.message);
        break;
      case Event::Type::kClosed:
        peer_mode_.erase(e.connection);
        handler.OnClosed(e.connection, absl::CHexEscape(e.reason));
        break;
      case Event::Type::kAcked:
      case Event::Type::kPathChanged:
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status UdpmsgTransport::Drain(absl::Duration timeout) { return runtime_->Flush(timeout); }

void UdpmsgTransport::Close(PeerId peer, absl::string_view reason, absl::Duration linger) {
  peer_mode_.erase(peer);
  if (!runtime_->Close(peer, std::string(reason), linger > absl::ZeroDuration()).ok()) return;
  closing_.insert(peer);
  if (linger > absl::ZeroDuration()) (void)runtime_->Flush(linger);
}

absl::StatusOr<TransportStats> UdpmsgTransport::Stats(PeerId peer) const {
  absl::StatusOr<reliable::ConnectionStats> s = runtime_->Stats(peer);
  if (!s.ok()) return s.status();
  TransportStats out;
  out.retransmits = static_cast<int64_t>(s->fragments_retransmitted);
  out.datagrams_sent = static_cast<int64_t>(s->packets_sent);
  return out;
}

}  // namespace udpmsg::bench
