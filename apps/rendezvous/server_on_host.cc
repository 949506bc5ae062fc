#include "apps/rendezvous/server_on_host.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace udpmsg::rendezvous {

absl::StatusOr<std::unique_ptr<ServerOnHost>> ServerOnHost::Create(
    Host* host, const SocketAddress& relay_bind, ServerOptions options,
    const RelayOptions& relay_options, std::function<void(const std::string&)> log) {
  udp::DatagramSocket::Options so;
  so.non_blocking = true;
  so.receive_buffer_bytes = 4 << 20;
  so.send_buffer_bytes = 4 << 20;
  absl::StatusOr<udp::DatagramSocket> socket = udp::DatagramSocket::Bind(relay_bind, so);
  if (!socket.ok()) return socket.status();
  absl::StatusOr<udp::SocketAddress> local = socket->LocalAddress();
  if (!local.ok()) return local.status();
  std::unique_ptr<ServerOnHost> s(
      new ServerOnHost(host, *std::move(socket), relay_options, std::move(log)));
  s->relay_address_ = *local;
  options.relay_port = local->port();
  s->core_ = std::make_unique<ServerCore>(options, &s->relay_);
  if (absl::Status st = host->Watch(s->socket_.fd(), kRelayToken); !st.ok()) return st;
  return s;
}

ServerOnHost::ServerOnHost(Host* host, udp::DatagramSocket socket,
                           const RelayOptions& relay_options,
                           std::function<void(const std::string&)> log)
    : host_(host),
      socket_(std::move(socket)),
      relay_(absl::Now(), relay_options),
      log_(std::move(log)),
      buffer_(udp::DatagramSocket::kCoalescedBufferBytes) {}

ServerOnHost::~ServerOnHost() { (void)host_->Unwatch(socket_.fd()); }

void ServerOnHost::OnEvent(absl::Time now, const Event& e) {
  switch (e.type) {
    case Event::Type::kConnected:
      core_->OnConnected(now, e.connection, e.peer);
      break;
    case Event::Type::kMessage:
      core_->OnMessage(now, e.connection, e.message);
      break;
    case Event::Type::kClosed:
      core_->OnClosed(now, e.connection);
      break;
    case Event::Type::kPathChanged:
      core_->OnPathChanged(now, e.connection, e.peer);
      break;
    case Event::Type::kAcked:
      break;
  }
  Drain(now);
}

absl::Status ServerOnHost::OnRelayReadable(absl::Time now) {
  for (size_t i = 0; i < kMaxRelayBatch; ++i) {
    absl::StatusOr<udp::Datagram> d = socket_.RecvFrom(absl::MakeSpan(buffer_));
    if (absl::IsUnavailable(d.status())) break;
    if (!d.ok()) return d.status();
    if (d->truncated) continue;
    relay_.OnDatagram(now, d->from,
                      absl::string_view(reinterpret_cast<const char*>(buffer_.data()), d->size));
    // Forward as we go: the relay's queue never holds more than one batch.
    for (RelayCore::Outgoing& o : relay_.TakeOutgoing()) {
      absl::StatusOr<size_t> sent = socket_.SendTo(
          o.peer,
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(o.bytes.data()), o.bytes.size()));
      if (!sent.ok()) ++relay_send_errors_;
    }
  }
  Drain(now);
  return absl::OkStatus();
}

void ServerOnHost::OnTick(absl::Time now) {
  if (now >= relay_.NextTimeout()) relay_.OnTimeout(now);
  Drain(now);
}

void ServerOnHost::Drain(absl::Time now) {
  // Relay events feed the server core, whose work may release relays: loop
  // until both are quiet.
  for (;;) {
    std::vector<RelayCore::Event> events = relay_.TakeEvents();
    if (events.empty()) break;
    for (const RelayCore::Event& e : events) core_->OnRelayEvent(now, e);
  }
  for (ServerCore::Reply& r : core_->TakeReplies()) {
    (void)host_->Send(r.connection, 0, DeliveryMode::kReliableOrdered, std::move(r.bytes));
  }
  for (RelayCore::Event& e : relay_.TakeEvents()) core_->OnRelayEvent(now, e);
  if (log_) {
    for (const std::string& line : core_->TakeLog()) log_(line);
  } else {
    (void)core_->TakeLog();
  }
}

}  // namespace udpmsg::rendezvous
