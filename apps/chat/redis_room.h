// RedisRoom: a Room (room.h) kept in Redis, so that one chat room spans
// several chat servers (`udpmsg chat serve --cluster redis://HOST:PORT/ROOM`).
// The room's one total order is a Redis stream: every server appends its
// members' lines to it (one Lua script numbers each line and XADDs it
// atomically) and reads it back (XREAD BLOCK) to fan every line out to its
// own members in stream order, so members on different servers see the same
// lines in the same order with the same numbers. Nicks are unique across
// servers (one key per nick), /who lists the whole room, private lines reach
// their target on whichever server holds it, and a member who joins gets the
// room's last `history_lines` public lines first.
//
// Usage (one per chat server, its shards added before Start):
//   RedisRoomOptions o;
//   o.endpoint = url->endpoint; o.room = url->path; o.limits = limits;
//   absl::StatusOr<std::shared_ptr<chat::RedisRoom>> room = chat::RedisRoom::Create(o);
//   const int shard = (*room)->AddShard([&host] { host.Wake(); });
//   (*room)->Start();           // the reader thread
//   ... ServerCore::Create(options, *room, shard) per shard, as with LocalRoom ...
//   (*room)->Stop();            // after the shards' Shutdown: leaves the room
//
// Keys (all under "udpmsg:chat:{ROOM}:", one hash slot, so Redis Cluster
// keeps a room on one node): `log` the stream (trimmed, MAXLEN ~
// max_stream_lines), `seq` the line counter, `ids` the member counter,
// `nick:<nick>` the holder of a nick ("SERVER ID TOKENHASH NICK"),
// `who:<server>` a server's members (a sorted set by member number),
// `alive:<server>` a key each server refreshes every `heartbeat` with expiry
// `alive_ttl`, `servers` the set of servers, `gone:<server>` the members
// other servers settled for that server while it seemed dead (tombstones;
// the key expires a day after its last entry, and its server deletes it at
// Create and Stop), `tok:<token hash>` the server and number of a member
// the reaper settled, for a join with its resume token (a day).
//
// Failures (docs/cluster.md):
// - Redis unreachable at Create: UNAVAILABLE naming HOST:PORT and the reason.
// - Redis lost while running: every shard's members get a SYSTEM notice
//   (seq 0); Join, Say, Me, Private and Rename answer kUnavailable (the
//   member is told its line was not sent, never silently dropped); leaves
//   wait and are written when it is back. The reader reconnects with
//   backoff (100 ms doubling to max_backoff, jittered), re-registers this
//   server's members, and reads on from the last stream id it delivered, so
//   no member misses or repeats a line (with Redis's own persistence: a
//   Redis that comes back without its data is detected and announced).
// - A server that stops refreshing its `alive` key (killed, cut off) loses
//   its members within alive_ttl + heartbeat: its nicks are free at once
//   for joins, and the first live server to notice appends a leave line
//   "server lost" for each of them and deletes its roster. A nick taken
//   before that settles its old holder first: with the holder's resume
//   token the join is a reconnect ("NICK reconnected"), otherwise the
//   holder's leave line comes before the join (or rename) line.
// - A server that was only stalled (paused, cut off from Redis past
//   alive_ttl) and resumes finds what others settled for it (reaped, or a
//   nick taken before the reaper came) at its next heartbeat: its members
//   still here come back into the roster, with "NICK reconnected" where the
//   room was told they left ("server lost"; not over the announce limit),
//   a member whose nick someone else holds now (or whose resume token took
//   it over elsewhere, before or after the reaper) is closed without a
//   line, and a member that left meanwhile writes no second leave line.
//   Its shards' calls wait while it writes its members back. Until then a
//   member that is off the roster (reaped) writes no line (Redis checks),
//   so none comes before its "NICK reconnected"; and from 95% of alive_ttl
//   after its last answered heartbeat the shards' calls are refused as when
//   Redis is lost (its members told), until the heartbeat is answered.
// - A Redis that refuses writes (an error reply such as READONLY,
//   NOREPLICAS or LOADING, to a heartbeat or to any call) counts as lost.
//
// Limits: RoomLimits count this server's members (max_members, per address,
// announce_limit); max_log_bytes bounds lines read from the stream that a
// shard has not fanned out yet (beyond it Say and friends answer kBusy and
// the reader stops reading, its heartbeat going on). member_count, NickOf
// and Members are this server's; Who is the room's (this server's members
// only while Redis is lost).
// Probing a nick's holder (kProbe) works when the holder is on this server;
// elsewhere a nick is taken over only with its resume token.
//
// Trust: the servers of a room and its Redis trust each other (a server
// writes what it likes to the stream); members are checked by ServerCore as
// always, and their text is escaped before any terminal or log.
//
// Threading: every method is thread-safe. A shard's call makes one Redis
// round trip (EVALSHA; `timeout` at most) on that shard's own connection,
// so shards do not queue for each other; the reader thread has its own.
// The exception is the reader writing this server's members back (after a
// stall or a loss of Redis): every shard's call waits for it, one pipeline.
#ifndef UDPMSG_APPS_CHAT_REDIS_ROOM_H_
#define UDPMSG_APPS_CHAT_REDIS_ROOM_H_

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "apps/chat/room.h"
#include "apps/chat/room_state.h"
#include "redis/client.h"

namespace udpmsg::chat {

struct RedisRoomOptions {
  redis::Endpoint endpoint;
  // The room's name: 1..64 of [A-Za-z0-9_.-].
  std::string room;
  RoomLimits limits;  // this server's (see above)
  // Public lines a joining member receives first (0..1000).
  size_t history_lines = 100;
  // The stream is trimmed to about this many lines (>= history_lines, >= 100).
  uint64_t max_stream_lines = 10000;
  // A server silent this long is gone: its members leave (>= 3 heartbeats).
  absl::Duration alive_ttl = absl::Seconds(10);
  absl::Duration heartbeat = absl::Seconds(2);
  // Each Redis call at most (connect, command).
  absl::Duration timeout = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(2);
  // This server's name in the room: 1..40 of [A-Za-z0-9_.-]; empty: random.
  std::string server_id;
  // Operator log lines (store lost or back, servers reaped); may be empty.
  // Called from any thread.
  std::function<void(std::string)> log;

  // INVALID_ARGUMENT naming the first bad field.
  absl::Status Validate() const;
};

class RedisRoom final : public RoomWithState {
 public:
  // Connects, checks the room's keys and registers this server.
  // INVALID_ARGUMENT for bad options, UNAVAILABLE / PERMISSION_DENIED from
  // Redis (naming HOST:PORT).
  static absl::StatusOr<std::shared_ptr<RedisRoom>> Create(const RedisRoomOptions& options);
  ~RedisRoom() override;
  RedisRoom(const RedisRoom&) = delete;
  RedisRoom& operator=(const RedisRoom&) = delete;

  // Starts the reader thread (after AddShard). Idempotent.
  void Start();
  // Stops the reader and removes this server from the room (its alive key,
  // roster and registration; best effort when Redis is lost). Members still
  // here are not announced: call the shards' Shutdown first. Idempotent.
  void Stop();

  int AddShard(std::function<void()> wake) override;
  using Room::Join;
  Joined Join(int shard, absl::Time now, const JoinRequest& request) override;
  uint64_t Leave(int shard, absl::Time now, MemberId id, const std::string& why) override;
  Result Rename(int shard, absl::Time now, MemberId id, const std::string& nick) override;
  Result Say(int shard, absl::Time now, MemberId id, bool me, const std::string& text) override;
  Result Private(int shard, absl::Time now, MemberId id, const std::string& to,
                 const std::string& text) override;
  bool Close(int shard, absl::Time now) override;
  Roster Who() const override;
  uint64_t last_index() const override { return last_index_.load(std::memory_order_acquire); }
  void Read(int shard, std::vector<RoomEntry>* out) override;

  const std::string& server_id() const { return options_.server_id; }
  // Whether Redis answers (false from a failed call until the reader has
  // reconnected and re-registered).
  bool available() const { return available_.load(std::memory_order_acquire); }
  // Lines read from the stream so far (tests, benchmarks).
  uint64_t lines_read() const { return lines_read_.load(std::memory_order_acquire); }

 private:
  struct PendingLeave {
    MemberId id;
    std::string nick;
    std::string why;
    bool announce;
    std::string token_hash;  // StoredHash: '-' for none
  };

  explicit RedisRoom(const RedisRoomOptions& options);
  std::string Key(const std::string& name) const { return prefix_ + name; }
  // kLeave's EVAL for leave `l` (Leave, and Reclaim's leaves that waited).
  std::vector<std::string> LeaveCall(absl::Time now, const PendingLeave& l) const;
  // EVAL of one of the scripts with the common keys and arguments first.
  std::vector<std::string> Eval(const char* script, absl::Time now,
                                const std::vector<std::string>& keys,
                                const std::vector<std::string>& args) const;
  // A connection for calls: one per shard (slot shard + 1), slot 0 for
  // calls without a shard (Create, Who, Stop). Its mutex orders the calls
  // of its shard and is held across one method (lock order: a Cmd's mutex,
  // then mu_; Reclaim alone holds every Cmd's, in slot order, then mu_).
  struct Cmd {
    std::mutex mu;
    std::unique_ptr<redis::Connection> conn;
    std::atomic<bool> stale{false};  // conn predates a loss: reconnect first
  };
  Cmd& CmdFor(int shard) const;
  // One call on `cmd` (its mutex held): UNAVAILABLE when Redis is lost (and
  // marks it lost). An EVAL goes as EVALSHA once its script is loaded.
  absl::StatusOr<redis::Reply> Call(Cmd& cmd, const std::vector<std::string>& argv);
  Roster WhoLocked(Cmd& cmd);  // its mutex held
  // Whether member `id` here may add a line (kClosed, kBusy or kOk with its
  // nick): Say's and Private's common check.
  Result Speaker(MemberId id, std::string* nick) const;
  // Redis counts as lost until the reader has reconnected and re-registered:
  // the shards' calls are refused and their members told. `stalled`: not
  // Redis but this server's heartbeat was lost (see alive_until_ns_).
  void MarkLost(const absl::Status& why, bool stalled = false);
  // A call of the reader's failed: MarkLost, and the reader reconnects.
  // Returns false, for the caller to return.
  bool ReaderLost(const absl::Status& why);
  // The steady clock, in nanoseconds (alive_until_ns_'s unit).
  static int64_t SteadyNanos();
  // A heartbeat sent at `sent_ns` (SteadyNanos) was answered: the alive key
  // lasts until at least alive_ttl after it.
  void ConfirmAlive(int64_t sent_ns);
  void ReaderLoop();
  // After a (re)connect of the reader: registers, re-claims members, writes
  // waiting leaves. False if Redis failed meanwhile.
  bool Recover();
  // Writes this server's members back into the roster (nick keys, its
  // who set) and, with `leaves_too`, the leaves that waited; closes members
  // whose nick someone else took meanwhile. `only_missing`: only the
  // members the roster lacks (a heartbeat that found it short). False if
  // Redis failed.
  bool Reclaim(absl::Time now, bool leaves_too, bool only_missing = false);
  bool Heartbeat(absl::Time now);
  void Deliver(const redis::Reply& entries);
  // Cleans what the members ReplacedLocked closed may have left in Redis
  // (kForget). False if Redis failed.
  bool ForgetReplaced(absl::Time now);
  void AnnounceLocked(const std::string& text, std::vector<const std::function<void()>*>* wakes);
  // Member `id` here gave its nick to another connection: it goes without a
  // leave line and its shard is told to close it, and the reader cleans what
  // it may have left in Redis (forget_). False if it is not here.
  bool ReplacedLocked(MemberId id, std::vector<const std::function<void()>*>* wakes);
  void Log(const std::string& line) const;

  const RedisRoomOptions options_;
  const std::string prefix_;

  // Slot 0, then one per shard (added by AddShard, before other calls).
  std::vector<std::unique_ptr<Cmd>> cmds_;
  // The SHA-1 Redis gave each script's text (SCRIPT LOAD), by text.
  mutable std::mutex sha_mu_;
  absl::flat_hash_map<std::string, std::string> shas_;

  // Local state, under RoomWithState's mu_ (lock order: a Cmd's mutex, or
  // all of them in slot order, then mu_); its state_ holds this server's
  // members, probes and shards.
  std::condition_variable cv_;  // the reader's backoff, Stop, log space
  std::vector<PendingLeave> pending_leaves_;
  // Members closed as replaced, with their nicks, for ForgetReplaced: its
  // nick key and roster entry if they still name it (written back before
  // the line that replaced it was read, or a rename after it), and its
  // tombstone. At most one per member.
  std::vector<std::pair<MemberId, std::string>> forget_;
  std::deque<RoomEntry> log_;
  uint64_t log_bytes_ = 0;
  bool closed_ = false;
  bool lost_ = false;  // announced lost, not yet back
  bool stopping_ = false;
  std::atomic<bool> available_{true};
  // Until when this server's alive key surely exists (SteadyNanos): the
  // last answered heartbeat's send time plus 95% of alive_ttl (Redis's
  // clock and ours may differ a little). Past it the room may have taken
  // this server for dead and told its members' leaves, so a shard's call
  // is refused (MarkLost, stalled) until the reader's heartbeat has written
  // the members back: after a pause its shards would otherwise post lines
  // from members the room was told had left, before it reads anything.
  std::atomic<int64_t> alive_until_ns_{0};
  std::atomic<uint64_t> last_index_{0};
  std::atomic<uint64_t> lines_read_{0};

  // index = n + offset_ (moves only if Redis lost its data); under mu_.
  int64_t offset_ = 0;
  // The highest member number this server gave out (under mu_): the member
  // counter is kept above it (kJoin, kHeal), so a Redis that lost its data
  // never hands one of this server's numbers out again here (another server
  // may, before it heals the counter: private lines name their servers).
  MemberId highest_id_ = 0;

  // The reader's (its thread only, after Start).
  std::unique_ptr<redis::Connection> reader_;
  std::string last_id_ = "0-0";  // the last stream id delivered
  uint64_t last_n_ = 0;          // its line number
  absl::Time next_heartbeat_ = absl::InfinitePast();
  std::thread thread_;
  bool started_ = false;
};

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_REDIS_ROOM_H_
