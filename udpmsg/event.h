// udpmsg events: what Host::Poll reports, and why a connection closed.
//
// Every change an application learns about is an Event: a connection became
// usable (kConnected), a message arrived (kMessage), a reliable message we
// sent was fully acknowledged (kAcked), a connection is gone (kClosed), or
// a client's address changed and the server validated the new one
// (kPathChanged: a NAT rebinding, or the client's Host::Rebind; `old_peer`
// is the address it left, `peer` the new one; servers only, and nothing to
// do: the connection already sends to the new address).
// A closed connection's `close_reason` is the library's own CloseReason,
// never a wire code; `reason` is human-readable detail and `by_peer` says
// which side decided.
//
// Usage:
//   for (udpmsg::Event& e : result->events) {
//     switch (e.type) {
//       case udpmsg::Event::Type::kConnected: ...; break;
//       case udpmsg::Event::Type::kMessage:   Use(e.connection, e.message); break;
//       case udpmsg::Event::Type::kAcked:     break;
//       case udpmsg::Event::Type::kPathChanged: break;  // e.old_peer -> e.peer
//       case udpmsg::Event::Type::kClosed:
//         std::fprintf(stderr, "%s: %s\n",
//                      std::string(udpmsg::CloseReasonName(e.close_reason)).c_str(),
//                      udpmsg::Displayable(e.reason).c_str());  // peer text: escape it
//     }
//   }
//
// Security: `message` and, when `by_peer`, `reason` are bytes from the
// network. Escape them before printing them to a terminal or a log.
//
// Threading: values.
#ifndef UDPMSG_UDPMSG_EVENT_H_
#define UDPMSG_UDPMSG_EVENT_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "reliable/connection.h"
#include "udpmsg/address.h"
#include "udpmsg/options.h"

namespace udpmsg {

// Names one connection of a Host; never reused by that host.
using ConnectionId = reliable::ConnectionId;

// Why a connection closed (see reliable/connection.h for each value):
//   kClosedByApplication  this side called Host::Close
//   kClosedByPeer         the peer's application closed it
//   kIdleTimeout          nothing received for idle_timeout
//   kHandshakeTimeout     connecting took longer than handshake_timeout
//   kPeerTimeout          the peer stopped acknowledging (peer_timeout, max_probes)
//   kServerFull           refused: the server holds max_connections
//   kEncryptionMismatch   one side encrypts and the other does not
//   kWrongRoomKey         room keys differ, or only one side has one
//   kPeerUnreachable      the network reported the peer unreachable while connecting
//   kProtocolError        a peer broke the protocol (or refused our handshake)
//   kNumberSpaceExhausted 2^62 packet numbers used up
//   kInternalError        a bug in this library (our own packet did not encode)
//   kServerIdentityMismatch  the server's identity is not the pinned one
using reliable::CloseReason;
// "closed by application", "idle timeout", ...: stable, for logs.
using reliable::CloseReasonName;
// Every CloseReason, for exhaustive tests and tables.
using reliable::kAllCloseReasons;

// True for the reasons that say a side gave up on a silent path
// (kIdleTimeout, kHandshakeTimeout, kPeerTimeout): ours, or the peer's when
// Event::by_peer (a connection that timed out answers the peer's first
// packets after the outage with its timeout's code; a peer's handshake
// timeout arrives as kIdleTimeout, the wire has one code for both).
inline bool IsTimeout(CloseReason reason) {
  return reason == CloseReason::kIdleTimeout || reason == CloseReason::kHandshakeTimeout ||
         reason == CloseReason::kPeerTimeout;
}

struct Event {
  enum class Type {
    kConnected,  // the handshake is done; Send may be used
    kMessage,    // a message arrived: channel, mode, sequence, message
    kAcked,      // a reliable message we sent is acknowledged: channel, mode, sequence, bytes
    kClosed,     // the connection is gone: close_reason, reason, by_peer
    kPathChanged,  // the peer moved to a validated address: old_peer -> peer
  };
  Type type = Type::kMessage;
  ConnectionId connection = 0;
  SocketAddress peer;
  uint32_t channel = 0;
  DeliveryMode mode = DeliveryMode::kReliableOrdered;
  uint64_t sequence = 0;
  std::string message;  // kMessage: the peer's bytes (escape before printing)
  uint64_t bytes = 0;   // kAcked: the message's size
  CloseReason close_reason = CloseReason::kClosedByApplication;  // kClosed
  std::string reason;   // kClosed: detail; the peer's text when by_peer
  bool by_peer = false; // kClosed: the peer closed (or refused) the connection
  // kConnected on a client: the fingerprint of the identity the server proved
  // ("udpmsg-id:..."), empty when the server has none.
  std::string server_identity;
  // kPathChanged: the address the peer moved from (`peer` is the new one).
  SocketAddress old_peer;
};

// "connected", "message", "acked", "closed", "path changed".
absl::string_view EventTypeName(Event::Type type);

}  // namespace udpmsg

#endif  // UDPMSG_UDPMSG_EVENT_H_
