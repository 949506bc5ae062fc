// Endpoint: every reliable connection of one UDP socket, sans-I/O.
//
// The endpoint decodes datagrams (proto::Codec), routes them to connections
// by connection id, runs the server half of the handshake statelessly, and
// collects what connections want to send. It never touches a socket or a
// clock: the caller passes time in and carries datagrams out, like KCP's
// input/output/update/check. reliable::Runtime (real sockets, epoll) and
// tests/sim (virtual time) are its two drivers.
//
//   endpoint.OnDatagram(now, from, bytes);        // for each datagram received
//   endpoint.OnDatagrams(now, batch);             // or all of one receive call
//   endpoint.OnTimeout(now);                      // when now >= NextTimeout()
//   for (auto& d : endpoint.TakeOutgoing()) sendto(d.peer, d.bytes);
//   for (auto& e : endpoint.TakeEvents()) ...;    // connected/message/acked/closed
//
// Server handshake and address validation (the QUIC Retry idea): a hello
// without a valid cookie gets a Challenge carrying a cookie (HMAC over the
// source address, the client's connection id and the time) and creates no
// state. Only a hello that returns a valid cookie creates a Connection, so a
// spoofed source address gets nothing but small challenges it cannot answer.
// Hellos must be padded to at least proto::kMinDatagram bytes, and before an
// address is validated the endpoint never sends more than 3x the bytes it
// received from it (RFC 9000 8.1), which a test checks.
//
// Handshake budgets (a valid cookie only proves an address, and anyone can
// have many addresses' worth of cookies):
//   - Members: at most `max_connections` open connections that are not
//     unconfirmed (clients, and server connections the client confirmed).
//     A valid hello beyond that gets a Close "server full".
//   - Unconfirmed: a server connection is unconfirmed from its Accept until
//     the client's first numbered packet. At most
//     `max_unconfirmed_connections` of them, apart from the members, so a
//     flood of valid hellos never makes members' slots "full"; a new one
//     beyond that evicts the oldest (closed "handshake not confirmed"). Each
//     lasts at most ConnectionOptions::unconfirmed_timeout (10 s) after the
//     Accept or the client's latest repeated hello.
//   - Per address: at most `max_connections_per_address` open server
//     connections (unconfirmed ones included) per IPv4 address or IPv6 /64
//     (an IPv4-mapped IPv6 address counts as its IPv4 address); a valid
//     hello beyond it gets a Close "server full: too many connections from".
//   - Draining: a closed connection stops counting at once (its slot is free
//     for the next hello) and lingers (3 PTOs, and at least until the
//     accepting side's keepalive and a probe period: Connection::CloseNow)
//     to answer stray packets with a Close, then is removed once its events
//     have been taken. At most
//     `max_draining_connections` linger: beyond that the closed connections
//     whose events were taken are forgotten early.
//   - Room key (psk): the server's Challenge carries a MAC with the key, and
//     the client's Hello{cookie} a MAC with the key over the cookie, its
//     connection id and its public key (packet_protection.h). The server
//     checks it right after the cookie, before any cap, allocation or X25519:
//     a hello without a valid proof gets a clear Close "wrong room key" and
//     costs one BLAKE2b. Every Close the server sends before a handshake
//     completes carries a CloseAuth, without which a keyed client ignores it.
// Each refusal has its own counter in EndpointStats. Each connection bounds
// its own buffers (see connection.h).
//
// Path validation (connection.h, "Path validation and migration"): a
// datagram goes to the connection its id names whatever its source
// address; the connection decides whether a packet from another address is
// processed and starts a validation (PATH_CHALLENGE to that address, within
// 3x what it received from there), or is dropped (wrong_address). When a
// server connection moves, its per-address count and repeated-hello key
// move with it (a move is never refused for the new address's cap: it is
// validated, and the old address is gone). EndpointStats counts challenges,
// migrations and failed validations.
//
// Timers: the endpoint files every connection's next deadline in one ordered
// set, refiled whenever the connection is touched (a datagram for it, a
// Send, a Close, its timer, its events taken), so NextTimeout() is O(1),
// OnTimeout() runs only the connections that are due, routing is one hash
// lookup and a closed connection is removed by its own drain timer: the
// work of a call is proportional to what happens, not to how many
// connections exist. Deadlines at least kCoalesceAfter away (keepalive,
// idle, handshake, path MTU raise timers) are rounded up to a multiple of
// kTimerGranularity, so any number of quiet connections wake the endpoint
// at most 1 / kTimerGranularity times a second (each at most 6% late);
// nearer ones (loss detection, acknowledgement delay, pacing) are exact.
//
// Not thread-safe: one thread drives an endpoint. Owns its connections.
#ifndef UDPMSG_RELIABLE_ENDPOINT_H_
#define UDPMSG_RELIABLE_ENDPOINT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "proto/codec.h"
#include "reliable/connection.h"
#include "reliable/datagram_batch.h"
#include "reliable/cookie.h"
#include "reliable/deterministic_rng.h"
#include "reliable/message_bytes.h"
#include "udp/socket_address.h"

namespace udpmsg::reliable {

struct EndpointOptions {
  ConnectionOptions connection;
  // Accept incoming connections (a server). Clients may still Connect().
  bool accept_incoming = false;
  // Open connections, unconfirmed server connections apart (class comment).
  size_t max_connections = 1024;
  // Server connections waiting for the client's confirmation.
  size_t max_unconfirmed_connections = 64;
  // Open server connections per IPv4 address / IPv6 /64.
  size_t max_connections_per_address = 64;
  // Closed connections kept to answer stray packets with a Close.
  size_t max_draining_connections = 1024;
  absl::Duration cookie_lifetime = absl::Seconds(10);
  // Fixed cookie secret and id seed for deterministic tests; random (from
  // libsodium) when unset / zero.
  std::optional<CookieJar::Secret> cookie_secret;
  uint64_t seed = 0;
  // Encrypt every connection: X25519 in the handshake, ChaCha20-Poly1305 on
  // every datagram after it (packet_protection.h). A server that encrypts
  // refuses clients that do not, and the other way round, with a clear reason.
  bool encrypt = false;
  // A pre-shared room key (implies encrypt): only peers holding the same key
  // can connect; the client learns a wrong key from the server's Accept.
  std::optional<Psk> psk;
  // Server: a long-term identity (implies encrypt). Every Accept carries its
  // public key and proves possession of the secret key (packet_protection.h,
  // "Server identity"); clients report its fingerprint in kConnected.
  std::optional<KeyPair> identity;
  // Client: the server identity fingerprint every Connect requires
  // (IdentityFingerprint form; implies encrypt); any other, or none, closes
  // the attempt with CloseReason::kServerIdentityMismatch naming both.
  std::optional<std::string> server_pin;
  // Shards (several endpoints serving one port from several threads, each on
  // its own SO_REUSEPORT socket): every connection id this endpoint mints
  // has `shard_index` in its least significant byte, so a packet's id alone
  // tells which shard holds its connection (udp::ShardSteering reads that
  // byte). shard_count 1 (the default) leaves ids fully random. shard_index
  // in [0, shard_count), shard_count in [1, 256].
  uint32_t shard_index = 0;
  uint32_t shard_count = 1;
};

// The shard a connection id belongs to (see EndpointOptions::shard_index).
inline uint32_t ShardOfConnectionId(uint64_t id) { return static_cast<uint32_t>(id & 0xff); }

// Security of one client connection that differs from the endpoint's own
// (Endpoint::Connect with it): a NAT-traversal client talks to its
// rendezvous server encrypted but without the room key that its transfers
// use, from the same socket. The connection encrypts when `encrypt` or
// `server_pin` says so; it never uses the endpoint's psk.
struct ConnectSecurity {
  bool encrypt = false;
  std::optional<std::string> server_pin;
};

// Timer coalescing (see "Timers" in Endpoint's comment).
inline constexpr absl::Duration kTimerGranularity = absl::Milliseconds(250);
inline constexpr absl::Duration kCoalesceAfter = absl::Seconds(4);

// One datagram to send.
struct Outgoing {
  udp::SocketAddress peer;
  std::string bytes;
};

// One datagram of a batch (Endpoint::OnDatagrams): views that stay valid
// for the call.
struct ReceivedDatagram {
  const udp::SocketAddress* from;
  absl::string_view bytes;
};

struct EndpointStats {
  uint64_t datagrams_received = 0;
  uint64_t bytes_received = 0;
  uint64_t datagrams_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t malformed = 0;           // failed to decode (corrupt, truncated, ...)
  uint64_t unknown_connection = 0;  // no such connection id
  // A known id from another address that the connection refused unread: a
  // client's (clients never move) or a connection's not established, a
  // duplicate (replayed) number, or on an unencrypted connection a packet
  // not newer than every one received (connection.h, "Path validation").
  // Sealed datagrams that do not open count as unauthenticated instead.
  uint64_t wrong_address = 0;
  uint64_t hellos = 0;
  uint64_t challenges_sent = 0;
  uint64_t bad_cookies = 0;
  uint64_t short_hellos = 0;        // hello datagram under kMinDatagram: dropped
  uint64_t accepted = 0;
  uint64_t refused_full = 0;         // valid hello, max_connections members
  uint64_t refused_per_address = 0;  // valid hello, address at its cap
  uint64_t refused_key_proof = 0;    // valid cookie, no valid room-key proof
  uint64_t evicted_unconfirmed = 0;  // unconfirmed closed for a newer hello
  uint64_t refused_late_full = 0;    // confirmed when members were full: closed
  uint64_t drained_early = 0;        // closed, forgotten before drain_until
  uint64_t key_exchanges = 0;        // X25519 exchanges done for hellos
  uint64_t ignored_hellos = 0;      // hello to an endpoint that does not accept
  uint64_t unauthenticated = 0;     // sealed datagrams that failed to open, or
                                    // plain ones for an encrypted connection
  uint64_t unreachable = 0;         // ICMP reports that ended a connection attempt
  uint64_t punches = 0;             // punch datagrams (proto::kPunchVersion): dropped
  // Timer work: OnTimeout calls that found a connection due, and the
  // connections they ran (each touches only those: see "Timers").
  uint64_t timer_wakeups = 0;
  uint64_t timers_fired = 0;
  // Connections run (Poll, timer refiled) for received datagrams: one per
  // datagram by OnDatagram. By OnDatagrams: one per datagram that owes an
  // ACK or cannot wait (see OnDatagrams), and one per connection with
  // datagrams deferred since its last run, at the end of the batch or
  // before a hello.
  uint64_t received_flushes = 0;
  // Path validation (connection.h): challenges sent to new addresses,
  // connections moved to a validated address, validations abandoned.
  uint64_t path_challenges_sent = 0;
  uint64_t migrations = 0;
  uint64_t path_validation_failures = 0;
  std::string ToString() const;
};

class Endpoint final {
 public:
  Endpoint(absl::Time now, const EndpointOptions& options);
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  // A datagram arrived. Malformed or unexpected input is counted and dropped;
  // it never fails, crashes or creates state (see the class comment).
  void OnDatagram(absl::Time now, const udp::SocketAddress& from, absl::string_view bytes);
  // Datagrams that arrived together (one receive call, a coalesced GRO
  // buffer), in order. Each is handled as by OnDatagram, except that an
  // established connection (an open member, no path validation running or
  // waiting) receiving from its peer's address builds its replies (data
  // the acknowledgements freed) and files its timer once, at the end of
  // the batch, instead of after each datagram. It is still run at once
  // when it owes an ACK (Connection::AckDue: the peer's threshold of
  // packets reached, a gap, a ping), so every ACK the ack policy calls for
  // goes out at the datagram that calls for it, as one by one: with the
  // threshold of 32 a fast sender asks for, a GRO buffer of 44 data
  // packets costs two runs instead of 44 (EndpointStats::received_flushes).
  // What the batch changes: data the connection has to send goes at the
  // end of the batch, so ACKs that would only have ridden along on data
  // sent between its datagrams (two-way traffic) are not sent; a receiver
  // with nothing to send sends exactly the one-by-one ACKs. Any other
  // packet (a confirmation, a close, a path change, another address) is
  // flushed at once too, and a hello first flushes what the batch
  // deferred, so the endpoint's slot counters (members, unconfirmed, per
  // address) and path state are those of the one-by-one calls.
  void OnDatagrams(absl::Time now, absl::Span<const ReceivedDatagram> batch);

  // Starts a connection to `peer`. The kConnected (or kClosed) event tells
  // how it went. RESOURCE_EXHAUSTED when the table is full.
  absl::StatusOr<ConnectionId> Connect(absl::Time now, const udp::SocketAddress& peer);
  // The same with `security` instead of the endpoint's encryption options.
  absl::StatusOr<ConnectionId> Connect(absl::Time now, const udp::SocketAddress& peer,
                                       const ConnectSecurity& security);

  // Queues a message (see Connection::Send). The datagrams carrying it are
  // built by the next TakeOutgoing(), so several Sends in a row share
  // packets. NOT_FOUND for an unknown or removed connection.
  absl::StatusOr<uint64_t> Send(absl::Time now, ConnectionId id, uint32_t channel,
                                DeliveryMode mode, MessageBytes message);

  // Sets the send priority and weight of `channel` on connection `id` (see
  // Connection::SetChannelPriority and send_queue.h): lower priorities go
  // first, strictly; channels of one priority share bytes by weight.
  // NOT_FOUND for an unknown or removed connection; FAILED_PRECONDITION
  // when not established; INVALID_ARGUMENT for a channel, priority or
  // weight out of range.
  absl::Status SetChannelPriority(absl::Time now, ConnectionId id, uint32_t channel,
                                  uint32_t priority, uint32_t weight);

  // Closes a connection (see Connection::Close). NOT_FOUND if unknown.
  absl::Status Close(absl::Time now, ConnectionId id, std::string reason, bool flush = true);
  // Closes every connection.
  void CloseAll(absl::Time now, std::string reason, bool flush);
  // The network reported `peer` unreachable (ICMP port or host unreachable
  // for a datagram we sent; `why` says which, e.g. "Connection refused").
  // Connections still connecting to `peer` fail at once with
  // kClosePeerUnreachable instead of retrying hellos until the handshake
  // timeout. Established connections ignore it: ICMP is unauthenticated
  // and routes recover, so loss recovery and the peer timeout decide there.
  // Returns how many it closed.
  int OnPeerUnreachable(absl::Time now, const udp::SocketAddress& peer, absl::string_view why);
  // The local stack refused to send a datagram of `size` bytes to `peer` as
  // larger than the interface allows (EMSGSIZE): the connections to `peer`
  // whose outstanding path MTU probe has that size give it up at once
  // (Connection::OnDatagramTooBig) instead of after three losses. Local
  // information only (no packet from anyone), so it is trusted.
  void OnDatagramTooBig(absl::Time now, const udp::SocketAddress& peer, size_t size);
  // The driver moved this endpoint to another local address
  // (Runtime::Rebind): every established client connection restarts its
  // path estimates and sends a ping at once (Connection::OnLocalRebind), so
  // its servers see the new address and validate it.
  void OnLocalAddressChanged(absl::Time now);

  // Test hook: connections created from now on use `hooks` (see TestHooks in
  // connection.h). Tests call it right after construction, on both peers
  // when a hook must agree. Production code never calls it.
  void SetTestHooksForTesting(const TestHooks& hooks) { hooks_ = hooks; }

  void OnTimeout(absl::Time now);
  // The earliest time OnTimeout must run; InfiniteFuture when idle.
  absl::Time NextTimeout() const;

  // The datagrams to send now, with their addresses (a copy of each: for
  // tests, the simulator and fuzzers).
  std::vector<Outgoing> TakeOutgoing();
  // The same into `*out`, after what it holds: without a copy when `*out`
  // is empty (the usual case: the batches are swapped, so the caller's
  // buffer is reused the next time), copied behind its datagrams when not
  // (a socket that would block left some unsent). The runtime sends from
  // it (see datagram_batch.h).
  void TakeOutgoing(DatagramBatch* out);
  std::vector<Event> TakeEvents();
  bool HasOutgoing() const { return !outgoing_.empty() || !dirty_.empty(); }

  absl::StatusOr<ConnectionStats> Stats(ConnectionId id) const;
  absl::StatusOr<udp::SocketAddress> PeerOf(ConnectionId id) const;
  // Whether `id` is established (kConnected seen, not closed).
  bool IsEstablished(ConnectionId id) const;
  // Bytes queued but not yet acknowledged / sent, for flushing.
  uint64_t QueuedBytes(ConnectionId id) const;
  // Whether any connection has messages queued or packets unacknowledged,
  // or a Close still to send; `*queued` gets the bytes still queued.
  bool HasUnfinishedWork(uint64_t* queued) const;
  // Connections in the table, closing and draining ones included.
  size_t connection_count() const { return connections_.size(); }
  // Connections not closed.
  size_t open_connections() const { return members_ + unconfirmed_; }
  // Open connections that are not unconfirmed (see the class comment).
  size_t members() const { return members_; }
  // Server connections waiting for the client's confirmation.
  size_t unconfirmed_connections() const { return unconfirmed_; }
  // Open server connections from `peer`'s IPv4 address or IPv6 /64.
  size_t ConnectionsFromAddress(const udp::SocketAddress& peer) const;
  const EndpointStats& stats() const { return stats_; }
  const proto::Codec& codec() const { return codec_; }

 private:
  struct ClientKey {
    std::string address;
    uint64_t id;
    friend bool operator==(const ClientKey& a, const ClientKey& b) {
      return a.id == b.id && a.address == b.address;
    }
    template <typename H>
    friend H AbslHashValue(H h, const ClientKey& k) {
      return H::combine(std::move(h), k.address, k.id);
    }
  };

  // What a connection counts as (see the class comment).
  enum class SlotKind { kMember, kUnconfirmed, kClosed };
  struct Slot {
    SlotKind kind = SlotKind::kMember;
    std::string prefix;  // udp::AddressPrefix of a server connection's peer; "" for clients
    absl::Time since;    // admission time (orders the unconfirmed)
  };
  // One connection and the endpoint's bookkeeping of it.
  struct Entry {
    std::unique_ptr<Connection> connection;
    Slot slot;
    // Its key in timers_ (InfiniteFuture: not there).
    absl::Time due = absl::InfiniteFuture();
  };

  // Handles one datagram; returns the entry it touched that still needs a
  // Flush (null when there is none, or it was flushed already).
  Entry* Deliver(absl::Time now, const udp::SocketAddress& from, absl::string_view bytes);
  // Flushes the entries OnDatagrams deferred (deferred_), in id order.
  void FlushDeferred(absl::Time now);
  void OnHello(absl::Time now, const udp::SocketAddress& from, const proto::Hello& hello,
               size_t size);
  // A stateless Close answering `hello`; with a room key, `authenticate`
  // adds its CloseAuth.
  void Refuse(const udp::SocketAddress& to, const proto::Hello& hello, size_t received_size,
              uint32_t code, std::string reason, bool authenticate);
  void SendStateless(const udp::SocketAddress& to, const proto::Packet& packet,
                     size_t received_size);
  absl::StatusOr<ConnectionId> ConnectWith(absl::Time now, const udp::SocketAddress& peer,
                                           bool encrypt, std::optional<Psk> psk,
                                           std::optional<std::string> server_pin);
  ConnectionId NewId();
  KeyPair NewKeyPair();
  // Adds a new connection to the table and counts it; returns its entry.
  Entry& Admit(absl::Time now, std::unique_ptr<Connection> c, std::string prefix);
  // After anything touched `e`'s connection: collects its datagrams, brings
  // the counters up to date, and files its timer and its events. Every
  // path that touches a connection ends here, which is what lets the
  // endpoint keep no per-turn scan over all connections.
  void Flush(absl::Time now, Entry& e);
  // Flushes the connections sent to since the last TakeOutgoing.
  void FlushDirty();
  // Files `e`'s timer (coalesced, see TimerKey) and its pending events.
  void Reschedule(Entry& e);
  // The key `deadline` is filed under (class comment in endpoint.cc).
  absl::Time TimerKey(absl::Time deadline) const;
  // The entry `id` if it exists; else counts unknown_connection and
  // returns null. Whatever the address: the connection decides (see "Path
  // validation" in the class comment).
  Entry* Route(ConnectionId id);
  // `e`'s connection moved from `moved_from` to its peer(): counts it and
  // moves its by_client_ key and per-address count.
  void OnMigrated(Entry& e, const udp::SocketAddress& moved_from);
  // Removes `id` if its connection is finished at `now`; true if it did.
  bool ReapIfFinished(absl::Time now, ConnectionId id);
  // Forgets closed connections whose events were taken, drain or not.
  void ReapDraining();

  static SlotKind KindOf(const Connection& c);
  void Count(ConnectionId id, const Slot& slot, int delta);
  // Brings the counters up to date with `e`'s state; true when it had to
  // close the connection (confirmed while members were full).
  bool Sync(absl::Time now, ConnectionId id, Entry& e);

  EndpointOptions options_;
  proto::Codec codec_;
  // The last datagram decoded (Deliver): reused so that its frame vector
  // keeps its capacity. Its payload views dangle between calls; nothing
  // reads it then.
  proto::Packet decoded_;
  CookieJar cookies_;
  reliable::DeterministicRng rng_;
  // Every connection by its local id (O(1) routing).
  absl::flat_hash_map<ConnectionId, Entry> connections_;
  // The connection Route found last: a batch's datagrams mostly belong to
  // one connection. Forgotten whenever connections_ gains or loses an
  // entry: an insert may rehash every entry, an erase destroys its own.
  struct Routed {
    ConnectionId id = 0;
    Entry* entry = nullptr;
  };
  Routed routed_;
  // Timers, earliest first: (key, id) for every connection whose
  // Connection::NextTimeout (or drain deadline) is finite.
  absl::btree_set<std::pair<absl::Time, ConnectionId>> timers_;
  // Connections with events not yet taken, in id order.
  absl::btree_set<ConnectionId> with_events_;
  // Client connections (few), for the checks that concern only them.
  absl::btree_set<ConnectionId> clients_;
  // Closed connections (draining), for ReapDraining.
  absl::btree_set<ConnectionId> closed_ids_;
  absl::flat_hash_map<ClientKey, ConnectionId> by_client_;
  DatagramBatch outgoing_;
  absl::btree_set<ConnectionId> dirty_;  // sent to since the last TakeOutgoing
  absl::Time cork_time_ = absl::InfinitePast();
  // The latest time any call passed in (timer coalescing reference).
  absl::Time last_now_ = absl::InfinitePast();
  std::vector<AddressedDatagram> path_scratch_;
  // Connections an OnDatagrams call has yet to flush (may repeat).
  std::vector<ConnectionId> deferred_;
  size_t members_ = 0;
  size_t unconfirmed_ = 0;
  size_t closed_ = 0;
  absl::flat_hash_map<std::string, size_t> per_address_;  // open server connections
  absl::btree_set<std::pair<absl::Time, ConnectionId>> unconfirmed_order_;
  EndpointStats stats_;
  TestHooks hooks_;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_ENDPOINT_H_
