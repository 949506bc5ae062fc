// RelayCore: the rendezvous server's relay, sans-I/O. When two NAT-traversal
// clients cannot reach each other directly (a symmetric NAT on either side),
// each binds itself to a relay allocation with a token the rendezvous server
// gave it, and the relay forwards datagrams between the two bound addresses,
// verbatim, in both directions. One relay socket serves every allocation:
// datagrams are routed by their source address.
//
//   RelayCore relay(now, RelayOptions{});
//   absl::StatusOr<RelayCore::Allocation> a = relay.Allocate(now);  // tokens for both sides
//   relay.OnDatagram(now, from, bytes);                  // for each datagram on the relay socket
//   for (auto& d : relay.TakeOutgoing()) sendto(d.peer, d.bytes);
//   for (auto& e : relay.TakeEvents()) ...;             // kBound, kEnded
//   relay.OnTimeout(now);                               // when now >= NextTimeout()
//
// Binding: a bind is a punch datagram (proto::kPunchVersion) whose payload is
// "bind" and a 16-byte token (kBindPayloadBytes in all). Each allocation has
// one token per side, random (libsodium, or a seeded generator for tests);
// the first bind carrying a side's token fixes that side's address and later
// binds for that side from other addresses are ignored (bind_conflicts), so a
// token cannot be used to steal a side. An address can be bound to one live
// allocation at a time (busy_address: the later bind is ignored). Once both
// sides are bound the allocation emits kBound and forwards.
//
// Not an open reflector or amplifier: the relay never answers anything; it
// forwards one datagram for one received, only from a bound address to the
// other side's bound address, and only for allocations a rendezvous
// connection asked for. Punch datagrams are never forwarded. Everything else
// (unbound sources, bad tokens) is counted and dropped.
//
// Bounds (RelayOptions): at most max_relays allocations; each ends when
//   - both sides are not bound bind_timeout after Allocate,
//   - nothing was forwarded for idle_timeout,
//   - it forwarded byte_budget bytes (kEnded "byte budget used up"),
//   - Release() (the rendezvous server: a side chose the direct path), or
//     ReleaseAfter() (a side's control connection closed: a short grace).
// Forwarding is also rate limited per allocation by a token bucket
// (rate_bytes_per_second, burst_bytes): datagrams over it are dropped and
// counted (the transport's congestion control sees loss and slows down).
// Expiry is checked by a sweep every kSweepInterval: O(max_relays) once a
// second, nothing per datagram beyond two hash lookups.
//
// Not thread-safe: one thread drives it. Owns its tables; holds no sockets.
#ifndef UDPMSG_APPS_RENDEZVOUS_RELAY_CORE_H_
#define UDPMSG_APPS_RENDEZVOUS_RELAY_CORE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/chat/token_bucket.h"
#include "reliable/deterministic_rng.h"
#include "udp/socket_address.h"

namespace udpmsg::rendezvous {

inline constexpr size_t kTokenBytes = 16;
using Token = std::array<uint8_t, kTokenBytes>;
// "bind" + token: the payload of a bind punch.
inline constexpr absl::string_view kBindPrefix = "bind";
inline constexpr size_t kBindPayloadBytes = 4 + kTokenBytes;
inline constexpr absl::Duration kSweepInterval = absl::Seconds(1);

// The punch payload that binds a side with `token`.
std::string BindPayload(const Token& token);

struct RelayOptions {
  size_t max_relays = 64;
  absl::Duration bind_timeout = absl::Seconds(20);
  absl::Duration idle_timeout = absl::Seconds(30);
  uint64_t byte_budget = uint64_t{1} << 30;     // 1 GiB per allocation
  uint64_t rate_bytes_per_second = 12'500'000;  // 100 Mbit/s per allocation
  uint64_t burst_bytes = 1 << 20;
  // Nonzero: tokens from a DeterministicRng with this seed (tests only).
  uint64_t seed = 0;
};

struct RelayStats {
  uint64_t allocated = 0;
  uint64_t refused_full = 0;     // Allocate with max_relays live
  uint64_t binds = 0;            // sides bound
  uint64_t bad_binds = 0;        // punch datagrams that are no bind, or an unknown token
  uint64_t bind_conflicts = 0;   // a bound side's token from another address
  uint64_t bind_wrong_address = 0;  // a token from outside its side's address (spoofed?)
  uint64_t busy_address = 0;     // a bind from an address bound to another allocation
  uint64_t unbound_dropped = 0;  // datagrams from addresses bound to nothing (or half bound)
  uint64_t rate_dropped = 0;     // over the allocation's rate
  uint64_t forwarded = 0;        // datagrams forwarded
  uint64_t forwarded_bytes = 0;
  uint64_t ended = 0;
  std::string ToString() const;
};

class RelayCore final {
 public:
  struct Allocation {
    uint64_t id = 0;
    Token token[2];
  };
  struct Outgoing {
    udp::SocketAddress peer;
    std::string bytes;
  };
  struct Event {
    enum class Type { kBound, kEnded };
    Type type = Type::kBound;
    uint64_t id = 0;
    udp::SocketAddress side[2];  // kBound: the two bound addresses
    std::string reason;          // kEnded: why (our text, not a peer's)
    uint64_t bytes = 0;          // kEnded: bytes forwarded
  };

  RelayCore(absl::Time now, const RelayOptions& options);
  RelayCore(const RelayCore&) = delete;
  RelayCore& operator=(const RelayCore&) = delete;

  // A new allocation, unbound. RESOURCE_EXHAUSTED with max_relays live.
  // `sides`, when given, are the addresses the rendezvous server saw each
  // side's (address-validated) control connection come from: a side's bind
  // is then accepted only from the same IPv4 address or IPv6 /64
  // (udp::AddressPrefix; the port may differ, as a symmetric NAT gives
  // another port per destination). Without it a client could bind its side
  // with a spoofed source address and have the relay send the other side's
  // traffic to a victim. Counted as bind_wrong_address.
  absl::StatusOr<Allocation> Allocate(
      absl::Time now, const std::optional<std::array<udp::SocketAddress, 2>>& sides = std::nullopt);
  // Ends `id` (kEnded "released"); unknown ids are ignored.
  void Release(uint64_t id, absl::string_view why = "released");
  // Ends `id` at the first sweep after `now + grace`, forwarding until then:
  // when a side's rendezvous connection closes, the datagrams it sent just
  // before through the relay (its transfer's last acknowledgement and Close)
  // may still be on their way, and must not be dropped.
  void ReleaseAfter(absl::Time now, uint64_t id, absl::Duration grace, absl::string_view why);

  // A datagram on the relay socket. Never fails; see the class comment.
  void OnDatagram(absl::Time now, const udp::SocketAddress& from, absl::string_view bytes);
  void OnTimeout(absl::Time now);
  // InfiniteFuture with no allocations, else the next sweep.
  absl::Time NextTimeout() const;

  std::vector<Outgoing> TakeOutgoing();
  std::vector<Event> TakeEvents();
  size_t live() const { return relays_.size(); }
  const RelayStats& stats() const { return stats_; }

 private:
  struct Relay {
    Token token[2];
    std::optional<udp::SocketAddress> side[2];
    std::string prefix[2];  // AddressPrefix a side must bind from ("" : any)
    absl::Time created;
    absl::Time last_forward;
    uint64_t bytes = 0;
    chat::TokenBucket rate{1, 0, absl::InfinitePast()};  // bytes; set in Allocate
    absl::Time ends_at = absl::InfiniteFuture();  // ReleaseAfter
    std::string end_reason;
  };
  void Bind(absl::Time now, const udp::SocketAddress& from, absl::string_view payload);
  void End(uint64_t id, std::string why);
  Token NewToken();

  RelayOptions options_;
  absl::flat_hash_map<uint64_t, Relay> relays_;
  // Token bytes -> (allocation, side).
  absl::flat_hash_map<std::string, std::pair<uint64_t, int>> by_token_;
  // Bound address -> allocation.
  absl::flat_hash_map<udp::SocketAddress, uint64_t> by_address_;
  uint64_t next_id_ = 1;
  absl::Time next_sweep_;
  std::optional<reliable::DeterministicRng> rng_;
  std::vector<Outgoing> outgoing_;
  std::vector<Event> events_;
  RelayStats stats_;
};

}  // namespace udpmsg::rendezvous

#endif  // UDPMSG_APPS_RENDEZVOUS_RELAY_CORE_H_
