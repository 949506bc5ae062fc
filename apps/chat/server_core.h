// ServerCore: the chat server as a sans-I/O state machine. It keeps its
// members (and who is waiting to join), checks every message a peer sends,
// and delivers every line in one total order taken from a Sequencer. The
// room itself (the roster, nicks, the numbered lines) lives in a Room
// (room.h): a core made with a Sequencer has a room of its own; the shards
// of a server that runs on several threads are one core each over one
// shared Room, each fanning the room's lines out to its own members. It never touches a socket, a clock or a terminal: the
// driver (cli/chat.cc over reliable::Runtime, tests over the simulator) feeds
// it transport events with the time, and carries out the actions it emits.
//
// Usage (a driver):
//   absl::StatusOr<std::unique_ptr<chat::ServerCore>> core =
//       chat::ServerCore::Create(options, std::make_unique<chat::LocalSequencer>());
//   // for each transport event:
//   (*core)->OnConnected(now, id, peer.ToString());      // handshake done
//   (*core)->OnMessage(now, id, bytes);                  // channel kChannel
//   (*core)->OnAcked(now, id, bytes);                    // kAcked on kChannel
//   (*core)->OnClosed(now, id, chat::CloseCause::kLost, reason);
//   (*core)->OnTick(now);                                // at NextDeadline()
//   (*core)->OnRoom(now);         // a shard, each loop turn: other shards' lines
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
//     taken", close; unless it presents the holder's resume token (the nick
//     is taken over at once: the holder is closed "replaced by a new
//     connection", no leave line, the room sees "X reconnected"), or the
//     holder comes from the same address key and stays silent through a
//     probe (a Probe message; nothing acknowledged or received from it
//     within probe_timeout: taken over the same way). A Join waiting for its
//     probe ignores the peer's other messages;
//   - no Join within join_timeout: close "no Join" (no Error message);
//   - a connection while max_pending others wait to join: close "too many
//     connections waiting to join" at once;
//   - a connection while max_members_per_address others from its address
//     (AddressKey: IPv4 address, IPv6 /64) wait to join: close "too many
//     connections from your address waiting to join" at once;
//   - a Join while max_members_per_address members come from its address:
//     fatal Error "too many members from your address (at most N)", close;
//   - anything after a refusal: ignored.
//   After joining (a "member"):
//   - any message but Leave beyond the member's rate (line_rate messages
//     and byte_rate bytes per second, bursts of line_burst and byte_burst):
//     Error "slow down: ..." (not fatal); the message goes nowhere;
//   - more than flood_tolerance such refusals (they refill at line_rate):
//     close "flooding: too many messages over the rate limit", the member
//     leaves with "flooding";
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
// Addresses: a member's address key is the address it joined from, kept in
// the room's roster for the per-address limits and the same-address nick
// probe. A member whose connection later moves (a NAT rebinding, validated
// by the transport: Event::kPathChanged) keeps that key until it leaves:
// the limits are admission rules (a join from the new address counts that
// address as usual), the roster may be shared across shards and servers
// (RedisRoom), and the transport already sends to the new address. The
// connection is the member's identity, not its address.
//
// Bounds: at most max_members members and max_pending pending connections.
// Per member the core holds its nick (at most kMaxNickBytes), id, address
// key, three token buckets and its backlog (allocated only while it holds
// something): about 400 bytes for an idle member of a 100,000-member room
// (server_core_memory_test prints the figure); per pending connection its
// address text (cut at kMaxAddressBytes) and the time it connected, and
// while it waits for a probe its Join (a checked nick and a token).
// Work per event: O(log members) for a join, leave, rename, /who or a
// pending connection's timer, plus the fan-out of the line it makes
// (O(members) for a line to the room: inherently one send per member); a
// Welcome or WhoReply lists at most kMaxListedNicks nicks beside the
// room's size. Joins and leaves are announced to the room only while it
// has at most announce_limit members (in a large room they would make a
// join cost O(members) and mass joins O(members^2)). Incoming messages are
// handled within one call and never buffered. Outgoing: every message to a
// member waits in its backlog, and a line to many members is encoded once
// and shared by all their backlogs (memory O(lines retained), not O(lines x
// members)). A member's backlog goes to the driver (kSend) only while less
// than send_window_bytes of it is unacknowledged, so the transport holds at
// most send_window_bytes plus one message per member. A member whose
// backlog exceeds max_backlog_bytes or max_backlog_lines is closed
// "dropped: cannot keep up" and leaves with "dropped"; while held_bytes()
// exceeds max_held_bytes the member with the longest backlog is dropped the
// same way (checked at the end of every call). The rate limit keeps honest
// members far from these bounds: a flood is refused before it is fanned out.
// A full transport queue is still reported with OnSendFailed (same drop).
// TakeActions' queue holds what one call produced: the lines the room
// numbered since the previous call (one, on a core with its own room; on a
// shard, also those other shards added meanwhile, which the room's log
// bounds) to each member within its window, plus a Welcome or WhoReply, or
// on Shutdown every backlog.
//
// Shards: ServerCore::Create(options, room, shard) makes one shard of a
// room other cores share (each from its own thread). Refusals that concern
// the room (full, a taken nick, members per address) are the room's, across
// shards; pending connections and their per-address limit are per shard.
// A member receives the room's lines from its own join line on, in number
// order, whichever shard added them; /who and Welcome show the room. The
// room's limits are the Room's (RoomLimits): this core's max_members,
// max_members_per_address and announce_limit only shape a room it makes for
// itself. Lines the room refuses because its log is full (shards behind)
// get a non-fatal Error "the room is busy: that message was not sent".
//
// Ownership: owns its Sequencer (through its own room) or shares the Room.
// Not thread-safe: one driver thread per core.
#ifndef UDPMSG_APPS_CHAT_SERVER_CORE_H_
#define UDPMSG_APPS_CHAT_SERVER_CORE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/rules.h"
#include "apps/chat/room.h"
#include "apps/chat/sequencer.h"
#include "apps/chat/token_bucket.h"

namespace udpmsg::chat {

// The driver's id for one peer connection (reliable::ConnectionId in the
// CLI). Never 0 for a real peer.
using PeerId = uint64_t;

// Longest address text kept for a log line.
inline constexpr size_t kMaxAddressBytes = 128;
// Longest close reason a held member keeps for its leave line (the
// transport's own bound, proto::kMaxReasonBytes).
inline constexpr size_t kMaxHeldDetailBytes = 256;
// Smallest ServerOptions::byte_burst: one longest line fits.
inline constexpr uint64_t kMinByteBurst = 8 << 10;
// Smallest ServerOptions::max_backlog_bytes: a Welcome or WhoReply of a full
// room fits.
inline constexpr uint64_t kMinBacklogBytes = 64 << 10;
// What ServerCore::held_bytes charges per backlog entry besides the line.
inline constexpr uint64_t kBacklogEntryBytes = 32;

struct ServerOptions {
  // A connection that has not sent a Join this long after connecting is
  // closed (checked by OnTick).
  absl::Duration join_timeout = absl::Seconds(10);
  // Members in the room at most: 1..kMaxMembersLimit.
  size_t max_members = 256;
  // Join and leave lines go to the room while it has at most this many
  // members (counting the one joining or leaving); beyond it they are only
  // logged, and members learn the room's size from Welcome and /who.
  // 0: never announced. Renames and lines are always delivered.
  size_t announce_limit = kMaxMembersLimit;
  // Connections waiting to join at most (>= 1).
  size_t max_pending = 64;
  // Members from one address at most, and, separately, connections from one
  // address waiting to join: 1..kMaxMembersLimit. An address is an IPv4
  // address or an IPv6 /64 (AddressKey), so one host cannot take every slot.
  size_t max_members_per_address = 8;

  // Taking a nick back (docs/security.md). A Join for a nick whose holder
  // comes from the same address (AddressKey) probes the holder: a Probe
  // message, and the holder keeps its nick if anything (an acknowledgement,
  // a message) comes from it within probe_timeout; otherwise the new
  // connection takes the nick over. A Join presenting the holder's resume
  // token (from its Welcome) takes it over at once, from any address.
  // 2 s: with 1 s a live member lost its nick to a same-address join when
  // the server and the member's host were loaded (chat_test on a busy
  // 2-CPU machine: the probe's answer took over a second to be seen, about
  // one run in four); a restarted member waits one more second instead.
  absl::Duration probe_timeout = absl::Seconds(2);  // > 0
  // A member whose client gave up on its connection (CloseCause::kPeerTimedOut:
  // the client's transport timed out, and told us when our next packet
  // reached it) is held this long for its resume token, silent, before it
  // leaves with "timed out": a client that lost the path reconnects with
  // the token and finds its nick and its place, and the room sees "X
  // reconnected", not a leave and a join. Such a client answers the server's
  // first packet after the outage with its timeout, and that raced its new
  // connection: the member was gone 0.2 s before the token came (seed 4 of
  // SessionSimTest.AReconnectWithTheResumeTokenTakesTheNickBackAtOnce).
  // While held, a member is sent nothing (what it misses is lost, as for a
  // member whose connection is silently dead: lines come back only as far
  // as the room keeps history, private lines not at all) and holds its
  // slot; a Join from another address without the token is refused, and a
  // same-address Join probes it as any member (it cannot answer: the nick
  // is handed over after probe_timeout). 10 s: as long as the server keeps
  // a silent member with the default --timeout. 0: leaves at once.
  absl::Duration resume_grace = absl::Seconds(10);  // >= 0
  // kResumeTokenBytes of unpredictable bytes per call (a Welcome's resume
  // token). Null: std::random_device (the kernel's getrandom on Linux).
  std::function<std::string()> random_token;

  // Per-member send rate limit: two token buckets, one counting messages
  // (lines, renames, who) and one counting their bytes. A message either
  // bucket cannot pay for is refused with a non-fatal Error "slow down: ..."
  // and goes nowhere (it is never queued).
  double line_rate = 5;                 // messages per second sustained (> 0)
  size_t line_burst = 60;               // messages at once (>= 1)
  uint64_t byte_rate = 32 << 10;        // bytes per second sustained (> 0)
  uint64_t byte_burst = 128 << 10;      // bytes at once (>= kMinByteBurst)
  // Refused messages a member may send beyond the limit; they refill at
  // line_rate. The one after them closes the member ("flooding").
  size_t flood_tolerance = 100;

  // Fan-out. Each line is encoded once and shared by every member's
  // backlog; a member's lines go to the transport only while fewer than
  // send_window_bytes of them wait for the transport's acknowledgement
  // (OnAcked). A member whose backlog (lines not yet handed over) exceeds
  // max_backlog_bytes or max_backlog_lines is dropped ("cannot keep up"),
  // and while the lines the room holds exceed max_held_bytes the member with
  // the longest backlog is dropped.
  uint64_t send_window_bytes = 256 << 10;   // >= 1
  uint64_t max_backlog_bytes = 4 << 20;     // >= kMinBacklogBytes
  size_t max_backlog_lines = 8192;          // >= 16
  uint64_t max_held_bytes = 32 << 20;       // >= max_backlog_bytes

  // INVALID_ARGUMENT naming the first bad field.
  absl::Status Validate() const;
};

// Why a peer's connection ended, for its leave line.
enum class CloseCause {
  kTimedOut,      // silent too long, or too many retransmissions ("timed out")
  kClosedByPeer,  // the peer closed it ("connection closed")
  kLost,          // anything else on our side ("connection lost")
  kPeerTimedOut,  // the peer's side timed out and said so: its client lost
                  // the path and may come back with its resume token (held
                  // for ServerOptions::resume_grace, then "timed out")
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
  // A server of one room of its own, numbered by `sequencer`.
  // INVALID_ARGUMENT if options.Validate() fails or `sequencer` is null.
  static absl::StatusOr<std::unique_ptr<ServerCore>> Create(const ServerOptions& options,
                                                            std::unique_ptr<Sequencer> sequencer);
  // Shard `shard` (from room->AddShard) of a shared room.
  // INVALID_ARGUMENT if options.Validate() fails or `room` is null.
  static absl::StatusOr<std::unique_ptr<ServerCore>> Create(const ServerOptions& options,
                                                            std::shared_ptr<Room> room, int shard);

  ServerCore(const ServerCore&) = delete;
  ServerCore& operator=(const ServerCore&) = delete;

  // A peer finished its handshake from `address` (for log lines). A known
  // `peer` is ignored.
  void OnConnected(absl::Time now, PeerId peer, absl::string_view address);
  // One message from `peer` (channel kChannel). Unknown peers are ignored.
  void OnMessage(absl::Time now, PeerId peer, absl::string_view bytes);
  // `peer`'s connection is gone; `detail` (the transport's reason, possibly
  // peer text) goes only into the log, escaped. A member closed for
  // kPeerTimedOut is held for resume_grace first (see there).
  void OnClosed(absl::Time now, PeerId peer, CloseCause cause, absl::string_view detail);
  // `bytes` of what the core sent `peer` on kChannel were acknowledged (the
  // transport's kAcked event: one per message, its size): the member's
  // window opens and more of its backlog is sent.
  void OnAcked(absl::Time now, PeerId peer, uint64_t bytes);
  // A send to `peer` failed while its connection was up (its queue is full:
  // it cannot keep up). A member is closed and leaves with "dropped".
  void OnSendFailed(absl::Time now, PeerId peer, absl::string_view why);
  // Closes pending connections older than join_timeout, ends probes, lets
  // held members whose resume_grace ran out leave (and does OnRoom).
  void OnTick(absl::Time now);
  // Fans out the lines other shards added to the room since the last call
  // (cheap when there are none): the driver calls it when the room wakes it
  // and on every loop turn.
  void OnRoom(absl::Time now);
  // When OnTick next has work; InfiniteFuture if none.
  absl::Time NextDeadline() const;
  // Says goodbye: a SYSTEM line "server shutting down" to every member (the
  // room's, once for all shards: Room::Close), then closes members
  // (flushing) and pending connections. The core is empty afterwards.
  void Shutdown(absl::Time now);

  // The actions produced since the last call, in order.
  std::vector<ServerAction> TakeActions();

  // Bytes the core holds for members' backlogs: each retained line once,
  // however many members it waits for, plus kBacklogEntryBytes per backlog
  // entry. At most max_held_bytes plus one fan-out (after every call).
  uint64_t held_bytes() const;
  // Bytes handed to the transport (kSend) and not yet acknowledged, over
  // all members: each member's is below send_window_bytes plus one message.
  uint64_t in_flight_bytes() const;

  // This core's members (a shard's share of the room).
  size_t member_count() const { return order_.size(); }
  size_t pending_count() const { return pending_.size(); }
  // This core's members' nicks in join order (O(members): tests and tools).
  std::vector<std::string> Members() const;
  const Room& room() const { return *room_; }
  // The member's nick, or "" when `peer` is not a member.
  std::string NickOf(PeerId peer) const;

 private:
  // One encoded ServerMessage, shared by every backlog it waits in. Its
  // bytes are charged to the core's held count while it lives.
  class SharedMessage;
  using Backlog = std::deque<std::shared_ptr<const SharedMessage>>;
  // The nick and address key live in the room's roster.
  struct MemberState {
    MemberState(PeerId id, MemberId joined, uint64_t start, const ServerOptions& o,
                absl::Time now);
    size_t backlog_size() const { return backlog == nullptr ? 0 : backlog->size(); }
    PeerId id;
    MemberId joined;  // the room's number for it: its key in order_
    uint64_t start;   // the first room log index it receives
    // Messages not yet handed to the transport; allocated on first use and
    // freed when empty (an empty std::deque holds ~600 bytes).
    std::unique_ptr<Backlog> backlog;
    uint64_t backlog_bytes = 0;  // of the messages in `backlog`
    uint64_t in_flight = 0;      // handed to the transport, not acknowledged
    TokenBucket lines;
    TokenBucket bytes;
    TokenBucket refusals;  // refused messages the member may still send
    bool probed = false;   // a probe is out: report the next sign of life
    // Held for its resume token (resume_grace) since its connection closed:
    // nothing is sent to it; the rest is in held_ (few members ever are).
    bool held = false;
  };
  struct Held {
    absl::Time until;    // its key in held_deadlines_
    std::string detail;  // the transport's reason, for the leave line
  };
  struct Pending {
    std::string address;
    std::string address_key;
    absl::Time since;  // its key in join_deadlines_ is since + join_timeout
    // A Join waiting for the probe of the member holding its nick (a
    // request's takeover != 0); its key in probe_deadlines_ is probe_until.
    std::unique_ptr<JoinRequest> probing;
    absl::Time probe_until;
  };

  ServerCore(const ServerOptions& options, std::shared_ptr<Room> room, int shard);

  void OnJoin(absl::Time now, PeerId peer, const Join& join);
  // Joins `peer` with `request` (a probe's end included), or refuses it.
  void TryJoin(absl::Time now, PeerId peer, JoinRequest request);
  // Carries out the room's notices for this shard's members (replaced:
  // close; probe: send a Probe and watch for life).
  void TakeNotices();
  // Removes a member's state here (not from the room).
  void Forget(PeerId peer);
  // Drops what the member has in flight and waiting, from the core's counts
  // too (Forget, Hold).
  void DropQueued(PeerId peer, MemberState& member);
  std::string NewToken();
  void OnRename(absl::Time now, PeerId peer, MemberState& member, const std::string& nick);
  // Answers a line the room refused (kBusy, kNoSuchNick, ...).
  void Refused(PeerId peer, Room::Result result, const std::string& to);
  // Reads the room's new lines and fans each out to its members here.
  void Drain();
  // Whether the member may send a message of `size` bytes now (takes its
  // tokens); otherwise answers "slow down" or closes it for flooding.
  bool Admit(absl::Time now, PeerId peer, MemberState& member, size_t size);
  // `address` by value: Refuse erases the pending entry it may come from.
  void Refuse(PeerId peer, std::string address, const std::string& why);
  void ErasePending(PeerId peer);
  void SendError(PeerId peer, const std::string& text);
  // To a member: through its backlog. To anyone else: at once.
  void Send(PeerId peer, std::string bytes);
  void Enqueue(PeerId peer, MemberState& member, std::shared_ptr<const SharedMessage> message);
  // Hands the member's backlog to the transport while its window allows
  // (all of it with `all`).
  void Pump(PeerId peer, MemberState& member, bool all);
  // Drops members over their backlog bound, then, while the room holds more
  // than max_held_bytes, the member with the longest backlog.
  void DropLaggards(absl::Time now);
  void EmitSend(PeerId peer, std::string bytes);
  void Close(PeerId peer, std::string reason, bool flush);
  void Log(std::string text);
  void Remove(absl::Time now, PeerId peer, const std::string& why, absl::string_view detail);
  // Holds a member whose client timed out for resume_grace (silent).
  void Hold(absl::Time now, PeerId peer, MemberState& member, absl::string_view detail);
  static std::string Count(uint64_t members);

  const ServerOptions options_;
  const std::shared_ptr<Room> room_;
  const int shard_;
  uint64_t read_ = 0;                // the last room log index fanned out
  std::vector<RoomEntry> entries_;  // Drain's, kept for its capacity
  // Declared before the members so that it outlives their backlogs.
  uint64_t held_message_bytes_ = 0;  // bytes of live SharedMessages
  uint64_t backlog_entries_ = 0;     // over all backlogs
  uint64_t in_flight_bytes_ = 0;     // over all members
  absl::node_hash_map<PeerId, MemberState> members_;  // stable addresses
  absl::btree_map<MemberId, MemberState*> order_;      // room number -> member
  absl::flat_hash_set<PeerId> backlogged_;             // members with a backlog
  absl::flat_hash_map<PeerId, Pending> pending_;       // connected, not joined
  absl::btree_set<std::pair<absl::Time, PeerId>> join_deadlines_;  // of pending_
  absl::btree_set<std::pair<absl::Time, PeerId>> probe_deadlines_;  // of pending_
  absl::flat_hash_map<PeerId, Held> held_;                          // members held
  absl::btree_set<std::pair<absl::Time, PeerId>> held_deadlines_;   // of held_
  uint64_t notices_seen_ = 0;  // the room's notice_count() at the last look
  absl::flat_hash_map<std::string, size_t> pending_by_address_;  // AddressKey ->
  std::vector<PeerId> over_backlog_;  // members to drop in DropLaggards
  std::vector<ServerAction> actions_;
};

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_SERVER_CORE_H_
