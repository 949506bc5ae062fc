// ServerCore: the rendezvous server, sans-I/O. Clients hold an encrypted
// udpmsg connection to it; a receiver registers a name on its connection,
// a sender looks the name up, and the server introduces the two: each gets
// the other's reflexive address (the address the server's connection sees
// as its peer, i.e. the NAT mapping of the client's socket) and a relay
// allocation's token, so they can punch toward each other and fall back to
// the relay (relay_core.h). The server never carries the transfer itself
// except through the relay.
//
//   ServerCore core(ServerOptions{}, &relay);          // relay may be null
//   core.OnConnected(now, conn, peer);                 // Host kConnected
//   core.OnMessage(now, conn, bytes);                  // Host kMessage
//   core.OnClosed(now, conn);                          // Host kClosed
//   core.OnRelayEvent(now, e);                         // each RelayCore event
//   for (auto& r : core.TakeReplies()) host.Send(r.connection, ..., r.bytes);
//   for (auto& line : core.TakeLog()) log(line);       // peer text escaped
//
// Rules (each refusal is a Refused message with a code, and a counter):
//   - Names: 1 to kMaxNameBytes bytes of [A-Za-z0-9._-], starting with a
//     letter or digit (BAD_NAME otherwise; never echoed unescaped).
//   - A name belongs to the connection that registered it until that
//     connection closes; another connection's Register for it is refused
//     (NAME_TAKEN). A connection holds one name: registering another
//     replaces its own.
//   - At most max_names names, and max_names_per_address per client IPv4
//     address or IPv6 /64 (LIMIT).
//   - Lookups: a connection may hold at most max_introductions_per_connection
//     relay allocations at once (LIMIT beyond), and look up at most
//     lookup_burst names at once, then lookups_per_second (a token bucket:
//     each introduction makes the target punch toward the asker, so asking
//     in a loop must not be free); an unknown name is NOT_REGISTERED; a
//     connection cannot look up its own name. When the relay is full the
//     introduction goes without one (relay_port 0).
//   - A message that does not parse, or a kind a client does not send, is
//     refused (BAD_MESSAGE) and counted; the connection stays.
//   - Introductions are held only while their relay allocation lives; the
//     relay ends them (bind timeout, idle, budget) or Release does when
//     the sender reports the direct path or either connection closes.
// Memory: names (bounded), one record per live connection seen (bounded by
// the Host's max_connections), introductions (bounded by the relay).
//
// Not thread-safe. Borrows the relay (which must outlive it).
#ifndef UDPMSG_APPS_RENDEZVOUS_SERVER_CORE_H_
#define UDPMSG_APPS_RENDEZVOUS_SERVER_CORE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/rendezvous/names.h"
#include "apps/rendezvous/relay_core.h"
#include "apps/chat/token_bucket.h"
#include "udp/socket_address.h"

namespace udpmsg::rendezvous {

// How long a relay keeps forwarding after a side's rendezvous connection
// closed (RelayCore::ReleaseAfter); up to one sweep more.
inline constexpr absl::Duration kRelayCloseGrace = absl::Seconds(2);

struct ServerOptions {
  size_t max_names = 4096;
  size_t max_names_per_address = 8;
  size_t max_introductions_per_connection = 4;
  // Live relay allocations asked for from one IPv4 address or IPv6 /64 (a
  // host with many connections cannot hold every relay slot). Beyond it an
  // introduction comes without a relay.
  size_t max_relays_per_address = 8;
  double lookup_burst = 8;
  double lookups_per_second = 1;
  // Introductions to one registered name, whoever asks (a token bucket per
  // name): a flood of lookups from many connections must not push a
  // genuine introduction out of the receiver's bounded set (client_core.h
  // keeps 8, each punched for about 6 s: 4 + 0.5/s x 6 s stays below it).
  double introduction_burst = 4;
  double introductions_per_second = 0.5;
  // The relay's UDP port, told to clients (0: no relay).
  uint16_t relay_port = 0;
};

struct ServerStats {
  uint64_t registered = 0;
  uint64_t lookups = 0;
  uint64_t introductions = 0;
  uint64_t refused_taken = 0;
  uint64_t refused_bad_name = 0;
  uint64_t refused_limit = 0;  // names, introductions or lookup rate
  uint64_t refused_unknown = 0;
  uint64_t bad_messages = 0;
  uint64_t relays_bound = 0;
  std::string ToString() const;
};

class ServerCore final {
 public:
  struct Reply {
    uint64_t connection = 0;
    std::string bytes;  // a serialized wire::ServerMessage
  };

  ServerCore(const ServerOptions& options, RelayCore* relay);
  ServerCore(const ServerCore&) = delete;
  ServerCore& operator=(const ServerCore&) = delete;

  void OnConnected(absl::Time now, uint64_t connection, const udp::SocketAddress& peer);
  void OnMessage(absl::Time now, uint64_t connection, absl::string_view bytes);
  // The client's NAT rebound and the connection followed it (Host
  // kPathChanged): introductions from now on give `peer`, the address peers
  // must punch toward. Its name stays counted under the address prefix it
  // registered from (an admission rule, as for the chat server).
  void OnPathChanged(absl::Time now, uint64_t connection, const udp::SocketAddress& peer);
  void OnClosed(absl::Time now, uint64_t connection);
  void OnRelayEvent(absl::Time now, const RelayCore::Event& event);

  std::vector<Reply> TakeReplies();
  std::vector<std::string> TakeLog();

  size_t names() const { return names_.size(); }
  size_t introductions() const { return introductions_.size(); }
  const ServerStats& stats() const { return stats_; }

 private:
  struct Client {
    udp::SocketAddress peer;
    std::string prefix;        // udp::AddressPrefix(peer)
    std::string name;          // registered name, or empty
    size_t introductions = 0;  // live relay allocations it asked for
    // Its lookups (ServerOptions::lookup_burst), and introductions to it
    // (introduction_burst); both set in OnConnected.
    chat::TokenBucket lookups{1, 0, absl::InfinitePast()};
    chat::TokenBucket introductions_to{1, 0, absl::InfinitePast()};
  };
  struct Intro {
    uint64_t requester = 0;
    uint64_t target = 0;
    uint64_t relay = 0;  // the relay allocation's id
    std::string prefix;  // the requester's address prefix (relays_per_prefix_)
  };

  void Send(uint64_t connection, const std::string& bytes);
  void Refuse(uint64_t connection, uint64_t request, int code, std::string reason);
  void OnRegister(uint64_t connection, Client& client, absl::string_view name);
  void OnLookup(absl::Time now, uint64_t connection, Client& client, uint64_t request,
                absl::string_view name);
  void DropIntro(uint64_t id);

  ServerOptions options_;
  RelayCore* relay_;
  absl::flat_hash_map<uint64_t, Client> clients_;
  absl::flat_hash_map<std::string, uint64_t> names_;  // name -> connection
  absl::flat_hash_map<std::string, size_t> names_per_prefix_;
  absl::flat_hash_map<std::string, size_t> relays_per_prefix_;  // live allocations
  // Introductions with a live relay allocation, by id; and by allocation.
  absl::flat_hash_map<uint64_t, Intro> introductions_;
  absl::flat_hash_map<uint64_t, uint64_t> by_relay_;
  uint64_t next_intro_ = 1;
  std::vector<Reply> replies_;
  std::vector<std::string> log_;
  ServerStats stats_;
};

}  // namespace udpmsg::rendezvous

#endif  // UDPMSG_APPS_RENDEZVOUS_SERVER_CORE_H_
