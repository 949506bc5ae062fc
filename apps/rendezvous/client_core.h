// ClientCore: a NAT-traversal client's side of the rendezvous protocol,
// sans-I/O. It builds the messages a client sends its rendezvous server
// (Register, Lookup, PathChosen), checks and decodes the server's answers
// into events, and schedules the punch datagrams that open the client's NAT:
// toward each introduced peer's reflexive address (every punch_interval for
// punch_for) and toward the relay with this side's bind token (every
// bind_interval until RelayReady, for bind_for at most). The driver sends
// them from the socket its connections use (udpmsg::Host::SendPunch):
// client_on_host.h is that driver.
//
//   ClientCore core(now, ClientOptions{server});
//   host.Send(control, ..., core.Register("alice"));   // a receiver
//   host.Send(control, ..., core.Lookup("alice"));     // or a sender
//   core.OnMessage(now, bytes);                        // each message from the server
//   core.OnTimeout(now);                               // when now >= NextTimeout()
//   for (auto& p : core.TakePunches()) host.SendPunch(p.peer, p.payload);
//   for (auto& e : core.TakeEvents()) ...;             // registered, introduced, ...
//
// What it accepts from the server (anything else is counted in bad_messages
// and dropped): a message that parses; a peer address in numeric form of
// the server's own family; a relay port in [1, 65535] with a 16-byte token
// (otherwise the introduction has no relay); reasons are escaped and cut to
// 256 bytes before they reach an event. Bounds: at most max_introductions
// introductions are punched for at once (a newer one ends the oldest), each
// for punch_for, so a server can make this client send at most
// max_introductions * (punch_for / punch_interval + bind_for / bind_interval)
// one-to-21-byte datagrams at a time, only to addresses it names.
//
// Not thread-safe. Owns nothing beyond its tables.
#ifndef UDPMSG_APPS_RENDEZVOUS_CLIENT_CORE_H_
#define UDPMSG_APPS_RENDEZVOUS_CLIENT_CORE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/rendezvous/names.h"
#include "apps/rendezvous/relay_core.h"
#include "udp/socket_address.h"

namespace udpmsg::rendezvous {

// The payload of a punch toward a peer (a bind's is BindPayload).
inline constexpr absl::string_view kPunchPayload = "punch";

struct ClientOptions {
  // The rendezvous server as this client reaches it; the relay is on its IP.
  udp::SocketAddress server;
  absl::Duration punch_interval = absl::Milliseconds(100);
  absl::Duration punch_for = absl::Seconds(6);
  absl::Duration bind_interval = absl::Milliseconds(200);
  absl::Duration bind_for = absl::Seconds(8);
  size_t max_introductions = 8;
};

struct ClientEvent {
  enum class Type { kRegistered, kRefused, kIntroduced, kRelayReady };
  Type type = Type::kRegistered;
  std::string name;                     // kRegistered
  udp::SocketAddress reflexive;         // kRegistered: as the server sees us
  uint64_t request = 0;                 // kRefused, kIntroduced (0: not ours)
  int code = 0;                         // kRefused: wire::Refused::Code
  std::string reason;                   // kRefused: escaped server text
  uint64_t introduction = 0;            // kIntroduced, kRelayReady
  udp::SocketAddress peer;              // kIntroduced: the peer's reflexive address
  std::optional<udp::SocketAddress> relay;  // kIntroduced: the relay, if any
};

struct Punch {
  udp::SocketAddress peer;
  std::string payload;
};

class ClientCore final {
 public:
  ClientCore(absl::Time now, const ClientOptions& options);

  // Messages to send the server (serialized wire::ClientMessage).
  std::string Register(absl::string_view name);
  // `*request` gets the lookup's number (the kIntroduced / kRefused event's).
  std::string Lookup(absl::string_view name, uint64_t* request);
  std::string PathChosen(uint64_t introduction, bool direct);

  void OnMessage(absl::Time now, absl::string_view bytes);
  // Stops punching for `introduction` (toward the peer when `peer`, toward
  // the relay when `relay`).
  void StopPunching(uint64_t introduction, bool peer, bool relay);

  void OnTimeout(absl::Time now);
  absl::Time NextTimeout() const;

  std::vector<Punch> TakePunches();
  std::vector<ClientEvent> TakeEvents();
  uint64_t bad_messages() const { return bad_messages_; }
  size_t punching() const { return intros_.size(); }

 private:
  struct Intro {
    udp::SocketAddress peer;
    std::optional<udp::SocketAddress> relay;
    std::string bind;  // the bind payload
    absl::Time start;
    absl::Time next_punch = absl::InfiniteFuture();
    absl::Time next_bind = absl::InfiniteFuture();
  };
  void Schedule(absl::Time now);

  ClientOptions options_;
  uint64_t next_request_ = 1;
  absl::btree_map<uint64_t, Intro> intros_;  // by introduction id (oldest first)
  std::vector<Punch> punches_;
  std::vector<ClientEvent> events_;
  uint64_t bad_messages_ = 0;
};

}  // namespace udpmsg::rendezvous

#endif  // UDPMSG_APPS_RENDEZVOUS_CLIENT_CORE_H_
