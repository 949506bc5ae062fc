// udpmsg::Host: reliable messaging over one UDP socket. This is the class
// applications use.
//
// A Host owns a UDP socket and every connection made through it. Poll() is
// the one service call: it receives datagrams, runs timers, sends what is
// due, and returns the events (connected, message, acked, closed) that
// happened, or nothing once `timeout` passes. Between Polls, Connect, Send
// and Close only queue work; it leaves in the next Poll (or Flush).
//
// Usage (an echo server; examples/echo_server.cc is the complete program):
//   udpmsg::HostOptions options;
//   options.bind = udpmsg::SocketAddress::Any(udpmsg::AddressFamily::kIpv6, 9000);
//   options.accept_incoming = true;
//   absl::StatusOr<udpmsg::Host> host = udpmsg::Host::Create(options);
//   if (!host.ok()) return host.status();
//   for (;;) {
//     absl::StatusOr<udpmsg::Host::PollResult> r = host->Poll(absl::Seconds(1));
//     if (!r.ok()) return r.status();
//     for (udpmsg::Event& e : r->events) {
//       if (e.type == udpmsg::Event::Type::kMessage) {
//         host->Send(e.connection, e.channel, e.mode, std::move(e.message)).IgnoreError();
//       }
//     }
//   }
//
// A client Connect()s (then AwaitConnected, or waits for kConnected in
// Poll), Sends, and before exiting calls Flush() so that what it queued is
// delivered, then Close().
//
// Connections: each has a ConnectionId, fixed for its life. Messages go on
// a channel in [0, max_channels) with a DeliveryMode; each (channel, mode)
// pair is its own sequence. A connection sends one FIFO across channels
// until SetChannelPriority gives channels priorities and weights (a chat
// line then overtakes a bulk transfer on the same connection). Every byte a
// peer can make a Host hold is bounded by HostOptions (see options.h); a
// slow application stalls its senders instead of growing memory.
//
// Shards (every core on one port): Host::CreateShards(options, n) returns n
// Hosts serving options.bind's port, each on its own SO_REUSEPORT socket;
// the application runs each on its own thread. A connection stays on the
// shard that accepted it for its life, even when the client's address
// changes: its id carries the shard's index and a kernel program steers each
// datagram by it (udp/shard_steering.h). Hellos reach a shard by the
// kernel's 4-tuple hash.
//   absl::StatusOr<std::vector<udpmsg::Host>> shards = udpmsg::Host::CreateShards(options, 4);
//   std::vector<std::thread> threads;
//   for (udpmsg::Host& h : *shards) threads.emplace_back([&h] { Serve(h); });
// Each shard has its own connections, caps (HostOptions apply per shard),
// counters and events; nothing is shared between them. shard() tells
// whether steering works (it needs Linux 4.5's SO_ATTACH_REUSEPORT_CBPF).
//
// Ownership: Host owns its socket, its poller and every connection; it is
// move-only (a moved-from Host may only be destroyed or assigned to).
// Watch() borrows the descriptors it is given.
// Threading: every method from one thread, except Wake(), which any thread
// may call to make a blocked Poll() return.
#ifndef UDPMSG_UDPMSG_HOST_H_
#define UDPMSG_UDPMSG_HOST_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "reliable/connection.h"
#include "reliable/endpoint.h"
#include "reliable/runtime.h"
#include "udpmsg/address.h"
#include "udpmsg/event.h"
#include "udpmsg/options.h"

namespace udpmsg {

// One connection's counters and RTT estimate (srtt, cwnd, packets and bytes
// sent/received/lost, messages sent/delivered/acked, ...); ToString() gives
// one line for logs.
using ConnectionStats = reliable::ConnectionStats;
// The host's socket calls (recv/send calls, send errors, truncated
// datagrams, ICMP reports).
using IoStats = reliable::Runtime::IoStats;
// The host's datagram counters (received, sent, malformed, unknown
// connection, handshakes, refusals, ...); ToString() gives one line.
using HostStats = reliable::EndpointStats;
// A client connection's own security (Host::Connect(peer, security)).
using ConnectSecurity = reliable::ConnectSecurity;

// Channel send priorities are [0, kChannelPriorities), 0 the most urgent;
// weights are [1, kMaxChannelWeight] (Host::SetChannelPriority).
inline constexpr uint32_t kChannelPriorities = reliable::SendQueue::kPriorities;
inline constexpr uint32_t kMaxChannelWeight = reliable::SendQueue::kMaxWeight;

// Which shard of a group a Host is (Host::CreateShards).
struct ShardInfo {
  int index = 0;  // in [0, count)
  int count = 1;  // 1 for Host::Create
  // Datagrams reach this shard by their connection id (the steering program
  // is attached and was checked). When false with count > 1, the kernel's
  // 4-tuple hash alone picks shards: a client whose address changes may
  // reach a shard that does not know its connection (steering_error says
  // why steering is off).
  bool steered = false;
  std::string steering_error;
};

class Host final {
 public:
  struct PollResult {
    std::vector<Event> events;
    // Tokens of watched descriptors that became readable (see Watch()).
    std::vector<uint64_t> ready;
  };

  // Validates `options` and binds the socket.
  // INVALID_ARGUMENT: an option out of range (the message names the field
  // and the range). Otherwise the errno status of the failed call, naming
  // the address, e.g. "bind [::]:9000: Address already in use".
  static absl::StatusOr<Host> Create(const HostOptions& options);

  // `count` Hosts serving options.bind's port (see "Shards" above; a port
  // of 0 picks one free port for all), bound in shard order; shard i's
  // connection ids carry i. Every cap in `options` applies per shard. Each
  // Host then belongs to one thread; destroy them together (closing one
  // socket renumbers the kernel's group, and steering with it).
  // INVALID_ARGUMENT: `count` outside [1, 256], or an option out of range.
  // Errno statuses as for Create. count 1 is Create.
  static absl::StatusOr<std::vector<Host>> CreateShards(const HostOptions& options, int count);

  Host(Host&&) = default;
  Host& operator=(Host&&) = default;
  ~Host();

  // The bound address, with the port the kernel chose for port 0.
  const SocketAddress& local_address() const;

  // Starts a connection to `peer`; kConnected or kClosed in a later Poll
  // (or AwaitConnected) tells how it went. RESOURCE_EXHAUSTED when
  // max_connections are open.
  absl::StatusOr<ConnectionId> Connect(const SocketAddress& peer);
  // The same, but encrypted as `security` says instead of as HostOptions
  // say (never with the room key): apps/rendezvous talks to its server
  // this way from the socket its transfers use.
  absl::StatusOr<ConnectionId> Connect(const SocketAddress& peer, const ConnectSecurity& security);

  // Sends one punch datagram to `peer` from this Host's socket, at once: a
  // datagram that is not a udpmsg packet (proto/frames.h kPunchVersion, then
  // `payload`), which opens this host's NAT toward `peer` (NAT traversal,
  // apps/rendezvous) or binds a relay. A udpmsg Host receiving one counts
  // it in HostStats::punches and drops it; nothing ever answers one. `ttl`
  // in [1, 255] sends it with that IP TTL (IPv6 hop limit), so that it opens
  // our NAT but expires before the peer's; 0: the default. Best effort: a
  // full socket buffer drops it. INVALID_ARGUMENT: payload over 64 bytes
  // (proto::kMaxPunchPayload) or ttl out of range. Other socket errors with
  // errno text.
  absl::Status SendPunch(const SocketAddress& peer, absl::string_view payload = "", int ttl = 0);

  // Queues `message` on `channel` with `mode`; returns its sequence number
  // in that (channel, mode). It leaves in the next Poll or Flush; messages
  // sent back to back share packets.
  // NOT_FOUND: unknown or removed connection. FAILED_PRECONDITION: not yet
  // established, or closing/closed. INVALID_ARGUMENT: channel out of range
  // or message over max_message_bytes. RESOURCE_EXHAUSTED: max_queued_bytes
  // queued (wait for kAcked events or QueuedBytes to fall; see
  // SetChannelPriority for the reserve of more urgent channels), or the
  // sequence space is used up.
  absl::StatusOr<uint64_t> Send(ConnectionId id, uint32_t channel, DeliveryMode mode,
                                std::string message);
  // The same without copying: `bytes` lie in memory that `owner` keeps
  // alive (a buffer sent in slices, a mapped file), and the host holds
  // `owner` until the message is acknowledged or given up, or the
  // connection is gone. The bytes must not change meanwhile (they are read
  // again for retransmissions). INVALID_ARGUMENT also for a null `owner`
  // with non-empty `bytes`.
  //
  //   auto file = std::make_shared<const std::string>(contents);
  //   host.Send(id, 0, mode, file, absl::string_view(*file).substr(0, 65536));
  absl::StatusOr<uint64_t> Send(ConnectionId id, uint32_t channel, DeliveryMode mode,
                                std::shared_ptr<const void> owner, absl::string_view bytes);

  // Sets the send priority and weight of `channel` on connection `id`:
  // queued data of a more urgent channel (lower priority number) always
  // goes first, even in the middle of a less urgent message; channels of
  // one priority share the bytes sent by weight (3 and 1: 3:1 while both
  // have data). A channel's messages stay in order, for all its modes.
  // Channels never configured share one lane at priority 0, weight 1: one
  // FIFO in Send order across them, the behaviour without priorities. A
  // configured channel gets a lane of its own (for good; (0, 1) puts it
  // beside the shared lane at its default priority and weight). Sender
  // side only: each side sets its own; nothing changes on the wire.
  // Back-pressure: a more urgent channel may queue up to max_queued_bytes
  // / 8 more than max_queued_bytes while less urgent data fills the queue,
  // so a bulk sender that fills it cannot make a chat line's Send fail.
  // docs/library.md, "Priorities and weights between channels", has the
  // measured effect.
  // NOT_FOUND: unknown or removed connection. FAILED_PRECONDITION: not yet
  // established, or closed. INVALID_ARGUMENT: channel not in
  // [0, max_channels), priority not in [0, kChannelPriorities), weight not
  // in [1, kMaxChannelWeight].
  absl::Status SetChannelPriority(ConnectionId id, uint32_t channel, uint32_t priority,
                                  uint32_t weight);

  // Closes `id`, telling the peer `reason`. With `flush`, queued messages
  // are delivered first. A kClosed event (kClosedByApplication) follows.
  // NOT_FOUND for an unknown id. Closing twice is harmless.
  absl::Status Close(ConnectionId id, std::string reason, bool flush = true);

  // Client migration (a laptop changing networks, or testing NAT
  // rebinding): moves this host to a new socket bound to `bind` (e.g.
  // SocketAddress::Any(kIpv6, 0) for a new port) and closes the old one.
  // Every client connection pings its server at once from the new address;
  // the server validates the address and follows (its application sees
  // Event::kPathChanged). local_address() reports the new address. On an
  // error the host keeps its old socket.
  // FAILED_PRECONDITION for a host that accepts incoming connections (a
  // server cannot move). Otherwise the errno status of the failed call,
  // naming the address ("bind 127.0.0.1:9000: Address already in use").
  absl::Status Rebind(const SocketAddress& bind);

  // Runs until there are events or watched descriptors are ready, or
  // `timeout` passes (an empty result). Socket errors other than "would
  // block" are returned (with errno text).
  absl::StatusOr<PollResult> Poll(absl::Duration timeout);

  // Also reports `fd` readable in Poll(), as `token`. Borrowed: Unwatch
  // before closing it. Errno statuses from epoll (e.g. ALREADY_EXISTS when
  // watched twice).
  absl::Status Watch(int fd, uint64_t token);
  absl::Status Unwatch(int fd);

  // Runs the loop until `id` is connected (OK) or closed (UNAVAILABLE
  // "cannot connect to PEER: [refused: ]REASON"), or `timeout` passes
  // (DEADLINE_EXCEEDED). Other events are kept for the next Poll. OK at
  // once when already established. NOT_FOUND for an unknown id.
  absl::Status AwaitConnected(ConnectionId id, absl::Duration timeout);

  // Runs the loop (keeping events for the next Poll) until every open
  // connection has nothing queued or unacknowledged. DEADLINE_EXCEEDED
  // after `timeout`, naming the bytes still queued.
  absl::Status Flush(absl::Duration timeout);

  // Makes a Poll() blocked in another thread return. Thread-safe.
  void Wake();

  // NOT_FOUND for an unknown or removed connection.
  absl::StatusOr<ConnectionStats> Stats(ConnectionId id) const;
  absl::StatusOr<SocketAddress> PeerOf(ConnectionId id) const;
  // Bytes queued by Send and not yet acknowledged (0 for an unknown id):
  // the back-pressure signal for bulk senders.
  uint64_t QueuedBytes(ConnectionId id) const;
  // Whether `id` is established (kConnected seen, not closed).
  bool IsEstablished(ConnectionId id) const;
  // Connections not closed.
  size_t open_connections() const;
  IoStats io_stats() const;
  HostStats stats() const;
  // This host's place in its shard group ({0, 1, false, ""} from Create).
  const ShardInfo& shard() const { return shard_; }

 private:
  explicit Host(std::unique_ptr<reliable::Runtime> runtime);

  std::unique_ptr<reliable::Runtime> runtime_;
  ShardInfo shard_;
};

}  // namespace udpmsg

#endif  // UDPMSG_UDPMSG_HOST_H_
