// Runtime: a reliable::Endpoint on a real UDP socket, driven by epoll and a
// real clock. This is the API applications use.
//
// The runtime owns one DatagramSocket, a Poller and an Endpoint. Poll() runs
// the loop: it receives datagrams in batches (recvmmsg), feeds them and the
// clock to the endpoint, sends what the endpoint produces (sendmmsg), and
// returns as soon as there are events for the application or the timeout
// passes. The application may also watch its own descriptors (stdin, say)
// through the same Poll.
//
// Usage (a client):
//   Runtime::Options options;                    // binds [::]:0
//   absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(options);
//   absl::StatusOr<ConnectionId> id = (*rt)->Connect(server);
//   for (;;) {
//     absl::StatusOr<Runtime::PollResult> r = (*rt)->Poll(absl::Seconds(1));
//     for (const Event& e : r->events) {
//       if (e.type == Event::Type::kConnected) (*rt)->Send(*id, 0, kReliableOrdered, "hi");
//     }
//   }
//   (*rt)->Flush(absl::Seconds(5));   // before exiting: deliver what is queued
//
// A server sets options.endpoint.accept_incoming and binds a known port; one
// runtime serves any number of clients (up to max_connections).
//
// Batching: consecutive datagrams the endpoint emits for one peer with the
// same size (a shorter one may end a run of two or more) and the same shard
// byte in their connection ids leave as one UDP GSO train (a train reaches
// one socket of a sharded peer's reuseport group whole: udp/shard_steering.h)
// (udp::DatagramSocket::SendTrains: up to 64 datagrams, 64 KiB, per train,
// several trains per sendmmsg), and the socket receives with UDP GRO, so one
// receive buffer may hold a run of datagrams from one peer, which Receive
// cuts apart and hands, with the rest of the receive call's, to
// Endpoint::OnDatagrams. Both are on by default where the
// kernel has them (Options::segmentation_offload), fall back to plain
// datagrams by themselves when the kernel refuses a train, and change
// nothing on the wire: peers see ordinary datagrams. IoStats shows them
// working (gso_*, gro_*). Receive buffers: 8 slots of 64 KiB (512 KiB per
// runtime), whatever the options.
//
// Threading: every method from one thread, except Wake(), which any thread
// may call to make a blocked Poll() return. Owns the socket and the endpoint.
#ifndef UDPMSG_RELIABLE_RUNTIME_H_
#define UDPMSG_RELIABLE_RUNTIME_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "reliable/clock.h"
#include "reliable/datagram_batch.h"
#include "reliable/endpoint.h"
#include "reliable/message_bytes.h"
#include "udp/datagram_socket.h"
#include "udp/poller.h"
#include "udp/socket_address.h"

namespace udpmsg::reliable {

class Runtime final {
 public:
  struct Options {
    EndpointOptions endpoint;
    // Local address; [::]:0 (any port, IPv4 and IPv6) by default.
    udp::SocketAddress bind = udp::SocketAddress::Any(udp::AddressFamily::kIpv6, 0);
    int socket_buffer_bytes = 4 << 20;  // SO_RCVBUF / SO_SNDBUF requested
    // Borrowed; a RealClock when null.
    const Clock* clock = nullptr;
    // UDP GSO on send and GRO on receive when the kernel has them (see
    // "Batching" above); false sends and receives one datagram per message,
    // for measurements and kernels that misbehave.
    bool segmentation_offload = true;
  };

  struct PollResult {
    std::vector<Event> events;
    // Tokens of watched descriptors that became readable (see Watch()).
    std::vector<uint64_t> ready;
  };

  struct IoStats {
    uint64_t recv_calls = 0;
    uint64_t send_calls = 0;
    uint64_t send_errors = 0;       // datagrams dropped by a send error
    uint64_t truncated = 0;         // datagrams larger than our buffers
    uint64_t send_would_block = 0;  // socket buffer full: waited to send
    uint64_t icmp_errors = 0;       // ICMP reports read from the error queue
    uint64_t datagrams_sent = 0;    // handed to the kernel, trains included
    uint64_t gso_trains = 0;        // trains of 2+ datagrams sent as one message
    uint64_t gso_segments = 0;      // datagrams in those trains
    // Of those trains, the ones the socket first copied into one buffer:
    // none while the endpoint's datagrams lie back to back (DatagramBatch).
    uint64_t gso_copied_trains = 0;
    uint64_t datagrams_received = 0;  // after cutting coalesced buffers apart
    uint64_t gro_buffers = 0;       // received buffers holding 2+ datagrams
    uint64_t gro_segments = 0;      // datagrams in those buffers
    // Whether trains still go as one message each: false when off in the
    // options, unknown to the kernel, or refused at send time (then
    // gso_refused_errno says why: EIO, EINVAL, ...).
    bool gso_enabled = false;
    bool gro_enabled = false;
    int gso_refused_errno = 0;
  };

  // Binds the socket. Errors carry the errno text and the address (e.g.
  // "bind [::]:9000: Address already in use").
  static absl::StatusOr<std::unique_ptr<Runtime>> Create(const Options& options);
  // The same on a socket bound already (options.bind is ignored): one shard
  // of a group from udp::BindShardGroup, say. Open it with
  // SocketOptions(options). Errno statuses of the socket options set here.
  static absl::StatusOr<std::unique_ptr<Runtime>> CreateOnSocket(const Options& options,
                                                                 udp::DatagramSocket socket);
  // The socket options Create binds with (non-blocking, buffer sizes).
  static udp::DatagramSocket::Options SocketOptions(const Options& options);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // The bound address (with the port the kernel chose for port 0).
  const udp::SocketAddress& local_address() const { return local_; }

  absl::StatusOr<ConnectionId> Connect(const udp::SocketAddress& peer);
  // The same with a security of its own (see ConnectSecurity in endpoint.h).
  absl::StatusOr<ConnectionId> Connect(const udp::SocketAddress& peer,
                                       const ConnectSecurity& security);
  // Sends one punch datagram (proto::kPunchVersion, then `payload`) to
  // `peer` from this runtime's socket, now: NAT traversal (apps/rendezvous).
  // `ttl` in [1, 255] sends it with that IP TTL / IPv6 hop limit (set on the
  // socket around this one send), 0 with the socket's default. Best effort:
  // a full socket buffer drops it (OK). INVALID_ARGUMENT: payload over
  // proto::kMaxPunchPayload bytes or ttl out of range. Other socket errors
  // with errno text.
  absl::Status SendPunch(const udp::SocketAddress& peer, absl::string_view payload, int ttl = 0);
  // Queues a message; it leaves in the next Poll() or Flush() (messages
  // sent back to back share packets). A std::string is moved in; bytes in a
  // buffer the caller keeps go without a copy (MessageBytes(owner, bytes),
  // message_bytes.h).
  absl::StatusOr<uint64_t> Send(ConnectionId id, uint32_t channel, DeliveryMode mode,
                                MessageBytes message);
  absl::Status Close(ConnectionId id, std::string reason, bool flush = true);
  // See Endpoint::SetChannelPriority.
  absl::Status SetChannelPriority(ConnectionId id, uint32_t channel, uint32_t priority,
                                  uint32_t weight);

  // Client migration: moves to a new socket bound to `bind` (e.g. [::]:0
  // for any new port, or another local address) and closes the old one.
  // Every client connection sends a ping at once from the new address (the
  // server validates it and follows: connection.h "Path validation and
  // migration") and restarts its own path estimates (congestion window,
  // RTT, path MTU). Datagrams still queued for the old socket leave from
  // the new one; those in flight to the old address are lost (and
  // retransmitted). On an error the runtime keeps its old socket.
  // FAILED_PRECONDITION for a runtime that accepts incoming connections (a
  // server cannot move). Otherwise the errno status of the failed call,
  // naming the address ("bind 127.0.0.1:9000: Address already in use").
  absl::Status Rebind(const udp::SocketAddress& bind);

  // Runs the loop until there are events or watched descriptors are ready,
  // or `timeout` passes (then returns an empty result). Socket errors other
  // than "would block" are returned.
  absl::StatusOr<PollResult> Poll(absl::Duration timeout);

  // Also reports `fd` readable in Poll(); `token` names it. Borrowed: call
  // Unwatch before closing it.
  absl::Status Watch(int fd, uint64_t token);
  absl::Status Unwatch(int fd);

  // Runs the loop until the client connection `id` is connected (OK) or
  // closed (UNAVAILABLE "cannot connect to PEER: [refused: ]REASON"), or
  // `timeout` passes (DEADLINE_EXCEEDED "...: no answer within T"). Every
  // other event is kept for the next Poll. OK at once for a connection
  // already established. NOT_FOUND for an unknown id.
  absl::Status AwaitConnected(ConnectionId id, absl::Duration timeout);

  // Runs the loop (events are kept for the next Poll) until every open
  // connection has nothing queued or in flight, or `timeout` passes:
  // DEADLINE_EXCEEDED then, naming how many bytes were still queued.
  absl::Status Flush(absl::Duration timeout);

  // Makes a Poll() blocked in another thread return. Thread-safe.
  void Wake();

  // The core stays private: callers read it through these accessors.
  absl::StatusOr<ConnectionStats> Stats(ConnectionId id) const { return endpoint_->Stats(id); }
  // Bytes queued but not yet acknowledged for `id` (0 for an unknown id).
  uint64_t QueuedBytes(ConnectionId id) const { return endpoint_->QueuedBytes(id); }
  // Whether `id` is established (kConnected seen, not closed).
  bool IsEstablished(ConnectionId id) const { return endpoint_->IsEstablished(id); }
  absl::StatusOr<udp::SocketAddress> PeerOf(ConnectionId id) const {
    return endpoint_->PeerOf(id);
  }
  const EndpointStats& endpoint_stats() const { return endpoint_->stats(); }
  // Connections not closed.
  size_t open_connections() const { return endpoint_->open_connections(); }
  // The counters, and the socket's offload state as it is now.
  IoStats io_stats() const;
  absl::Time Now() const { return clock_->Now(); }

 private:
  Runtime(const Options& options, udp::DatagramSocket socket, udp::Poller poller,
          const udp::SocketAddress& local);

  absl::Status Receive();
  // Drains the socket's error queue into Endpoint::OnPeerUnreachable.
  absl::Status ReadSocketErrors();
  // Hands the endpoint's datagrams to the socket, after those still waiting
  // for it; while a full socket buffer refuses them (want_writable_), only
  // when `writable` (its writable event) tries.
  absl::Status SendPending(bool writable = false);
  // Groups the front of pending_ into trains_ (views of segments_); returns
  // how many trains.
  size_t BuildTrains();
  absl::Status Turn(absl::Time deadline, PollResult* result);

  Options options_;
  RealClock real_clock_;
  const Clock* clock_;
  udp::DatagramSocket socket_;
  udp::Poller poller_;
  udp::SocketAddress local_;
  std::unique_ptr<Endpoint> endpoint_;
  // Datagrams taken from the endpoint and not yet sent (the socket's
  // buffer filled): sent from where they lie, trains as one iovec each.
  DatagramBatch pending_;
  bool want_writable_ = false;
  std::vector<Event> held_events_;
  std::vector<uint8_t> buffers_;
  // Reused for every sendmmsg / recvmmsg (no per-call zeroing of addresses).
  std::vector<udp::OutgoingTrain> trains_;
  std::vector<absl::Span<const uint8_t>> segments_;
  std::vector<udp::ReceiveSlot> slots_;
  // Views into slots_ of one RecvBatch's datagrams (Endpoint::OnDatagrams).
  std::vector<ReceivedDatagram> batch_;
  IoStats io_;
};

}  // namespace udpmsg::reliable

#endif  // UDPMSG_RELIABLE_RUNTIME_H_
