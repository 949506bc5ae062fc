#include "apps/chat/room_state.h"

#include <sodium.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "apps/chat/rules.h"

namespace udpmsg::chat {

std::string RoomState::TokenHash(const std::string& token) {
  if (token.size() != kResumeTokenBytes) return "";
  unsigned char h[16];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), nullptr, 0);
  std::string hex;
  for (unsigned char c : h) absl::StrAppend(&hex, absl::Hex(c, absl::kZeroPad2));
  return hex;
}

RoomState::Verdict RoomState::CheckJoin(const JoinRequest& request, absl::Time now,
                                        const RoomLimits& limits) const {
  Verdict v;
  if (const MemberId id = Holder(request.nick); id != 0) {
    const Member& h = members_.at(id);
    auto probe = probes_.find(id);
    const bool unanswered = request.takeover == id && probe != probes_.end() &&
                            !probe->second.alive && now >= probe->second.until;
    // Hashes of random tokens: comparing them in variable time tells a
    // guesser nothing about the token.
    const std::string presented = TokenHash(request.resume_token);
    if ((!presented.empty() && presented == h.token_hash) || unanswered) {
      v.replace = id;
    } else if (h.address_key == request.address_key && request.takeover != id) {
      v.result = Room::Result::kProbe;
      v.holder = id;
      return v;
    } else {
      v.result = Room::Result::kNickTaken;
      return v;
    }
  }
  const Member* old = v.replace != 0 ? &members_.at(v.replace) : nullptr;
  auto from_here = by_address_.find(request.address_key);
  const size_t here = (from_here == by_address_.end() ? 0 : from_here->second) -
                      (old != nullptr && old->address_key == request.address_key ? 1 : 0);
  if (old == nullptr && members_.size() >= limits.max_members) {
    v.result = Room::Result::kFull;
  } else if (here >= limits.max_members_per_address) {
    v.result = Room::Result::kAddressFull;
  }
  return v;
}

void RoomState::Add(MemberId id, Member member) {
  by_nick_[NickKey(member.nick)] = id;
  ++by_address_[member.address_key];
  members_.emplace(id, std::move(member));
}

std::optional<RoomState::Member> RoomState::Erase(MemberId id) {
  auto it = members_.find(id);
  if (it == members_.end()) return std::nullopt;
  Member m = std::move(it->second);
  members_.erase(it);
  auto count = by_address_.find(m.address_key);
  if (count != by_address_.end() && --count->second == 0) by_address_.erase(count);
  auto nick = by_nick_.find(NickKey(m.nick));
  if (nick != by_nick_.end() && nick->second == id) by_nick_.erase(nick);
  probes_.erase(id);
  return m;
}

void RoomState::Rename(MemberId id, const std::string& nick) {
  auto it = members_.find(id);
  if (it == members_.end()) return;
  by_nick_.erase(NickKey(it->second.nick));
  by_nick_[NickKey(nick)] = id;
  it->second.nick = nick;
}

const RoomState::Member* RoomState::Find(MemberId id) const {
  auto it = members_.find(id);
  return it == members_.end() ? nullptr : &it->second;
}

MemberId RoomState::Holder(const std::string& nick) const {
  auto it = by_nick_.find(NickKey(nick));
  return it == by_nick_.end() ? 0 : it->second;
}

absl::Time RoomState::StartProbe(int shard, MemberId holder, absl::Time now, absl::Duration timeout,
                                 const std::function<void()>** notify) {
  *notify = nullptr;
  auto it = members_.find(holder);
  if (it == members_.end()) return now;
  auto [probe, fresh] = probes_.try_emplace(holder);
  if (!fresh && now < probe->second.until) return probe->second.until;  // one at a time
  probe->second = Probe{now + timeout, false};
  const std::function<void()>* wake =
      Notice(it->second.shard, {RoomNotice::Type::kProbe, holder, ""});
  if (it->second.shard != shard) *notify = wake;  // the caller looks itself
  return probe->second.until;
}

void RoomState::Alive(MemberId id) {
  auto it = probes_.find(id);
  if (it != probes_.end()) it->second.alive = true;
}

int RoomState::AddShard(std::function<void()> wake, uint64_t read) {
  Shard s;
  s.wake = std::move(wake);
  s.read = read;
  shards_.push_back(std::move(s));
  return static_cast<int>(shards_.size()) - 1;
}

const std::function<void()>* RoomState::Notice(int shard, RoomNotice notice) {
  Shard& s = shards_.at(static_cast<size_t>(shard));
  s.notices.push_back(std::move(notice));
  notices_.fetch_add(1, std::memory_order_acq_rel);
  return s.wake ? &s.wake : nullptr;
}

void RoomState::TakeNotices(int shard, std::vector<RoomNotice>* out) {
  std::vector<RoomNotice>& notices = shards_.at(static_cast<size_t>(shard)).notices;
  out->insert(out->end(), notices.begin(), notices.end());
  notices.clear();
}

void RoomState::WakeOthers(int shard, std::vector<const std::function<void()>*>* wakes) {
  for (size_t i = 0; i < shards_.size(); ++i) {
    Shard& s = shards_[i];
    if (static_cast<int>(i) == shard || s.woken || !s.wake) continue;
    s.woken = true;
    if (std::find(wakes->begin(), wakes->end(), &s.wake) == wakes->end()) wakes->push_back(&s.wake);
  }
}

uint64_t RoomState::OldestRead() const {
  uint64_t oldest = std::numeric_limits<uint64_t>::max();
  for (const Shard& s : shards_) oldest = std::min(oldest, s.read);
  return oldest;
}

absl::Time RoomWithState::StartProbe(int shard, absl::Time now, MemberId holder,
                                     absl::Duration timeout) {
  const std::function<void()>* wake = nullptr;
  absl::Time until;
  {
    std::lock_guard<std::mutex> lock(mu_);
    until = state_.StartProbe(shard, holder, now, timeout, &wake);
  }
  if (wake != nullptr) (*wake)();
  return until;
}

void RoomWithState::Alive(MemberId id) {
  std::lock_guard<std::mutex> lock(mu_);
  state_.Alive(id);
}

void RoomWithState::TakeNotices(int shard, std::vector<RoomNotice>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  state_.TakeNotices(shard, out);
}

uint64_t RoomWithState::member_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_.members().size();
}

std::string RoomWithState::NickOf(MemberId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  const RoomState::Member* m = state_.Find(id);
  return m == nullptr ? "" : m->nick;
}

std::vector<std::string> RoomWithState::Members() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> nicks;
  nicks.reserve(state_.members().size());
  for (const auto& [id, m] : state_.members()) nicks.push_back(m.nick);
  return nicks;
}

Roster RoomWithState::LocalRosterLocked() const {
  Roster r;
  r.count = state_.members().size();
  for (const auto& [id, m] : state_.members()) {
    if (r.first.size() >= kMaxListedNicks) break;
    r.first.push_back(m.nick);
  }
  return r;
}

void RoomWithState::Wake(const std::vector<const std::function<void()>*>& wakes) {
  for (const std::function<void()>* w : wakes) (*w)();
}

}  // namespace udpmsg::chat
