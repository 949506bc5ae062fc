#include "bench/enet_transport.h"

#include <enet/enet.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace udpmsg::bench {
namespace {

absl::Status EnetInit() {
  static std::once_flag once;
  static int rc = 0;
  std::call_once(once, [] { rc = enet_initialize(); });
  if (rc != 0) return absl::InternalError("enet: enet_initialize failed");
  return absl::OkStatus();
}

absl::StatusOr<ENetAddress> ToEnet(const udp::SocketAddress& a) {
  const udp::SocketAddress plain = a.Unmapped();
  if (plain.family() != udp::AddressFamily::kIpv4) {
    return absl::InvalidArgumentError(
        absl::StrCat("enet: ENet 1.3 speaks IPv4 only, not ", a.ToString()));
  }
  ENetAddress out;
  out.port = plain.port();
  if (plain.IsAny()) {
    out.host = ENET_HOST_ANY;
  } else if (enet_address_set_host_ip(&out, plain.IpString().c_str()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("enet: bad address ", a.ToString()));
  }
  return out;
}

udp::SocketAddress FromEnet(const ENetAddress& a) {
  // ENet keeps the host in network byte order.
  return udp::SocketAddress::Ipv4(ENET_NET_TO_HOST_32(a.host), a.port);
}

uint64_t ListBytes(ENetList* list) {
  uint64_t bytes = 0;
  for (ENetListIterator it = enet_list_begin(list); it != enet_list_end(list);
       it = enet_list_next(it)) {
    bytes += reinterpret_cast<ENetOutgoingCommand*>(it)->fragmentLength;
  }
  return bytes;
}

PeerId IdOf(const ENetPeer* peer) {
  return static_cast<PeerId>(reinterpret_cast<uintptr_t>(peer->data));
}

}  // namespace

absl::StatusOr<std::unique_ptr<EnetTransport>> EnetTransport::Create(
    const Options& options, const udp::SocketAddress& bind, bool listen) {
  if (absl::Status s = EnetInit(); !s.ok()) return s;
  absl::StatusOr<ENetAddress> address = ToEnet(bind);
  if (!address.ok()) return address.status();
  ENetHost* host = enet_host_create(listen ? &*address : nullptr,
                                    listen ? options.max_peers : 1, 1, 0, 0);
  if (host == nullptr) {
    return absl::UnavailableError(listen ? absl::StrCat("enet: cannot bind port ", address->port)
                                         : std::string("enet: cannot create a host"));
  }
  host->mtu = static_cast<enet_uint32>(options.mtu);
  ENetAddress local{};
  if (enet_socket_get_address(host->socket, &local) != 0) {
    enet_host_destroy(host);
    return absl::InternalError("enet: cannot read the bound address");
  }
  return std::unique_ptr<EnetTransport>(new EnetTransport(options, host, FromEnet(local)));
}

EnetTransport::~EnetTransport() { enet_host_destroy(host_); }

absl::StatusOr<PeerId> EnetTransport::Connect(absl::Span<const udp::SocketAddress> to,
                                              absl::Duration timeout) {
  if (to.empty()) return absl::InvalidArgumentError("enet: no address to connect to");
  absl::StatusOr<ENetAddress> address = ToEnet(to.front());
  if (!address.ok()) return address.status();
  ENetPeer* peer = enet_host_connect(host_, &*address, 1, 0);
  if (peer == nullptr) return absl::UnavailableError("enet: enet_host_connect failed");
  const PeerId id = next_id_++;
  peer->data = reinterpret_cast<void*>(static_cast<uintptr_t>(id));
  const absl::Time deadline = absl::Now() + timeout;
  ENetEvent ev;
  for (;;) {
    if (absl::Now() > deadline) {
      enet_peer_reset(peer);
      return absl::DeadlineExceededError(
          absl::StrCat("enet: no answer within ", absl::FormatDuration(timeout)));
    }
    const int r = enet_host_service(host_, &ev, 100);
    if (r < 0) return absl::InternalError("enet: enet_host_service failed");
    if (r > 0 && ev.peer == peer && ev.type == ENET_EVENT_TYPE_CONNECT) break;
    if (r > 0 && ev.peer == peer && ev.type == ENET_EVENT_TYPE_DISCONNECT) {
      return absl::UnavailableError("enet: connection refused or timed out");
    }
    if (r > 0 && ev.type == ENET_EVENT_TYPE_RECEIVE) enet_packet_destroy(ev.packet);
  }
  peers_[id] = Peer{peer, 0, 0};
  return id;
}

absl::Status EnetTransport::Send(PeerId peer, absl::string_view bytes) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return absl::NotFoundError(absl::StrCat("enet: no peer ", peer));
  ENetPacket* p = enet_packet_create(bytes.data(), bytes.size(), ENET_PACKET_FLAG_RELIABLE);
  if (p == nullptr) return absl::ResourceExhaustedError("enet: enet_packet_create failed");
  if (enet_peer_send(it->second.peer, 0, p) != 0) {
    enet_packet_destroy(p);
    return absl::UnavailableError("enet: enet_peer_send failed");
  }
  return absl::OkStatus();
}

uint64_t EnetTransport::QueuedBytes(PeerId peer) const {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return 0;
  ENetPeer* p = it->second.peer;
  return ListBytes(&p->outgoingCommands) + ListBytes(&p->sentReliableCommands);
}

bool EnetTransport::AnythingQueued() const {
  for (const auto& [id, p] : peers_) {
    if (!enet_list_empty(&p.peer->outgoingCommands) ||
        !enet_list_empty(&p.peer->sentReliableCommands)) {
      return true;
    }
  }
  return false;
}

void EnetTransport::CountLosses() {
  for (auto& [id, p] : peers_) {
    if (p.peer->packetsLost < p.lost_seen) p.lost_before += p.lost_seen;
    p.lost_seen = p.peer->packetsLost;
  }
}

void EnetTransport::Dispatch(ENetEvent& ev, Handler* handler) {
  switch (ev.type) {
    case ENET_EVENT_TYPE_CONNECT: {
      const PeerId id = next_id_++;
      ev.peer->data = reinterpret_cast<void*>(static_cast<uintptr_t>(id));
      peers_[id] = Peer{ev.peer, 0, 0};
      if (handler != nullptr) handler->OnConnected(id, FromEnet(ev.peer->address).ToString());
      break;
    }
    case ENET_EVENT_TYPE_RECEIVE: {
      const PeerId id = IdOf(ev.peer);
      if (handler != nullptr && peers_.contains(id)) {
        handler->OnReceived(id, absl::string_view(reinterpret_cast<const char*>(ev.packet->data),
                                                  ev.packet->dataLength));
      }
      enet_packet_destroy(ev.packet);
      break;
    }
    case ENET_EVENT_TYPE_DISCONNECT: {
      const PeerId id = IdOf(ev.peer);
      if (peers_.erase(id) > 0 && handler != nullptr) {
        handler->OnClosed(id, "disconnected (timed out)");
      }
      break;
    }
    case ENET_EVENT_TYPE_NONE:
      break;
  }
}

absl::Status EnetTransport::Poll(absl::Duration timeout, Handler& handler) {
  if (AnythingQueued()) timeout = std::min(timeout, absl::Milliseconds(1));
  const int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(timeout));
  ENetEvent ev;
  int r = enet_host_service(host_, &ev, static_cast<enet_uint32>(ms));
  while (r > 0) {
    Dispatch(ev, &handler);
    r = enet_host_check_events(host_, &ev);
  }
  CountLosses();
  if (r < 0) return absl::InternalError("enet: enet_host_service failed");
  return absl::OkStatus();
}

absl::Status EnetTransport::Drain(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  ENetEvent ev;
  while (AnythingQueued()) {
    if (absl::Now() > deadline) return absl::DeadlineExceededError("enet: not acknowledged");
    const int r = enet_host_service(host_, &ev, 1);
    if (r < 0) return absl::InternalError("enet: enet_host_service failed");
    if (r > 0) Dispatch(ev, nullptr);
  }
  enet_host_flush(host_);
  return absl::OkStatus();
}

void EnetTransport::Close(PeerId peer, absl::string_view /*reason*/, absl::Duration linger) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return;
  ENetPeer* p = it->second.peer;
  peers_.erase(it);
  p->data = nullptr;  // its DISCONNECT, when it comes, names no peer
  enet_peer_disconnect(p, 0);
  enet_host_flush(host_);
  const absl::Time deadline = absl::Now() + linger;
  ENetEvent ev;
  while (absl::Now() < deadline) {
    const int r = enet_host_service(host_, &ev, 20);
    if (r < 0) break;
    if (r > 0 && ev.peer == p && ev.type == ENET_EVENT_TYPE_DISCONNECT) break;
    if (r > 0) Dispatch(ev, nullptr);
  }
}

absl::StatusOr<TransportStats> EnetTransport::Stats(PeerId peer) const {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return absl::NotFoundError(absl::StrCat("enet: no peer ", peer));
  TransportStats out;
  out.retransmits = static_cast<int64_t>(it->second.lost_before + it->second.lost_seen);
  return out;
}

}  // namespace udpmsg::bench
