// bench::Transport: the one interface every benchmarked transport implements
// (udpmsg, TCP, ENet, raw UDP), so that each measurement (bulk, latency,
// rate) is written once against it.
//
// A Transport is one host: a client with the connections it opened, or a
// server with the connections it accepted (Options::listen), ENet's shape.
// Peers are named by PeerId. Data goes out with Send and comes in through
// Poll, which calls a Handler for every connection, chunk of data and close.
// Message transports (udpmsg, ENet, raw UDP) deliver each Send as one chunk;
// stream transports (TCP, is_stream()) may split and join chunks.
//
// Usage (a client that sends one message and waits for the answer; see
// transports.h for MakeTransport):
//   absl::StatusOr<std::unique_ptr<Transport>> t =
//       MakeTransport(spec, udp::SocketAddress::Any(server.family(), 0), /*listen=*/false);
//   absl::StatusOr<PeerId> peer = (*t)->Connect({server}, absl::Seconds(10));
//   (*t)->Send(*peer, "ping");
//   struct Answer : Transport::Handler {
//     void OnReceived(PeerId, absl::string_view bytes) override { got.append(bytes); }
//     std::string got;
//   } answer;
//   while (answer.got.empty()) (*t)->Poll(absl::Milliseconds(50), answer);
//
// Bounds: every implementation bounds what a peer can make it hold (its
// connections or peers, its per-connection buffers) and says how in its
// header.
//
// Threading: every method from one thread, except Wake(). A Transport owns
// its sockets and closes them on destruction (abruptly: Close with a linger
// first for a clean end).
#ifndef UDPMSG_BENCH_TRANSPORT_H_
#define UDPMSG_BENCH_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "udp/socket_address.h"

namespace udpmsg::bench {

using PeerId = uint64_t;

// What a transport counted on one connection; -1 where it does not know.
struct TransportStats {
  int64_t retransmits = -1;     // udpmsg fragments, TCP segments, ENet packets
  int64_t datagrams_sent = -1;  // packets this end sent (udpmsg: incl. acks)
  int64_t receive_buffer = -1;  // SO_RCVBUF the kernel granted (raw UDP)
};

class Transport {
 public:
  // Receives what Poll found. Called on the polling thread, inside Poll; it
  // may call Send and Close on the same transport.
  class Handler {
   public:
    virtual ~Handler() = default;
    // A peer connected to a listening transport (clients get their peer from
    // Connect instead). `name` is its address, for logs.
    virtual void OnConnected(PeerId peer, const std::string& name) {}
    // Bytes arrived from `peer`: one message, or a piece of a stream.
    virtual void OnReceived(PeerId peer, absl::string_view bytes) = 0;
    // The connection is gone (closed by the peer, timed out, reset).
    // `reason` is printable (peer text escaped).
    virtual void OnClosed(PeerId peer, const std::string& reason) {}
  };

  virtual ~Transport() = default;

  // "udpmsg", "tcp", "enet", "raw UDP": for messages and logs.
  virtual std::string name() const = 0;
  // TCP: received bytes may be split and joined arbitrarily.
  virtual bool is_stream() const = 0;
  // Whether the transport paces itself (congestion or flow control). Raw
  // UDP does not: a sender that outruns its receiver loses datagrams.
  virtual bool paced() const = 0;
  // How much a bulk sender keeps queued (QueuedBytes) to keep the path
  // full, and the size of each Send it makes: the transport's own shape
  // (ENet: packets that fit its MTU, a bounded command queue).
  virtual uint64_t send_window() const = 0;
  virtual size_t chunk_bytes() const = 0;
  // The bound address (a listening transport's to give to clients).
  virtual udp::SocketAddress local_address() const = 0;

  // Opens a connection to the first of `to` that answers (UDP transports use
  // the first address) and waits up to `timeout` for it to be usable.
  // DEADLINE_EXCEEDED when no answer came; UNAVAILABLE when refused;
  // INVALID_ARGUMENT for an address the transport cannot use (ENet: IPv6).
  virtual absl::StatusOr<PeerId> Connect(absl::Span<const udp::SocketAddress> to,
                                         absl::Duration timeout) = 0;

  // Queues `bytes` for `peer`; they leave now or in the next Poll/Drain.
  // RESOURCE_EXHAUSTED when the transport cannot take them now (Poll, then
  // retry); NOT_FOUND for an unknown peer; UNAVAILABLE for a failed send.
  virtual absl::Status Send(PeerId peer, absl::string_view bytes) = 0;
  // The same for `bytes` inside a buffer that `owner` keeps alive: a
  // transport whose library takes such bytes without copying them (udpmsg,
  // reliable/message_bytes.h) holds `owner` until they are acknowledged;
  // the others copy, as Send does (TCP's kernel copies either way).
  virtual absl::Status SendShared(PeerId peer, std::shared_ptr<const void> owner,
                                  absl::string_view bytes) {
    (void)owner;
    return Send(peer, bytes);
  }

  // Bytes accepted by Send and not yet acknowledged by `peer` (TCP: not yet
  // handed to the kernel). A sender keeps this under its window; its fall is
  // the transport's progress.
  virtual uint64_t QueuedBytes(PeerId peer) const = 0;

  // Waits up to `timeout` for incoming data, connections, closes or send
  // progress, hands what it found to `handler`, and returns. Returns the
  // transport's fatal errors (the socket failed).
  virtual absl::Status Poll(absl::Duration timeout, Handler& handler) = 0;

  // Blocks until everything queued (on every connection) has left and, on a
  // reliable transport, been acknowledged, or `timeout` passes
  // (DEADLINE_EXCEEDED). Incoming data meanwhile is dropped.
  virtual absl::Status Drain(absl::Duration timeout) = 0;

  // Ends the connection, telling the peer `reason` where the transport can
  // (udpmsg). With a positive `linger`, first delivers what is queued and
  // waits (blocking, up to `linger`) for the peer to see the end; with zero,
  // ends it now. No OnClosed follows for `peer`.
  virtual void Close(PeerId peer, absl::string_view reason, absl::Duration linger) = 0;

  // The counters of the connection to `peer` (NOT_FOUND once it is gone).
  virtual absl::StatusOr<TransportStats> Stats(PeerId peer) const = 0;

  // Makes a Poll blocked in another thread return soon. Thread-safe. The
  // transports without a wake-up (all but udpmsg) return from Poll by its
  // timeout; their servers poll in short steps.
  virtual void Wake() {}
};

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_TRANSPORT_H_
