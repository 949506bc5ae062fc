#include "apps/chat/local_room.h"

#include <algorithm>
#include <limits>
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
    : limits_(limits), sequencer_(std::move(sequencer)) {}

int LocalRoom::AddShard(std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(mu_);
  Shard s;
  s.wake = std::move(wake);
  s.read = last_index_.load(std::memory_order_relaxed);
  shards_.push_back(std::move(s));
  return static_cast<int>(shards_.size()) - 1;
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
  for (size_t i = 0; i < shards_.size(); ++i) {
    Shard& s = shards_[i];
    if (static_cast<int>(i) == shard || s.woken || !s.wake) continue;
    s.woken = true;
    wakes.push_back(&s.wake);
  }
  return wakes;
}

void LocalRoom::Wake(const std::vector<const std::function<void()>*>& wakes) {
  for (const std::function<void()>* w : wakes) (*w)();
}

Room::Joined LocalRoom::Join(int shard, absl::Time now, const std::string& nick,
                             const std::string& address_key) {
  std::vector<const std::function<void()>*> wakes;
  Joined j;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto from_here = by_address_.find(address_key);
    if (closed_) {
      j.result = Result::kClosed;
    } else if (members_.size() >= limits_.max_members) {
      j.result = Result::kFull;
    } else if (by_nick_.contains(NickKey(nick))) {
      j.result = Result::kNickTaken;
    } else if (from_here != by_address_.end() &&
               from_here->second >= limits_.max_members_per_address) {
      j.result = Result::kAddressFull;
    } else if (log_bytes_ > 2 * limits_.max_log_bytes) {
      j.result = Result::kBusy;
    }
    if (j.result != Result::kOk) return j;
    j.id = ++joins_;
    j.start = last_index_.load(std::memory_order_relaxed) + 1;
    members_.emplace(j.id, Member{nick, address_key});
    by_nick_[NickKey(nick)] = j.id;
    ++by_address_[address_key];
    j.roster = RosterLocked();
    if (members_.size() <= limits_.announce_limit) {
      wakes = Append(shard, now, MakeLine(Line::JOIN, nick, ""), 0, 0);
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
    auto it = members_.find(id);
    if (it == members_.end()) return members_.size();
    const std::string nick = std::move(it->second.nick);
    auto count = by_address_.find(it->second.address_key);
    if (count != by_address_.end() && --count->second == 0) by_address_.erase(count);
    members_.erase(it);
    by_nick_.erase(NickKey(nick));
    left = members_.size();
    if (!closed_ && left + 1 <= limits_.announce_limit) {
      wakes = Append(shard, now, MakeLine(Line::LEAVE, nick, why), 0, 0);
    }
  }
  Wake(wakes);
  return left;
}

Room::Result LocalRoom::Rename(int shard, absl::Time now, MemberId id, const std::string& nick) {
  std::vector<const std::function<void()>*> wakes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = members_.find(id);
    if (closed_ || it == members_.end()) return Result::kClosed;
    auto holder = by_nick_.find(NickKey(nick));
    if (holder != by_nick_.end() && holder->second != id) return Result::kNickTaken;
    if (log_bytes_ > limits_.max_log_bytes) return Result::kBusy;
    const std::string old = it->second.nick;
    by_nick_.erase(NickKey(old));
    by_nick_[NickKey(nick)] = id;
    it->second.nick = nick;
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
    auto it = members_.find(id);
    if (closed_ || it == members_.end()) return Result::kClosed;
    if (log_bytes_ > limits_.max_log_bytes) return Result::kBusy;
    wakes = Append(shard, now, MakeLine(me ? Line::ME : Line::SAY, it->second.nick, text), 0, 0);
  }
  Wake(wakes);
  return Result::kOk;
}

Room::Result LocalRoom::Private(int shard, absl::Time now, MemberId id, const std::string& to,
                                const std::string& text) {
  std::vector<const std::function<void()>*> wakes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = members_.find(id);
    if (closed_ || it == members_.end()) return Result::kClosed;
    auto target = by_nick_.find(NickKey(to));
    if (target == by_nick_.end()) return Result::kNoSuchNick;
    if (log_bytes_ > limits_.max_log_bytes) return Result::kBusy;
    Line line = MakeLine(Line::PRIVATE, it->second.nick, text);
    line.set_to(members_.at(target->second).nick);
    wakes = Append(shard, now, std::move(line), target->second, id);
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

Roster LocalRoom::RosterLocked() const {
  Roster r;
  r.count = members_.size();
  for (const auto& [id, m] : members_) {
    if (r.first.size() >= kMaxListedNicks) break;
    r.first.push_back(m.nick);
  }
  return r;
}

Roster LocalRoom::Who() const {
  std::lock_guard<std::mutex> lock(mu_);
  return RosterLocked();
}

uint64_t LocalRoom::member_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return members_.size();
}

std::string LocalRoom::NickOf(MemberId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = members_.find(id);
  return it == members_.end() ? "" : it->second.nick;
}

std::vector<std::string> LocalRoom::Members() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> nicks;
  nicks.reserve(members_.size());
  for (const auto& [id, m] : members_) nicks.push_back(m.nick);
  return nicks;
}

uint64_t LocalRoom::log_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_bytes_;
}

void LocalRoom::Read(int shard, std::vector<RoomEntry>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  Shard& s = shards_.at(static_cast<size_t>(shard));
  s.woken = false;
  const uint64_t last = last_index_.load(std::memory_order_relaxed);
  if (s.read == last) return;
  // The log starts at log_.front().index: skip what this shard has read.
  const uint64_t first = log_.front().index;
  for (size_t i = static_cast<size_t>(s.read + 1 - first); i < log_.size(); ++i) {
    out->push_back(log_[i]);
  }
  s.read = last;
  uint64_t oldest = std::numeric_limits<uint64_t>::max();
  for (const Shard& other : shards_) oldest = std::min(oldest, other.read);
  while (!log_.empty() && log_.front().index <= oldest) {
    log_bytes_ -= log_.front().bytes->size();
    log_.pop_front();
  }
}

}  // namespace udpmsg::chat
