// ClientCore: a NAT-traversal client's side of the rendezvous protocol,
// sans-I/O. It builds the messages a client sends its rendezvous server
// (Register, Lookup, PathChosen), checks and decodes the server's answers
// into events, and schedules the punch datagrams that open the client's NAT
// toward each introduced peer's reflexive address, and the binds toward the
// relay (this side's token, every bind_interval until RelayReady, for
// bind_for at most). The driver sends them from the socket its connections
// use (udpmsg::Host::SendPunch): client_on_host.h is that driver.
//
// Punching in two phases. A datagram that reaches the peer's NAT before the
// peer has sent anything toward us is unsolicited there; a Linux (conntrack)
// NAT then records it, answers ICMP "port unreachable", and that record
// takes the tuple the peer's own mapping toward us needs, so the peer's NAT
// gives its later datagrams another port and the direct path fails for
// both. So for open_for after an introduction (the opening phase) the
// punches go with IP TTL kOpeningTtl: they create our NAT's mapping (one hop
// away) and expire at the next router, before the peer's NAT. Only after
// that, when the peer has had the same time to open its own NAT, do full
// punches go (every punch_interval until punch_for), and the sender's
// handshake starts (DirectAttemptStart). Hosts more than one hop behind
// their NAT, or NATs one hop apart, defeat the opening phase; then the relay
// takes over.
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
// max_introductions * (open_for / open_interval + punch_for / punch_interval
// + bind_for / bind_interval) 6-to-21-byte datagrams at a time, only to
// addresses it names.
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
// The IP TTL of opening-phase punches (class comment).
inline constexpr int kOpeningTtl = 2;

struct ClientOptions {
  // The rendezvous server as this client reaches it; the relay is on its IP.
  udp::SocketAddress server;
  absl::Duration open_for = absl::Milliseconds(250);
  absl::Duration open_interval = absl::Milliseconds(50);
  absl::Duration punch_interval = absl::Milliseconds(100);
  absl::Duration punch_for = absl::Seconds(6);
  absl::Duration bind_interval = absl::Milliseconds(200);
  absl::Duration bind_for = absl::Seconds(8);
  size_t max_introductions = 8;
};

struct ClientEvent {
  enum class Type { kRegistered, kRefused, kIntroduced, kRelayReady };
  Type type = Type::kRegistered;
  std::string name;                         // kRegistered
  udp::SocketAddress reflexive;             // kRegistered: as the server sees us
  uint64_t request = 0;                     // kRefused, kIntroduced (0: not ours)
  int code = 0;                             // kRefused: wire::Refused::Code, e.g.
  static constexpr int kNotRegistered = 1;  // wire::Refused::NOT_REGISTERED
  static constexpr int kNameTaken = 2;      // wire::Refused::NAME_TAKEN
  std::string reason;                       // kRefused: escaped server text
  uint64_t introduction = 0;                // kIntroduced, kRelayReady
  udp::SocketAddress peer;                  // kIntroduced: the peer's reflexive address
  std::optional<udp::SocketAddress> relay;  // kIntroduced: the relay, if any
};

struct Punch {
  udp::SocketAddress peer;
  std::string payload;
  int ttl = 0;  // 0: the socket's default; else kOpeningTtl
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
  // When a sender should start its handshake toward the peer of an
  // introduction it received at `introduced`: after the opening phase.
  absl::Time DirectAttemptStart(absl::Time introduced) const {
    return introduced + options_.open_for;
  }

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
