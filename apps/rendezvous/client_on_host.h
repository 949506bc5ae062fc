// HostClient: a ClientCore driven on a udpmsg::Host. It opens the control
// connection to the rendezvous server from the Host's own socket (so the
// NAT mapping the server sees is the one peers must use), encrypted with
// ConnectSecurity (never with the room key the Host's transfers may use),
// feeds the connection's events to the core, and sends the core's punches
// from the same socket (Host::SendPunch). The Host's keepalives keep the
// connection, and so the registration and the NAT mapping, alive.
//
// Usage (the caller owns the Host and its loop; other connections' events
// are the caller's):
//   absl::StatusOr<std::unique_ptr<HostClient>> c = HostClient::Start(&host, server, {});
//   for (;;) {
//     r = host.Poll(std::min(wait, (*c)->NextTimeout() - absl::Now()));
//     for (Event& e : r->events) if (!(*c)->OnEvent(absl::Now(), e)) Mine(e);
//     (*c)->Service(absl::Now());      // punches that are due
//     for (auto& ce : (*c)->TakeEvents()) ...;   // registered, introduced, relay ready
//   }
//
// Status codes: Start returns the Host's Connect errors. Service returns the
// socket error of a punch that could not be sent (EPERM from a firewall,
// say) only once per kind: punches are best effort, so the caller may log
// it and go on.
//
// Ownership: borrows the Host, which must outlive it. Threading: the Host's.
#ifndef UDPMSG_APPS_RENDEZVOUS_CLIENT_ON_HOST_H_
#define UDPMSG_APPS_RENDEZVOUS_CLIENT_ON_HOST_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "apps/rendezvous/client_core.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::rendezvous {

class HostClient final {
 public:
  static absl::StatusOr<std::unique_ptr<HostClient>> Start(Host* host, const SocketAddress& server,
                                                           const ClientOptions& options,
                                                           const ConnectSecurity& security);

  // Closes the control connection (the server frees the name and the
  // relays at once) and flushes for up to 100 ms.
  ~HostClient();
  HostClient(const HostClient&) = delete;
  HostClient& operator=(const HostClient&) = delete;

  ConnectionId control() const { return control_; }
  bool connected() const { return connected_; }
  // The control connection closed: why (escaped; "" while open).
  bool closed() const { return closed_; }
  const std::string& close_reason() const { return close_reason_; }

  // Takes `e` when it belongs to the control connection (returns true).
  bool OnEvent(absl::Time now, const Event& e);
  // Sends the punches due at `now`.
  absl::Status Service(absl::Time now);
  absl::Time NextTimeout() const { return core_.NextTimeout(); }
  // Queues a message for the server (ClientCore builds them).
  absl::Status SendToServer(std::string bytes);

  ClientCore& core() { return core_; }
  std::vector<ClientEvent> TakeEvents() { return core_.TakeEvents(); }
  uint64_t punches_sent() const { return punches_sent_; }

 private:
  HostClient(Host* host, const ClientOptions& options) : host_(host), core_(absl::Now(), options) {}

  Host* host_;
  ClientCore core_;
  ConnectionId control_ = 0;
  bool connected_ = false;
  bool closed_ = false;
  std::string close_reason_;
  uint64_t punches_sent_ = 0;
};

}  // namespace udpmsg::rendezvous

#endif  // UDPMSG_APPS_RENDEZVOUS_CLIENT_ON_HOST_H_
