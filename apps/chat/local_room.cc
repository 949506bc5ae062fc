#include "apps/chat/local_room.h"

#include <sodium.h>

#include <algorithm>
#include <utility>

namespace udpmsg::chat {
namespace {

Line MakeLine(Line::Kind kind, const std::string& from, const std::string& text) {
  Line line;
  line.set_kind(kind);
  line.set_from(from);
  line.set_text(text);
  return line;
}

}  // namespace

LocalRoom::LocalRoom(const RoomLimits& limits, std::unique_ptr<Sequencer> sequencer)
    : limits_(limits), sequencer_(std::move(sequencer)) {
  // RoomState::TokenHash needs libsodium initialised (idempotent; its one
  // failure, no entropy source, does not concern hashing).
  const int sodium = sodium_init();
  (void)sodium;
}

int LocalRoom::AddShard(std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(mu_);
  return state_.AddShard(std::move(wake), last_index_.load(std::memory_order_relaxed));
}

std::vector<const std::function<void()>*> LocalRoom::Append(int shard, absl::Time now, Line line,
                                                            MemberId to, MemberId from) {
  line.set_seq(sequencer_->Next());
  line.set_time_ms(absl::ToUnixMillis(now));
  ServerMessage m;
  *m.mutable_line() = std::move(line);
  RoomEntry e;
  e.index = last_index_.load(std::memory_order_relaxed) + 1;
  e.bytes = std::make_shared<const std::string>(m.SerializeAsString());
  e.to = to;
  e.from = from;
  log_bytes_ += e.bytes->size();
  log_.push_back(std::move(e));
  last_index_.store(log_.back().index, std::memory_order_release);
  std::vector<const std::function<void()>*> wakes;
  state_.WakeOthers(shard, &wakes);
  return wakes;
}

Room::Joined LocalRoom::Join(int shard, absl::Time now, const JoinRequest& request) {
  std::vector<const std::function<void()>*> wakes;
  Joined j;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) {
      j.result = Result::kClosed;
      return j;
    }
    const RoomState::Verdict v = state_.CheckJoin(request, now, limits_);
    j.result = v.result;
    j.holder = v.holder;
    if (j.result == Result::kOk && log_bytes_ > 2 * limits_.max_log_bytes) {
      j.result = Result::kBusy;
    }
    if (j.result != Result::kOk) return j;
    if (v.replace != 0) {
      // The old member goes without a leave line; its shard closes it.
      const int old_shard = state_.Erase(v.replace)->shard;
      if (const auto* w = state_.Notice(old_shard, {RoomNotice::Type::kReplaced, v.replace, ""});
          w != nullptr && old_shard != shard) {
        wakes.push_back(w);
      }
      j.replaced = v.replace;
    }
    j.id = ++joins_;
    j.start = last_index_.load(std::memory_order_relaxed) + 1;
    state_.Add(j.id,
               {request.nick, request.address_key, shard, RoomState::TokenHash(request.new_token)});
    j.roster = LocalRosterLocked();
    if (state_.members().size() <= limits_.announce_limit) {
      std::vector<const std::function<void()>*> more =
          v.replace != 0
              ? Append(shard, now, MakeLine(Line::SYSTEM, "", request.nick + " reconnected"), 0, 0)
              : Append(shard, now, MakeLine(Line::JOIN, request.nick, ""), 0, 0);
      for (const auto* w : more) {
        if (std::find(wakes.begin(), wakes.end(), w) == wakes.end()) wakes.push_back(w);
      }
    }
  }
  Wake(wakes);
  return j;
}

uint64_t LocalRoom::Leave(int shard, absl::Time now, MemberId id, const std::string& why) {
  std::vector<const std::function<void()>*> wakes;
  uint64_t left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::optional<RoomState::Member> gone = state_.Erase(id);
    left = state_.members().size();
    if (!gone.has_value()) return left;
    if (!closed_ && left + 1 <= limits_.announce_limit) {
      wakes = Append(shard, now, MakeLine(Line::LEAVE, gone->nick, why), 0, 0);
    }
  }
  Wake(wakes);
  return left;
}

Room::Result LocalRoom::Rename(int shard, absl::Time now, MemberId id, const std::string& nick) {
  std::vector<const std::function<void()>*> wakes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const RoomState::Member* m = state_.Find(id);
    if (closed_ || m == nullptr) return Result::kClosed;
    const MemberId holder = state_.Holder(nick);
    if (holder != 0 && holder != id) return Result::kNickTaken;
    if (log_bytes_ > limits_.max_log_bytes) return Result::kBusy;
    const std::string old = m->nick;
    state_.Rename(id, nick);
    wakes = Append(shard, now, MakeLine(Line::RENAME, old, nick), 0, 0);
  }
  Wake(wakes);
  return Result::kOk;
}

Room::Result LocalRoom::Say(int shard, absl::Time now, MemberId id, bool me,
                            const std::string& text) {
  std::vector<const std::function<void()>*> wakes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const RoomState::Member* m = state_.Find(id);
    if (closed_ || m == nullptr) return Result::kClosed;
    if (log_bytes_ > limits_.max_log_bytes) return Result::kBusy;
    wakes = Append(shard, now, MakeLine(me ? Line::ME : Line::SAY, m->nick, text), 0, 0);
  }
  Wake(wakes);
  return Result::kOk;
}

Room::Result LocalRoom::Private(int shard, absl::Time now, MemberId id, const std::string& to,
                                const std::string& text) {
  std::vector<const std::function<void()>*> wakes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const RoomState::Member* m = state_.Find(id);
    if (closed_ || m == nullptr) return Result::kClosed;
    const MemberId target = state_.Holder(to);
    if (target == 0) return Result::kNoSuchNick;
    if (log_bytes_ > limits_.max_log_bytes) return Result::kBusy;
    Line line = MakeLine(Line::PRIVATE, m->nick, text);
    line.set_to(state_.Find(target)->nick);
    wakes = Append(shard, now, std::move(line), target, id);
  }
  Wake(wakes);
  return Result::kOk;
}

bool LocalRoom::Close(int shard, absl::Time now) {
  std::vector<const std::function<void()>*> wakes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    closed_ = true;
    wakes = Append(shard, now, MakeLine(Line::SYSTEM, "", "server shutting down"), 0, 0);
  }
  Wake(wakes);
  return true;
}

Roster LocalRoom::Who() const {
  std::lock_guard<std::mutex> lock(mu_);
  return LocalRosterLocked();
}

uint64_t LocalRoom::log_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_bytes_;
}

void LocalRoom::Read(int shard, std::vector<RoomEntry>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  RoomState::Shard& s = state_.shard(shard);
  s.woken = false;
  const uint64_t last = last_index_.load(std::memory_order_relaxed);
  if (s.read == last) return;
  // The log starts at log_.front().index: skip what this shard has read.
  const uint64_t first = log_.front().index;
  for (size_t i = static_cast<size_t>(s.read + 1 - first); i < log_.size(); ++i) {
    out->push_back(log_[i]);
  }
  s.read = last;
  const uint64_t oldest = state_.OldestRead();
  while (!log_.empty() && log_.front().index <= oldest) {
    log_bytes_ -= log_.front().bytes->size();
    log_.pop_front();
  }
}

}  // namespace udpmsg::chat
