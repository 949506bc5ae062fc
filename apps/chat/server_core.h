// ServerCore: the chat server as a sans-I/O state machine. It keeps the room
// (members, their nicks, who is waiting to join), checks every message a
// peer sends, and puts every line it delivers into one total order taken
// from a Sequencer. It never touches a socket, a clock or a terminal: the
// driver (cli/chat.cc over reliable::Runtime, tests over the simulator) feeds
// it transport events with the time, and carries out the actions it emits.
//
// Usage (a driver):
//   absl::StatusOr<std::unique_ptr<chat::ServerCore>> core =
//       chat::ServerCore::Create(options, std::make_unique<chat::LocalSequencer>());
//   // for each transport event:
//   (*core)->OnConnected(now, id, peer.ToString());      // handshake done
//   (*core)->OnMessage(now, id, bytes);                  // channel kChannel
//   (*core)->OnClosed(now, id, chat::CloseCause::kLost, reason);
//   (*core)->OnTick(now);                                // at NextDeadline()
//   for (chat::ServerAction& a : (*core)->TakeActions()) {
//     kSend: send a.bytes reliable-ordered on kChannel to a.peer; if that
//            fails while the connection is up, call OnSendFailed(now, a.peer, why)
//            (after running the rest of the batch);
//     kClose: close a.peer with a.reason (a.flush: deliver what is queued first);
//     kLog: print a.text (peer text in it is already escaped).
//   }
//
// Wire format: apps/chat/chat.proto. Every message goes reliable-ordered on
// channel kChannel, so each member receives its lines in increasing Line.seq.
//
// Rejections of peer input (what a peer can make the server do):
//   Before a successful Join (the peer is "pending"):
//   - anything but a parseable ClientMessage holding a Join, or more than
//     kMaxMessageBytes: fatal Error "protocol error: expected Join", close;
//   - a Join whose nick fails CheckNick (empty, over 32 bytes, not printable
//     ASCII without spaces): fatal Error with CheckNick's text, close;
//   - a Join while max_members are in the room: fatal Error "the chat is
//     full (N members)", close;
//   - a Join with a nick taken case-insensitively: fatal Error "nick "X" is
//     taken", close;
//   - no Join within join_timeout: close "no Join" (no Error message);
//   - a connection while max_pending others wait to join: close "too many
//     connections waiting to join" at once;
//   - anything after a refusal: ignored.
//   After joining (a "member"):
//   - bytes that do not parse as a ClientMessage, or more than
//     kMaxMessageBytes: close "protocol error: malformed chat message", the
//     member leaves with "protocol error";
//   - a second Join: Error "already joined as NICK" (not fatal);
//   - Say/Me/Private text failing CheckText (empty, over 4096 bytes): Error
//     with CheckText's text;
//   - Private to a nick not in the room: Error "no member named "X"";
//   - Rename to an invalid nick, to the current nick, or to a taken one:
//     Error with the reason;
//   - a message with no known body (a newer client): Error "empty or unknown
//     message (is the client newer than the server?)".
//   Error texts quote peer text through Displayable.
//
// Bounds: at most max_members members and max_pending pending connections.
// Per member the core holds its nick (at most kMaxNickBytes) and id; per
// pending connection its address text (cut at kMaxAddressBytes) and the time
// it connected. Messages are handled within one call and never buffered;
// outgoing bytes are the driver's to bound (a full send queue is reported
// back with OnSendFailed, which drops the member). TakeActions' queue holds
// what one call produced: at most one line per member plus a Welcome or
// WhoReply (O(max_members * (kMaxTextBytes + overhead))).
//
// Ownership: owns its Sequencer. Not thread-safe: one driver thread.
#ifndef UDPMSG_APPS_CHAT_SERVER_CORE_H_
#define UDPMSG_APPS_CHAT_SERVER_CORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/sequencer.h"

namespace udpmsg::chat {

// The driver's id for one peer connection (reliable::ConnectionId in the
// CLI). Never 0 for a real peer.
using PeerId = uint64_t;

// Longest address text kept for a log line.
inline constexpr size_t kMaxAddressBytes = 128;

struct ServerOptions {
  // A connection that has not sent a Join this long after connecting is
  // closed (checked by OnTick).
  absl::Duration join_timeout = absl::Seconds(10);
  // Members in the room at most: 1..kMaxMembersLimit.
  size_t max_members = 256;
  // Connections waiting to join at most (>= 1).
  size_t max_pending = 64;

  // INVALID_ARGUMENT naming the first bad field.
  absl::Status Validate() const;
};

// Why a peer's connection ended, for its leave line.
enum class CloseCause {
  kTimedOut,      // silent too long, or too many retransmissions ("timed out")
  kClosedByPeer,  // the peer closed it ("connection closed")
  kLost,          // anything else on our side ("connection lost")
};

struct ServerAction {
  enum class Type { kSend, kClose, kLog };
  Type type = Type::kLog;
  PeerId peer = 0;     // kSend, kClose
  std::string bytes;   // kSend: a serialized ServerMessage
  std::string reason;  // kClose: for the transport's close frame
  bool flush = false;  // kClose: deliver what is queued first
  std::string text;    // kLog: one line without newline, peer text escaped
};

class ServerCore final {
 public:
  // INVALID_ARGUMENT if options.Validate() fails or `sequencer` is null.
  static absl::StatusOr<std::unique_ptr<ServerCore>> Create(const ServerOptions& options,
                                                            std::unique_ptr<Sequencer> sequencer);

  ServerCore(const ServerCore&) = delete;
  ServerCore& operator=(const ServerCore&) = delete;

  // A peer finished its handshake from `address` (for log lines). A known
  // `peer` is ignored.
  void OnConnected(absl::Time now, PeerId peer, absl::string_view address);
  // One message from `peer` (channel kChannel). Unknown peers are ignored.
  void OnMessage(absl::Time now, PeerId peer, absl::string_view bytes);
  // `peer`'s connection is gone; `detail` (the transport's reason, possibly
  // peer text) goes only into the log, escaped.
  void OnClosed(absl::Time now, PeerId peer, CloseCause cause, absl::string_view detail);
  // A send to `peer` failed while its connection was up (its queue is full:
  // it cannot keep up). A member is closed and leaves with "dropped".
  void OnSendFailed(absl::Time now, PeerId peer, absl::string_view why);
  // Closes pending connections older than join_timeout.
  void OnTick(absl::Time now);
  // When OnTick next has work; InfiniteFuture if none.
  absl::Time NextDeadline() const;
  // Says goodbye: a SYSTEM line "server shutting down" to every member, then
  // closes members (flushing) and pending connections. The core is empty
  // afterwards.
  void Shutdown(absl::Time now);

  // The actions produced since the last call, in order.
  std::vector<ServerAction> TakeActions();

  size_t member_count() const { return order_.size(); }
  size_t pending_count() const { return pending_.size(); }
  // Nicks in join order.
  std::vector<std::string> Members() const;
  // The member's nick, or "" when `peer` is not a member.
  std::string NickOf(PeerId peer) const;

 private:
  struct Pending {
    std::string address;
    absl::Time since;
  };

  ServerCore(const ServerOptions& options, std::unique_ptr<Sequencer> sequencer);

  void OnJoin(absl::Time now, PeerId peer, const std::string& nick);
  void OnRename(absl::Time now, PeerId peer, const std::string& nick);
  // `address` by value: Refuse erases the pending entry it may come from.
  void Refuse(PeerId peer, std::string address, const std::string& why);
  void SendError(PeerId peer, const std::string& text);
  void Send(PeerId peer, std::string bytes);
  void Close(PeerId peer, std::string reason, bool flush);
  void Log(std::string text);
  void Deliver(absl::Time now, Line line, const std::vector<PeerId>& to);
  void Remove(absl::Time now, PeerId peer, const std::string& why, absl::string_view detail);
  std::string Count() const;

  const ServerOptions options_;
  std::unique_ptr<Sequencer> sequencer_;
  absl::flat_hash_map<PeerId, std::string> members_;  // peer -> nick
  absl::flat_hash_map<std::string, PeerId> by_nick_;  // NickKey -> member
  std::vector<PeerId> order_;                         // members in join order
  absl::flat_hash_map<PeerId, Pending> pending_;      // connected, not joined
  std::vector<ServerAction> actions_;
};

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_SERVER_CORE_H_
