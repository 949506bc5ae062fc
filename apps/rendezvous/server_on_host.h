// ServerOnHost: the rendezvous server on real sockets. The cores
// (server_core.h, relay_core.h) are sans-I/O; this is their glue: the
// udpmsg::Host (borrowed) carries the control connections, a plain UDP
// socket (owned, non-blocking, watched through the Host's Poll) is the
// relay, and both cores' outputs are carried out here.
//
// Usage (`udpmsg rendezvous` is this plus flags and signals):
//   absl::StatusOr<std::unique_ptr<ServerOnHost>> s =
//       ServerOnHost::Create(&host, relay_bind, options, relay_options, log);
//   for (;;) {
//     r = host.Poll(std::min(absl::Seconds(1), (*s)->NextTimeout() - absl::Now()));
//     for (const Event& e : r->events) (*s)->OnEvent(absl::Now(), e);
//     for (uint64_t t : r->ready) if (t == ServerOnHost::kRelayToken)
//     (*s)->OnRelayReadable(absl::Now());
//     (*s)->OnTick(absl::Now());
//   }
//
// The relay socket is drained in batches of at most kMaxRelayBatch
// datagrams per call (the rest wait for the next Poll), so a flood on the
// relay port cannot starve the control connections. A relay datagram that
// cannot be sent now (socket buffer full) is dropped and counted, like any
// loss on the path: the transport retransmits.
//
// Status codes: Create returns the relay socket's bind error ("bind
// 0.0.0.0:7001: Address already in use"); OnRelayReadable the receive error
// other than "would block".
//
// Ownership: borrows the Host; owns the relay socket and the cores.
// Threading: the Host's.
#ifndef UDPMSG_APPS_RENDEZVOUS_SERVER_ON_HOST_H_
#define UDPMSG_APPS_RENDEZVOUS_SERVER_ON_HOST_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "apps/rendezvous/relay_core.h"
#include "apps/rendezvous/server_core.h"
#include "udp/datagram_socket.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::rendezvous {

class ServerOnHost final {
 public:
  static constexpr uint64_t kRelayToken = 0x72656c6179;  // Host::Watch token
  static constexpr size_t kMaxRelayBatch = 256;

  // Binds the relay socket at `relay_bind` (port 0: any) and watches it on
  // `host`. options.relay_port is set to the bound port.
  static absl::StatusOr<std::unique_ptr<ServerOnHost>> Create(
      Host* host, const SocketAddress& relay_bind, ServerOptions options,
      const RelayOptions& relay_options, std::function<void(const std::string&)> log);
  ~ServerOnHost();

  const SocketAddress& relay_address() const { return relay_address_; }
  void OnEvent(absl::Time now, const Event& e);
  absl::Status OnRelayReadable(absl::Time now);
  void OnTick(absl::Time now);
  absl::Time NextTimeout() const { return relay_.NextTimeout(); }

  const ServerCore& core() const { return *core_; }
  const RelayCore& relay() const { return relay_; }
  uint64_t relay_send_errors() const { return relay_send_errors_; }

 private:
  ServerOnHost(Host* host, udp::DatagramSocket socket, const RelayOptions& relay_options,
               std::function<void(const std::string&)> log);
  // Carries out both cores' outputs.
  void Drain(absl::Time now);

  Host* host_;
  udp::DatagramSocket socket_;
  SocketAddress relay_address_;
  RelayCore relay_;
  std::unique_ptr<ServerCore> core_;
  std::function<void(const std::string&)> log_;
  std::vector<uint8_t> buffer_;
  uint64_t relay_send_errors_ = 0;
};

}  // namespace udpmsg::rendezvous

#endif  // UDPMSG_APPS_RENDEZVOUS_SERVER_ON_HOST_H_
