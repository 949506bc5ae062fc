// LocalRoom: a Room (room.h) for the shards of one process: the roster and
// the log in memory behind one mutex, lines numbered by a Sequencer under
// it, each shard's cursor into the log, and a wake callback per shard.
//
// Usage:
//   auto room = std::make_shared<chat::LocalRoom>(limits,
//                                                 std::make_unique<chat::LocalSequencer>());
//   const int shard = room->AddShard([&host] { host.Wake(); });
//
// Memory: per member what RoomState keeps (about 150 bytes), and a probe
// record while one runs; the log holds each line once until every shard
// has read it (max_log_bytes for said lines, see room.h).
//
// Ownership: owns its Sequencer. Threading: thread-safe (one mutex; wake
// callbacks run after it is released). AddShard only before other calls.
#ifndef UDPMSG_APPS_CHAT_LOCAL_ROOM_H_
#define UDPMSG_APPS_CHAT_LOCAL_ROOM_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "apps/chat/chat.pb.h"
#include "apps/chat/room.h"
#include "apps/chat/room_state.h"
#include "apps/chat/sequencer.h"

namespace udpmsg::chat {

class LocalRoom final : public RoomWithState {
 public:
  LocalRoom(const RoomLimits& limits, std::unique_ptr<Sequencer> sequencer);
  LocalRoom(const LocalRoom&) = delete;
  LocalRoom& operator=(const LocalRoom&) = delete;

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

  // Bytes of lines the log holds (tests).
  uint64_t log_bytes() const;

 private:
  // Numbers `line`, appends it for everyone (to == 0) or for `to` and
  // `from`, and returns the wake callbacks to run once unlocked.
  std::vector<const std::function<void()>*> Append(int shard, absl::Time now, Line line,
                                                   MemberId to, MemberId from);

  const RoomLimits limits_;
  // Everything below but last_index_ is guarded by mu_ (RoomWithState's;
  // its state_ holds every member: the roster).
  std::unique_ptr<Sequencer> sequencer_;
  MemberId joins_ = 0;
  std::deque<RoomEntry> log_;
  uint64_t log_bytes_ = 0;
  bool closed_ = false;
  std::atomic<uint64_t> last_index_{0};
};

}  // namespace udpmsg::chat

#endif  // UDPMSG_APPS_CHAT_LOCAL_ROOM_H_
