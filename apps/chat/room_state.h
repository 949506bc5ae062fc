// RoomState: what a Room (room.h) keeps in this process, shared by LocalRoom
// and RedisRoom: this process's members (nick, address key, shard, a hash of
// the resume token), the probes of nick holders, and the shards with their
// read cursors, wake callbacks and notices. The rooms differ only in where
// the log and the room-wide roster live (memory, or Redis).
//
// Usage (inside a room, under its mutex):
//   RoomState::Verdict v = state_.CheckJoin(request, now, limits_);
//   if (v.result != Room::Result::kOk) ...;
//   if (v.replace != 0) { RoomState::Member old = *state_.Erase(v.replace); ... }
//   state_.Add(id, {request.nick, request.address_key, shard, RoomState::TokenHash(...)});
//
// Memory: per member its nick, address key and a 32-byte token hash (about
// 150 bytes with the indexes), a probe record while one runs, and a
// counter per address.
//
// Not thread-safe: the owning room calls it under its own mutex;
// notice_count() alone may be read without it.
#ifndef UDPMSG_APPS_CHAT_ROOM_STATE_H_
#define UDPMSG_APPS_CHAT_ROOM_STATE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "apps/chat/room.h"

namespace udpmsg::chat {

class RoomState {
 public:
  struct Member {
    std::string nick;
    std::string address_key;
    int shard = 0;
    std::string token_hash;  // TokenHash of its resume token; "" for none
  };
  struct Shard {
    std::function<void()> wake;
    uint64_t read = 0;   // the last log index it read
    bool woken = false;  // woken since it last read
    std::vector<RoomNotice> notices;
  };
  // CheckJoin's answer: kOk (with `replace`, the member here whose nick the
  // join takes over, or 0), kProbe (with `holder`), kNickTaken, kFull or
  // kAddressFull.
  struct Verdict {
    Room::Result result = Room::Result::kOk;
    MemberId replace = 0;
    MemberId holder = 0;
  };

  // The hash a member's resume token is kept and compared as (BLAKE2b-128,
  // hex): the token itself is never stored. "" for anything but a token of
  // kResumeTokenBytes.
  static std::string TokenHash(const std::string& token);

  // Room::Join's checks against the members here, in its order: a nick held
  // here (ignoring case) is taken over when the request presents the
  // holder's token or names it in `takeover` after an unanswered probe;
  // otherwise kProbe if the holder comes from the same address key (and
  // was not probed for this request), kNickTaken if not; then kFull
  // (limits.max_members here, unless replacing) and kAddressFull.
  Verdict CheckJoin(const JoinRequest& request, absl::Time now, const RoomLimits& limits) const;
  void Add(MemberId id, Member member);
  // Removes `id` and its probe; nullopt when unknown.
  std::optional<Member> Erase(MemberId id);
  // `id` is now called `nick` (a checked nick nobody else here holds).
  void Rename(MemberId id, const std::string& nick);
  const Member* Find(MemberId id) const;
  // The member here holding `nick` (ignoring case), 0 if none.
  MemberId Holder(const std::string& nick) const;
  // In member number order (join order).
  const absl::btree_map<MemberId, Member>& members() const { return members_; }

  // Starts a probe of `holder` lasting `timeout`, one at a time: returns
  // when it ends (a running probe's end; `now` when `holder` is not here)
  // and sets *notify to the holder's shard's wake when a probe started and
  // that shard is not `shard` (the caller runs it unlocked), else null.
  absl::Time StartProbe(int shard, MemberId holder, absl::Time now, absl::Duration timeout,
                        const std::function<void()>** notify);
  // The probed member showed life; nothing if it is not probed.
  void Alive(MemberId id);

  int AddShard(std::function<void()> wake, uint64_t read);
  Shard& shard(int i) { return shards_.at(static_cast<size_t>(i)); }
  size_t shard_count() const { return shards_.size(); }
  // Queues `notice` for `shard`; returns its wake callback (null if none).
  const std::function<void()>* Notice(int shard, RoomNotice notice);
  // Notices ever queued (read without the room's lock).
  uint64_t notice_count() const { return notices_.load(std::memory_order_acquire); }
  void TakeNotices(int shard, std::vector<RoomNotice>* out);
  // Wakes (appends the callbacks of) every shard but `shard` not woken
  // since it last read, and marks them woken.
  void WakeOthers(int shard, std::vector<const std::function<void()>*>* wakes);
  // The lowest read cursor over the shards.
  uint64_t OldestRead() const;

 private:
  struct Probe {
    absl::Time until;
    bool alive = false;
  };
  absl::btree_map<MemberId, Member> members_;
  absl::flat_hash_map<std::string, MemberId> by_nick_;  // NickKey ->
  absl::flat_hash_map<std::string, size_t> by_address_;
  absl::flat_hash_map<MemberId, Probe> probes_;  // at most one per member
  std::vector<Shard> shards_;
  std::atomic<uint64_t> notices_{0};
};

// The Room methods LocalRoom and RedisRoom answer from their RoomState
// alone (probes, notices, this process's members), and the lock that guards
// it. Derived rooms take mu_ before touching state_.
class RoomWithState : public Room {
 public:
  absl::Time StartProbe(int shard, absl::Time now, MemberId holder,
                        absl::Duration timeout) override;
  void Alive(MemberId id) override;
  uint64_t notice_count() const override { return state_.notice_count(); }
  void TakeNotices(int shard, std::vector<RoomNotice>* out) override;
  // This process's members.
  uint64_t member_count() const override;
  std::string NickOf(MemberId id) const override;
  std::vector<std::string> Members() const override;

 protected:
  // This process's members as a Roster (mu_ held).
  Roster LocalRosterLocked() const;
  static void Wake(const std::vector<const std::function<void()>*>& wakes);

  // std::mutex, not absl::Mutex: the system's Abseil is not built for
  // TSan, which would not see its locks.
  mutable std::mutex mu_;
  RoomState state_;  // guarded by mu_ (but its notice_count)
};

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_ROOM_STATE_H_
