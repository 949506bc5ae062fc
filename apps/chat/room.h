// Room: what the shards of one chat room share. A chat server may run
// several ServerCores (shards, one thread each, each with its own members);
// the room is where they meet: the roster (nicks unique across shards, the
// room's size and join order, members per address), the one total order of
// lines (one Sequencer numbers them), and a log every shard reads from its
// own cursor to fan each line out to its own members. ServerCore stays
// sans-I/O and single-threaded per shard; only the Room is shared.
//
// LocalRoom (local_room.h) keeps all of it in memory behind a mutex, for
// shards in one process; RedisRoom (redis_room.h) keeps the roster and the
// log in Redis (a stream), so one room spans servers behind the same
// interface. Indices need not be dense: they increase in log order.
//
// Usage (one room, N shards, each driven by its own thread):
//   auto room = std::make_shared<chat::LocalRoom>(limits, std::make_unique<chat::LocalSequencer>());
//   for (int i = 0; i < n; ++i) {
//     const int shard = room->AddShard([host = &hosts[i]] { host->Wake(); });
//     cores.push_back(*chat::ServerCore::Create(options, room, shard));
//   }
//   // shard i's thread, each loop turn: core->OnRoom(now) (reads and fans out
//   // what other shards added; cheap when nothing is new).
//
// Every mutating call names the calling shard (`shard`), appends at most one
// line to the log, and wakes every other shard with unread lines (at most
// once until it reads). Lines are numbered by the Sequencer in log order, so
// every shard reads them in number order and every member, on whichever
// shard, receives them in that order.
//
// Bounds: the roster holds each member's nick and address key; the log holds
// lines until every shard has read them, at most max_log_bytes of them for
// lines members say (beyond it Say, Private and Rename answer kBusy, and
// Join too beyond twice that); leaves and the shutdown line are always
// appended (at most one per member, and one).
//
// Threading: every method is thread-safe.
#ifndef UDPMSG_APPS_CHAT_ROOM_H_
#define UDPMSG_APPS_CHAT_ROOM_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "apps/chat/rules.h"

namespace udpmsg::chat {

// A member's number in the room: its place in the room's join order, across
// shards (never 0, never reused).
using MemberId = uint64_t;

// The room-wide limits (ServerOptions has the same fields).
struct RoomLimits {
  size_t max_members = 256;              // 1..kMaxMembersLimit
  size_t max_members_per_address = 8;    // 1..kMaxMembersLimit, by AddressKey
  size_t announce_limit = kMaxMembersLimit;  // see ServerOptions
  uint64_t max_log_bytes = 16 << 20;     // lines waiting for a shard to read them
};

// What a Join asks of the room (Room::Join).
struct JoinRequest {
  std::string nick;         // checked (CheckNick)
  std::string address_key;  // AddressKey of the joining connection
  // The token the client presented (a reconnect), empty if none; only one
  // of exactly kResumeTokenBytes can match.
  std::string resume_token;
  // This membership's token (kResumeTokenBytes, or empty: no resume).
  std::string new_token;
  // After a probe (StartProbe) of `takeover`, the member holding the nick:
  // take the nick over if that member showed no sign of life (Alive).
  uint64_t takeover = 0;
  // The highest line index the client has received (a reconnect), 0 if
  // none: history holds only lines above it.
  uint64_t last_seq = 0;
};

// Something a shard must do for one of its members (TakeNotices).
struct RoomNotice {
  enum class Type {
    kReplaced,  // a new connection took the member's nick: close its connection
    kProbe,     // another connection asks for its nick: probe it, report Alive
    // Tell every member of the shard `text` (a SYSTEM line outside the
    // room's order, seq 0): a room spanning servers lost or regained its
    // store, or this server is shutting down. `member` is 0.
    kAnnounce,
  };
  Type type = Type::kProbe;
  uint64_t member = 0;
  std::string text;  // kAnnounce
};

// One line of the log, as a shard reads it.
struct RoomEntry {
  uint64_t index = 0;  // its place in the log: 1, 2, 3, ...
  // The serialized ServerMessage holding the Line, encoded once for all.
  std::shared_ptr<const std::string> bytes;
  // Everyone (to == 0), or a private line's target and its sender.
  MemberId to = 0;
  MemberId from = 0;
};

// The answer to a join or /who: the room's size and its first members.
struct Roster {
  uint64_t count = 0;
  std::vector<std::string> first;  // at most kMaxListedNicks, in join order
};

class Room {
 public:
  enum class Result {
    kOk,
    kFull,         // max_members are in
    kNickTaken,    // another member has the nick (case-insensitively)
    kAddressFull,  // max_members_per_address come from the address
    kNoSuchNick,   // Private to a nick nobody has
    kBusy,         // the log holds max_log_bytes: shards are behind
    kClosed,       // the room is shutting down
    kProbe,        // Join: the nick's holder comes from the same address
                   // (Joined::holder): probe it, then Join with takeover
    kUnavailable,  // the room's store (Redis) cannot be reached: nothing
                   // was done (or, for a line whose answer was lost, it
                   // may have been; the member is told it was not confirmed)
  };

  struct Joined {
    Result result = Result::kOk;
    MemberId id = 0;     // kOk: the new member's number
    uint64_t start = 0;  // kOk: the first log index it receives (its join line's)
    Roster roster;       // kOk: the room after the join
    // kOk: the member whose nick this join took over (its resume token
    // matched, or it did not answer a probe), 0 for a plain join.
    MemberId replaced = 0;
    MemberId holder = 0;  // kProbe: the member holding the nick
    // kOk: recent lines said before the join, oldest first, for the new
    // member only (a room spanning servers sends its last lines; LocalRoom
    // none). Their indices are below `start` and above request.last_seq.
    std::vector<RoomEntry> history;
  };

  virtual ~Room() = default;

  // Adds a shard before any other call; returns its index. `wake` (may be
  // empty) is called from any thread, without the room's lock held, when
  // lines it has not read arrive; it must be cheap and thread-safe
  // (Host::Wake).
  virtual int AddShard(std::function<void()> wake) = 0;

  // Adds a member with a checked nick (CheckNick) from `address_key`
  // (AddressKey). When another member holds the nick (case-insensitively)
  // the join takes it over if request.resume_token equals that member's
  // token (compared in constant time), or if request.takeover names that
  // member and it showed no life since its probe began; otherwise the answer
  // is kProbe when the holder comes from the same address key and no probe
  // of it has failed yet, kNickTaken when not. A takeover removes the old
  // member without a leave line (a kReplaced notice tells its shard) and
  // appends the SYSTEM line "NICK reconnected" instead of a join line.
  // Refusals in this order: kClosed, kNickTaken or kProbe, kFull,
  // kAddressFull, kBusy. The join line goes to the log while the room has at
  // most announce_limit members.
  virtual Joined Join(int shard, absl::Time now, const JoinRequest& request) = 0;
  // A plain join (no token, no takeover).
  Joined Join(int shard, absl::Time now, const std::string& nick,
              const std::string& address_key) {
    JoinRequest r;
    r.nick = nick;
    r.address_key = address_key;
    return Join(shard, now, r);
  }
  // Starts a probe of `holder` (a kProbe answer's) lasting `timeout`: its
  // shard gets a kProbe notice (woken) and reports any sign of life with
  // Alive. Returns when to Join again with takeover = holder: the running
  // probe's end when one runs, `now` when `holder` is gone.
  virtual absl::Time StartProbe(int shard, absl::Time now, MemberId holder,
                                absl::Duration timeout) = 0;
  // Member `id` showed a sign of life (a message or an acknowledgement)
  // while probed: its nick stays. Unknown or unprobed: nothing happens.
  virtual void Alive(MemberId id) = 0;
  // How many notices were ever posted (cheap: a shard compares it with its
  // last look before taking its notices).
  virtual uint64_t notice_count() const = 0;
  // Appends to `out` and forgets the notices for shard `shard`.
  virtual void TakeNotices(int shard, std::vector<RoomNotice>* out) = 0;
  // Removes member `id` (unknown: nothing happens) with the leave line's
  // `why` ("" for a plain Leave), announced while the room had at most
  // announce_limit members. Returns the members left.
  virtual uint64_t Leave(int shard, absl::Time now, MemberId id, const std::string& why) = 0;
  // Renames `id` to a checked nick: kNickTaken, kBusy, kClosed, or kOk with
  // the rename line in the log.
  virtual Result Rename(int shard, absl::Time now, MemberId id, const std::string& nick) = 0;
  // A SAY or ME line from `id` (checked text): kBusy, kClosed or kOk.
  virtual Result Say(int shard, absl::Time now, MemberId id, bool me, const std::string& text) = 0;
  // A PRIVATE line from `id` to the member called `to` (any case):
  // kNoSuchNick, kBusy, kClosed or kOk.
  virtual Result Private(int shard, absl::Time now, MemberId id, const std::string& to,
                         const std::string& text) = 0;
  // Appends the SYSTEM line "server shutting down" once and refuses
  // everything but Leave afterwards (kClosed). Idempotent: true for the
  // call that closed the room.
  virtual bool Close(int shard, absl::Time now) = 0;

  virtual Roster Who() const = 0;
  virtual uint64_t member_count() const = 0;
  // The nick of member `id`, "" when unknown.
  virtual std::string NickOf(MemberId id) const = 0;
  // Every nick in join order (O(members): tests and tools).
  virtual std::vector<std::string> Members() const = 0;

  // The index of the newest line in the log (0 when none yet): cheap, for a
  // shard to see whether there is anything to read.
  virtual uint64_t last_index() const = 0;
  // Appends to `out` every line shard `shard` has not read, in log order,
  // and marks them read (the log forgets a line every shard has read).
  virtual void Read(int shard, std::vector<RoomEntry>* out) = 0;
};

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_ROOM_H_
