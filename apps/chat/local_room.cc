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

namespace {

// Constant time in the token's bytes (a wrong guess learns nothing from
// how long the answer took).
bool SameToken(const std::array<char, kResumeTokenBytes>& kept, const std::string& presented) {
  if (presented.size() != kResumeTokenBytes) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < kResumeTokenBytes; ++i) {
    diff |= static_cast<unsigned char>(kept[i] ^ presented[i]);
  }
  return diff == 0;
}

}  // namespace

const std::function<void()>* LocalRoom::NoticeLocked(int shard, RoomNotice notice) {
  Shard& s = shards_.at(static_cast<size_t>(shard));
  s.notices.push_back(notice);
  notices_.fetch_add(1, std::memory_order_acq_rel);
  return s.wake ? &s.wake : nullptr;
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
    MemberId replace = 0;
    auto holder = by_nick_.find(NickKey(request.nick));
    if (holder != by_nick_.end()) {
      const MemberId id = holder->second;
      const Member& h = members_.at(id);
      auto probe = probes_.find(id);
      const bool unanswered = request.takeover == id && probe != probes_.end() &&
                              !probe->second.alive && now >= probe->second.until;
      if ((h.has_token && SameToken(h.token, request.resume_token)) || unanswered) {
        replace = id;
      } else if (h.address_key == request.address_key && request.takeover != id) {
        j.result = Result::kProbe;
        j.holder = id;
        return j;
      } else {
        j.result = Result::kNickTaken;
        return j;
      }
    }
    const Member* old = replace != 0 ? &members_.at(replace) : nullptr;
    auto from_here = by_address_.find(request.address_key);
    const size_t here = (from_here == by_address_.end() ? 0 : from_here->second) -
                        (old != nullptr && old->address_key == request.address_key ? 1 : 0);
    if (old == nullptr && members_.size() >= limits_.max_members) {
      j.result = Result::kFull;
    } else if (here >= limits_.max_members_per_address) {
      j.result = Result::kAddressFull;
    } else if (log_bytes_ > 2 * limits_.max_log_bytes) {
      j.result = Result::kBusy;
    }
    if (j.result != Result::kOk) return j;
    if (old != nullptr) {
      // The old member goes without a leave line; its shard closes it.
      const int old_shard = old->shard;
      auto count = by_address_.find(old->address_key);
      if (count != by_address_.end() && --count->second == 0) by_address_.erase(count);
      by_nick_.erase(NickKey(old->nick));
      members_.erase(replace);
      probes_.erase(replace);
      if (const auto* w = NoticeLocked(old_shard, {RoomNotice::Type::kReplaced, replace});
          w != nullptr && old_shard != shard) {
        wakes.push_back(w);
      }
      j.replaced = replace;
    }
    j.id = ++joins_;
    j.start = last_index_.load(std::memory_order_relaxed) + 1;
    Member m{request.nick, request.address_key, shard};
    if (request.new_token.size() == kResumeTokenBytes) {
      m.has_token = true;
      std::copy(request.new_token.begin(), request.new_token.end(), m.token.begin());
    }
    members_.emplace(j.id, std::move(m));
    by_nick_[NickKey(request.nick)] = j.id;
    ++by_address_[request.address_key];
    j.roster = RosterLocked();
    if (members_.size() <= limits_.announce_limit) {
      std::vector<const std::function<void()>*> more =
          replace != 0
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

absl::Time LocalRoom::StartProbe(int shard, absl::Time now, MemberId holder,
                                 absl::Duration timeout) {
  const std::function<void()>* wake = nullptr;
  absl::Time until;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = members_.find(holder);
    if (it == members_.end()) return now;
    auto [probe, fresh] = probes_.try_emplace(holder);
    if (!fresh && now < probe->second.until) return probe->second.until;  // one at a time
    probe->second = Probe{now + timeout, false};
    until = probe->second.until;
    wake = NoticeLocked(it->second.shard, {RoomNotice::Type::kProbe, holder});
    if (it->second.shard == shard) wake = nullptr;  // the caller looks itself
  }
  if (wake != nullptr) (*wake)();
  return until;
}

void LocalRoom::Alive(MemberId id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = probes_.find(id);
  if (it != probes_.end()) it->second.alive = true;
}

void LocalRoom::TakeNotices(int shard, std::vector<RoomNotice>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<RoomNotice>& notices = shards_.at(static_cast<size_t>(shard)).notices;
  out->insert(out->end(), notices.begin(), notices.end());
  notices.clear();
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
    probes_.erase(id);
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
