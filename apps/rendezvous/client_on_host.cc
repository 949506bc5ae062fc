#include "apps/rendezvous/client_on_host.h"

#include <utility>

namespace udpmsg::rendezvous {

absl::StatusOr<std::unique_ptr<HostClient>> HostClient::Start(Host* host,
                                                              const SocketAddress& server,
                                                              const ClientOptions& options,
                                                              const ConnectSecurity& security) {
  std::unique_ptr<HostClient> c(new HostClient(host, options));
  absl::StatusOr<ConnectionId> id = host->Connect(server, security);
  if (!id.ok()) return id.status();
  c->control_ = *id;
  return c;
}

HostClient::~HostClient() {
  if (closed_) return;
  (void)host_->Close(control_, "rendezvous client done", /*flush=*/false);
  (void)host_->Flush(absl::Milliseconds(100));
}

bool HostClient::OnEvent(absl::Time now, const Event& e) {
  if (e.connection != control_) return false;
  switch (e.type) {
    case Event::Type::kConnected:
      connected_ = true;
      break;
    case Event::Type::kMessage:
      core_.OnMessage(now, e.message);
      break;
    case Event::Type::kClosed:
      closed_ = true;
      close_reason_ = DisplayablePrefix(e.reason, 256);
      break;
    case Event::Type::kAcked:
    case Event::Type::kPathChanged:  // a client's connection never moves
      break;
  }
  (void)Service(now);
  return true;
}

absl::Status HostClient::Service(absl::Time now) {
  if (now >= core_.NextTimeout()) core_.OnTimeout(now);
  absl::Status first;
  for (Punch& p : core_.TakePunches()) {
    absl::Status s = host_->SendPunch(p.peer, p.payload, p.ttl);
    if (s.ok()) {
      ++punches_sent_;
    } else if (first.ok()) {
      first = s;
    }
  }
  return first;
}

absl::Status HostClient::SendToServer(std::string bytes) {
  return host_->Send(control_, 0, DeliveryMode::kReliableOrdered, std::move(bytes)).status();
}

}  // namespace udpmsg::rendezvous
