#include "apps/chat/server_core.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "apps/chat/local_room.h"
#include "apps/chat/rules.h"
#include "apps/chat/text.h"

namespace udpmsg::chat {
namespace {

std::string Serialize(const ServerMessage& m) {
  std::string s;
  m.SerializeToString(&s);
  return s;
}

RoomLimits LimitsOf(const ServerOptions& o) {
  RoomLimits limits;
  limits.max_members = o.max_members;
  limits.max_members_per_address = o.max_members_per_address;
  limits.announce_limit = o.announce_limit;
  return limits;
}

}  // namespace

// The bytes may be shared with other shards (a room's line); the charge to
// this core's held count is this core's own.
class ServerCore::SharedMessage {
 public:
  SharedMessage(std::shared_ptr<const std::string> bytes, uint64_t* held)
      : bytes_(std::move(bytes)), held_(held) {
    *held_ += bytes_->size();
  }
  ~SharedMessage() { *held_ -= bytes_->size(); }
  SharedMessage(const SharedMessage&) = delete;
  SharedMessage& operator=(const SharedMessage&) = delete;
  const std::string& bytes() const { return *bytes_; }

 private:
  const std::shared_ptr<const std::string> bytes_;
  uint64_t* held_;
};

ServerCore::MemberState::MemberState(PeerId id, MemberId joined, uint64_t start,
                                     const ServerOptions& o, absl::Time now)
    : id(id),
      joined(joined),
      start(start),
      lines(o.line_rate, static_cast<double>(o.line_burst), now),
      bytes(static_cast<double>(o.byte_rate), static_cast<double>(o.byte_burst), now),
      refusals(o.line_rate, static_cast<double>(o.flood_tolerance), now) {}

absl::Status ServerOptions::Validate() const {
  if (join_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "join_timeout ", absl::FormatDuration(join_timeout), " is not a positive duration"));
  }
  if (max_members < 1 || max_members > kMaxMembersLimit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_members ", max_members, " is out of range (1 to ", kMaxMembersLimit, ")"));
  }
  if (max_pending < 1) return absl::InvalidArgumentError("max_pending must be at least 1");
  if (max_members_per_address < 1 || max_members_per_address > kMaxMembersLimit) {
    return absl::InvalidArgumentError(absl::StrCat("max_members_per_address ",
                                                   max_members_per_address,
                                                   " is out of range (1 to ", kMaxMembersLimit, ")"));
  }
  if (!(line_rate > 0) || line_rate > 1e6) {
    return absl::InvalidArgumentError(
        absl::StrCat("line_rate ", line_rate, " is out of range (above 0, at most 1000000)"));
  }
  if (line_burst < 1) return absl::InvalidArgumentError("line_burst must be at least 1");
  if (byte_rate < 1) return absl::InvalidArgumentError("byte_rate must be at least 1");
  if (byte_burst < kMinByteBurst) {
    return absl::InvalidArgumentError(absl::StrCat("byte_burst ", byte_burst,
                                                   " is below one longest line (at least ",
                                                   kMinByteBurst, ")"));
  }
  if (probe_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "probe_timeout ", absl::FormatDuration(probe_timeout), " is not a positive duration"));
  }
  if (resume_grace < absl::ZeroDuration() || resume_grace == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "resume_grace ", absl::FormatDuration(resume_grace), " is not a finite duration >= 0"));
  }
  if (send_window_bytes < 1) {
    return absl::InvalidArgumentError("send_window_bytes must be at least 1");
  }
  if (max_backlog_bytes < kMinBacklogBytes) {
    return absl::InvalidArgumentError(absl::StrCat("max_backlog_bytes ", max_backlog_bytes,
                                                   " is too small (at least ", kMinBacklogBytes,
                                                   ")"));
  }
  if (max_backlog_lines < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_backlog_lines ", max_backlog_lines, " is too small (at least 16)"));
  }
  if (max_held_bytes < max_backlog_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("max_held_bytes ", max_held_bytes,
                                                   " is below max_backlog_bytes ",
                                                   max_backlog_bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ServerCore>> ServerCore::Create(
    const ServerOptions& options, std::unique_ptr<Sequencer> sequencer) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (sequencer == nullptr) return absl::InvalidArgumentError("a ServerCore needs a Sequencer");
  auto room = std::make_shared<LocalRoom>(LimitsOf(options), std::move(sequencer));
  const int shard = room->AddShard(nullptr);
  return std::unique_ptr<ServerCore>(new ServerCore(options, std::move(room), shard));
}

absl::StatusOr<std::unique_ptr<ServerCore>> ServerCore::Create(const ServerOptions& options,
                                                               std::shared_ptr<Room> room,
                                                               int shard) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (room == nullptr) return absl::InvalidArgumentError("a ServerCore shard needs a Room");
  if (shard < 0) return absl::InvalidArgumentError("a shard index is not negative");
  return std::unique_ptr<ServerCore>(new ServerCore(options, std::move(room), shard));
}

ServerCore::ServerCore(const ServerOptions& options, std::shared_ptr<Room> room, int shard)
    : options_(options), room_(std::move(room)), shard_(shard), read_(room_->last_index()) {}

std::vector<ServerAction> ServerCore::TakeActions() { return std::exchange(actions_, {}); }

std::vector<std::string> ServerCore::Members() const {
  std::vector<std::string> nicks;
  nicks.reserve(order_.size());
  for (const auto& [joined, m] : order_) nicks.push_back(room_->NickOf(joined));
  return nicks;
}

uint64_t ServerCore::held_bytes() const {
  return held_message_bytes_ + backlog_entries_ * kBacklogEntryBytes;
}

uint64_t ServerCore::in_flight_bytes() const { return in_flight_bytes_; }

std::string ServerCore::NickOf(PeerId peer) const {
  auto it = members_.find(peer);
  return it == members_.end() ? "" : room_->NickOf(it->second.joined);
}

std::string ServerCore::Count(uint64_t members) {
  return absl::StrCat("(", Plural(members, "member"), ")");
}

void ServerCore::OnConnected(absl::Time now, PeerId peer, absl::string_view address) {
  if (members_.contains(peer) || pending_.contains(peer)) return;
  std::string shown = Displayable(address.substr(0, kMaxAddressBytes));
  if (pending_.size() >= options_.max_pending) {
    Close(peer, "too many connections waiting to join", /*flush=*/false);
    Log(absl::StrCat("refused ", shown, ": too many connections waiting to join (",
                     options_.max_pending, ")"));
    return;
  }
  std::string key = AddressKey(address);
  size_t& from_here = pending_by_address_[key];
  if (from_here >= options_.max_members_per_address) {
    Close(peer, "too many connections from your address waiting to join", /*flush=*/false);
    Log(absl::StrCat("refused ", shown, ": too many connections from its address waiting to join (",
                     options_.max_members_per_address, ")"));
    return;
  }
  ++from_here;
  pending_[peer] = Pending{std::move(shown), std::move(key), now};
  join_deadlines_.insert({now + options_.join_timeout, peer});
}

void ServerCore::OnMessage(absl::Time now, PeerId peer, absl::string_view bytes) {
  ClientMessage m;
  const bool parsed = bytes.size() <= kMaxMessageBytes &&
                      m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
  auto member = members_.find(peer);
  if (member == members_.end()) {
    auto pending = pending_.find(peer);
    if (pending == pending_.end()) return;  // refused and closing
    if (pending->second.probing != nullptr) return;  // its Join waits for a probe
    if (!parsed || !m.has_join()) {
      Refuse(peer, pending->second.address, "protocol error: expected Join");
      return;
    }
    OnJoin(now, peer, m.join());
    Drain();
    return;
  }
  MemberState& state = member->second;
  if (state.probed) {  // it answers: it keeps its nick
    state.probed = false;
    room_->Alive(state.joined);
  }
  if (!parsed) {
    Close(peer, "protocol error: malformed chat message", /*flush=*/false);
    Remove(now, peer, "protocol error", "sent a malformed message");
    DropLaggards(now);
    return;
  }
  if (m.body_case() != ClientMessage::kLeave && !Admit(now, peer, state, bytes.size())) {
    DropLaggards(now);
    return;
  }
  switch (m.body_case()) {
    case ClientMessage::kJoin:
      SendError(peer, absl::StrCat("already joined as ", room_->NickOf(state.joined)));
      break;
    case ClientMessage::kSay:
    case ClientMessage::kMe: {
      const bool me = m.body_case() == ClientMessage::kMe;
      const std::string& text = me ? m.me().action() : m.say().text();
      if (absl::Status s = CheckText(text); !s.ok()) {
        SendError(peer, std::string(s.message()));
        break;
      }
      Refused(peer, room_->Say(shard_, now, state.joined, me, text), "");
      break;
    }
    case ClientMessage::kPrivateMessage: {
      const Private& p = m.private_message();
      if (absl::Status s = CheckText(p.text()); !s.ok()) {
        SendError(peer, std::string(s.message()));
        break;
      }
      Refused(peer, room_->Private(shard_, now, state.joined, p.to(), p.text()), p.to());
      break;
    }
    case ClientMessage::kRename:
      OnRename(now, peer, state, m.rename().nick());
      break;
    case ClientMessage::kWho: {
      const Roster roster = room_->Who();
      ServerMessage reply;
      for (const std::string& n : roster.first) reply.mutable_who_reply()->add_nicks(n);
      reply.mutable_who_reply()->set_count(roster.count);
      Send(peer, Serialize(reply));
      break;
    }
    case ClientMessage::kLeave: {
      // The reason is peer text: cut here, escaped wherever it is shown.
      const std::string reason = CutUtf8(
          absl::StripAsciiWhitespace(m.leave().reason()), kMaxLeaveReasonBytes);
      Close(peer, "left", /*flush=*/true);
      Remove(now, peer, reason, "");
      break;
    }
    case ClientMessage::BODY_NOT_SET:
      SendError(peer, "empty or unknown message (is the client newer than the server?)");
      break;
  }
  Drain();
  DropLaggards(now);
}

void ServerCore::Refused(PeerId peer, Room::Result result, const std::string& to) {
  switch (result) {
    case Room::Result::kOk:
      return;
    case Room::Result::kNoSuchNick:
      SendError(peer, absl::StrCat("no member named \"", Displayable(to), "\""));
      return;
    case Room::Result::kNickTaken:
      SendError(peer, absl::StrCat("nick \"", to, "\" is taken"));
      return;
    case Room::Result::kBusy:
      SendError(peer, "the room is busy: that message was not sent");
      return;
    case Room::Result::kUnavailable:
      SendError(peer, "the room is unavailable (its store cannot be reached): that message was "
                      "not sent");
      return;
    default:
      SendError(peer, "the server is shutting down: that message was not sent");
      return;
  }
}

bool ServerCore::Admit(absl::Time now, PeerId peer, MemberState& member, size_t size) {
  const double cost = static_cast<double>(size);
  const bool has_line = member.lines.Has(now, 1);
  const bool has_bytes = member.bytes.Has(now, cost);
  if (has_line && has_bytes) {
    member.lines.Take(1);
    member.bytes.Take(cost);
    return true;
  }
  if (!member.refusals.Has(now, 1)) {
    Log(absl::StrCat(Displayable(room_->NickOf(member.joined)), " closed: flooding (over ",
                     options_.flood_tolerance,
                     " messages beyond the rate limit)"));
    Close(peer, "flooding: too many messages over the rate limit", /*flush=*/false);
    Remove(now, peer, "flooding", "");
    return false;
  }
  member.refusals.Take(1);
  SendError(peer, has_line ? absl::StrCat("slow down: at most ", options_.byte_rate,
                                          " bytes per second (", options_.byte_burst,
                                          " at once); that message was not sent")
                           : absl::StrCat("slow down: at most ", options_.line_rate,
                                          " messages per second (", options_.line_burst,
                                          " at once); that message was not sent"));
  return false;
}

void ServerCore::OnJoin(absl::Time now, PeerId peer, const Join& join) {
  if (absl::Status s = CheckNick(join.nick()); !s.ok()) {
    Refuse(peer, pending_.at(peer).address, std::string(s.message()));
    return;
  }
  JoinRequest request;
  request.nick = join.nick();
  request.address_key = pending_.at(peer).address_key;
  // Peer bytes: only a token of the exact size can match; others are none.
  if (join.resume_token().size() == kResumeTokenBytes) request.resume_token = join.resume_token();
  request.last_seq = join.last_seq();  // whatever it says only trims its own history
  TryJoin(now, peer, std::move(request));
}

std::string ServerCore::NewToken() {
  if (options_.random_token) {
    std::string t = options_.random_token();
    t.resize(kResumeTokenBytes);
    return t;
  }
  std::random_device device;
  std::string t(kResumeTokenBytes, '\0');
  for (size_t i = 0; i < t.size(); i += 4) {
    const uint32_t r = device();
    for (size_t k = 0; k < 4 && i + k < t.size(); ++k) t[i + k] = static_cast<char>(r >> (8 * k));
  }
  return t;
}

void ServerCore::TryJoin(absl::Time now, PeerId peer, JoinRequest request) {
  const std::string address = pending_.at(peer).address;
  const std::string nick = request.nick;
  request.new_token = NewToken();
  Room::Joined joined = room_->Join(shard_, now, request);
  switch (joined.result) {
    case Room::Result::kOk:
      break;
    case Room::Result::kProbe: {
      // The holder comes from this address: is it still there?
      Pending& p = pending_.at(peer);
      request.takeover = joined.holder;
      p.probe_until = room_->StartProbe(shard_, now, joined.holder, options_.probe_timeout);
      p.probing = std::make_unique<JoinRequest>(std::move(request));
      probe_deadlines_.insert({p.probe_until, peer});
      Log(absl::StrCat(address, " asks for the nick ", Displayable(nick),
                       " of a member from its address: probing that member"));
      return;
    }
    case Room::Result::kFull:
      Refuse(peer, address,
             absl::StrCat("the chat is full (", Plural(options_.max_members, "member"), ")"));
      return;
    case Room::Result::kNickTaken:
      Refuse(peer, address, absl::StrCat("nick \"", nick, "\" is taken"));
      return;
    case Room::Result::kAddressFull:
      Refuse(peer, address,
             absl::StrCat("too many members from your address (at most ",
                          options_.max_members_per_address, ")"));
      return;
    case Room::Result::kBusy:
      Refuse(peer, address, "the room is busy: try again in a moment");
      return;
    case Room::Result::kUnavailable:
      Refuse(peer, address,
             "the room is unavailable (its store cannot be reached): try again in a moment");
      return;
    default:
      Refuse(peer, address, "the server is shutting down");
      return;
  }
  ErasePending(peer);
  MemberState& member =
      members_.try_emplace(peer, peer, joined.id, joined.start, options_, now).first->second;
  order_.emplace(joined.id, &member);
  ServerMessage welcome;
  welcome.mutable_welcome()->set_nick(nick);
  for (const std::string& n : joined.roster.first) welcome.mutable_welcome()->add_members(n);
  welcome.mutable_welcome()->set_member_count(joined.roster.count);
  welcome.mutable_welcome()->set_resume_token(request.new_token);
  Send(peer, Serialize(welcome));  // before its join line, which Drain delivers
  for (RoomEntry& e : joined.history) {  // the room's recent lines, for it alone
    Enqueue(peer, member,
            std::make_shared<const SharedMessage>(std::move(e.bytes), &held_message_bytes_));
  }
  Log(absl::StrCat(Displayable(nick), joined.replaced != 0 ? " reconnected from " : " joined from ",
                   address, joined.replaced != 0 ? " (replacing its old connection) " : " ",
                   Count(joined.roster.count)));
  Drain();
  DropLaggards(now);
}

void ServerCore::OnRename(absl::Time now, PeerId peer, MemberState& member,
                          const std::string& nick) {
  if (absl::Status s = CheckNick(nick); !s.ok()) {
    SendError(peer, std::string(s.message()));
    return;
  }
  const std::string old = room_->NickOf(member.joined);
  if (nick == old) {
    SendError(peer, absl::StrCat("you are already ", nick));
    return;
  }
  const Room::Result r = room_->Rename(shard_, now, member.joined, nick);
  if (r != Room::Result::kOk) {
    Refused(peer, r, nick);
    return;
  }
  Log(absl::StrCat(Displayable(old), " is now known as ", Displayable(nick)));
}

void ServerCore::OnClosed(absl::Time now, PeerId peer, CloseCause cause, absl::string_view detail) {
  ErasePending(peer);
  auto it = members_.find(peer);
  if (it == members_.end() || it->second.held) return;
  if (cause == CloseCause::kPeerTimedOut && options_.resume_grace > absl::ZeroDuration()) {
    Hold(now, peer, it->second, detail);
    return;
  }
  const char* why = "connection lost";
  if (cause == CloseCause::kTimedOut || cause == CloseCause::kPeerTimedOut) why = "timed out";
  if (cause == CloseCause::kClosedByPeer) why = "connection closed";
  Remove(now, peer, why, detail);
  DropLaggards(now);
}

void ServerCore::Hold(absl::Time now, PeerId peer, MemberState& member,
                      absl::string_view detail) {
  DropQueued(peer, member);  // nothing more goes to it
  member.held = true;
  Held& held = held_[peer];
  held.until = now + options_.resume_grace;
  held.detail = std::string(detail.substr(0, kMaxHeldDetailBytes));
  held_deadlines_.insert({held.until, peer});
  Log(absl::StrCat(Displayable(room_->NickOf(member.joined)), "'s client timed out (",
                   Displayable(held.detail), "): holding its nick for ",
                   absl::FormatDuration(options_.resume_grace), " for its resume token"));
}

void ServerCore::OnAcked(absl::Time now, PeerId peer, uint64_t bytes) {
  auto it = members_.find(peer);
  if (it == members_.end()) return;
  MemberState& m = it->second;
  if (m.probed) {  // its transport answers: it keeps its nick
    m.probed = false;
    room_->Alive(m.joined);
  }
  const uint64_t done = std::min(bytes, m.in_flight);
  m.in_flight -= done;
  in_flight_bytes_ -= done;
  Pump(peer, m, /*all=*/false);
  Drain();
  DropLaggards(now);
}

void ServerCore::OnSendFailed(absl::Time now, PeerId peer, absl::string_view why) {
  if (!members_.contains(peer)) return;
  Close(peer, "dropped: cannot keep up", /*flush=*/false);
  Remove(now, peer, "dropped", why);
  DropLaggards(now);
}

void ServerCore::OnTick(absl::Time now) {
  // Deadline order, then id: deterministic, and only the expired are seen.
  while (!join_deadlines_.empty() && join_deadlines_.begin()->first <= now) {
    const PeerId id = join_deadlines_.begin()->second;
    Log(absl::StrCat("closing ", pending_.at(id).address, ": no Join within ",
                     absl::FormatDuration(options_.join_timeout)));
    ErasePending(id);
    Close(id, "no Join", /*flush=*/false);
  }
  while (!probe_deadlines_.empty() && probe_deadlines_.begin()->first <= now) {
    const PeerId id = probe_deadlines_.begin()->second;
    probe_deadlines_.erase(probe_deadlines_.begin());
    Pending& p = pending_.at(id);
    JoinRequest request = std::move(*p.probing);
    p.probing.reset();
    TryJoin(now, id, std::move(request));  // takes the nick over if the holder was silent
  }
  while (!held_deadlines_.empty() && held_deadlines_.begin()->first <= now) {
    const PeerId id = held_deadlines_.begin()->second;
    const std::string detail = held_.at(id).detail;
    Remove(now, id, "timed out", detail);  // Forget erases it from held_
  }
  OnRoom(now);
}

void ServerCore::OnRoom(absl::Time now) {
  Drain();
  DropLaggards(now);
}

void ServerCore::Drain() {
  TakeNotices();
  if (room_->last_index() <= read_) return;  // the common case: nothing new
  entries_.clear();
  room_->Read(shard_, &entries_);
  for (RoomEntry& e : entries_) {
    read_ = e.index;
    auto shared = std::make_shared<const SharedMessage>(std::move(e.bytes), &held_message_bytes_);
    if (e.to == 0) {
      // Join order is log order: members who joined after the line stop it.
      for (const auto& [joined, m] : order_) {
        if (m->start > e.index) break;
        Enqueue(m->id, *m, shared);
      }
      continue;
    }
    // The target, then the sender (once when they are one).
    for (const MemberId id : {e.to, e.from == e.to ? MemberId{0} : e.from}) {
      auto it = order_.find(id);
      if (it != order_.end() && it->second->start <= e.index) {
        Enqueue(it->second->id, *it->second, shared);
      }
    }
  }
  entries_.clear();
}

absl::Time ServerCore::NextDeadline() const {
  absl::Time next = absl::InfiniteFuture();
  if (!join_deadlines_.empty()) next = join_deadlines_.begin()->first;
  if (!probe_deadlines_.empty()) next = std::min(next, probe_deadlines_.begin()->first);
  if (!held_deadlines_.empty()) next = std::min(next, held_deadlines_.begin()->first);
  return next;
}

void ServerCore::Shutdown(absl::Time now) {
  const uint64_t members = room_->member_count();
  if (room_->Close(shard_, now)) Log(absl::StrCat("shutting down ", Count(members)));
  Drain();
  for (const auto& [joined, m] : order_) {
    if (m->held) continue;  // its connection is gone
    Pump(m->id, *m, /*all=*/true);  // everything, then the goodbye
    Close(m->id, "server shutting down", /*flush=*/true);
  }
  std::vector<PeerId> pending;
  for (const auto& [id, p] : pending_) pending.push_back(id);
  std::sort(pending.begin(), pending.end());
  for (PeerId id : pending) Close(id, "server shutting down", /*flush=*/false);
  for (const auto& [joined, m] : order_) room_->Leave(shard_, now, joined, "");
  order_.clear();
  members_.clear();
  backlogged_.clear();
  backlog_entries_ = 0;
  pending_.clear();
  join_deadlines_.clear();
  probe_deadlines_.clear();
  held_.clear();
  held_deadlines_.clear();
  pending_by_address_.clear();
  over_backlog_.clear();
  in_flight_bytes_ = 0;
}

void ServerCore::Refuse(PeerId peer, std::string address, const std::string& why) {
  ErasePending(peer);
  ServerMessage m;
  m.mutable_error()->set_text(why);
  m.mutable_error()->set_fatal(true);
  Send(peer, Serialize(m));
  Close(peer, why, /*flush=*/true);
  Log(absl::StrCat("refused ", address, ": ", Displayable(why)));
}

void ServerCore::ErasePending(PeerId peer) {
  auto it = pending_.find(peer);
  if (it == pending_.end()) return;
  auto count = pending_by_address_.find(it->second.address_key);
  if (count != pending_by_address_.end() && --count->second == 0) {
    pending_by_address_.erase(count);
  }
  join_deadlines_.erase({it->second.since + options_.join_timeout, peer});
  if (it->second.probing != nullptr) probe_deadlines_.erase({it->second.probe_until, peer});
  pending_.erase(it);
}

void ServerCore::SendError(PeerId peer, const std::string& text) {
  ServerMessage m;
  m.mutable_error()->set_text(text);
  Send(peer, Serialize(m));
}

void ServerCore::Remove(absl::Time now, PeerId peer, const std::string& why,
                        absl::string_view detail) {
  auto it = members_.find(peer);
  if (it == members_.end()) return;
  const MemberId joined = it->second.joined;
  const std::string nick = room_->NickOf(joined);
  Forget(peer);
  const uint64_t left = room_->Leave(shard_, now, joined, why);
  std::string log = absl::StrCat(Displayable(nick), " left");
  if (!why.empty()) {
    absl::StrAppend(&log, " (", Displayable(why), detail.empty() ? "" : ": ",
                    Displayable(detail), ")");
  }
  Log(absl::StrCat(log, " ", Count(left)));
  Drain();  // its leave line, to the others
}

void ServerCore::Forget(PeerId peer) {
  auto it = members_.find(peer);
  if (it == members_.end()) return;
  DropQueued(peer, it->second);
  if (it->second.held) {
    auto held = held_.find(peer);
    held_deadlines_.erase({held->second.until, peer});
    held_.erase(held);
  }
  order_.erase(it->second.joined);
  members_.erase(it);
}

void ServerCore::DropQueued(PeerId peer, MemberState& member) {
  in_flight_bytes_ -= member.in_flight;
  member.in_flight = 0;
  backlog_entries_ -= member.backlog_size();
  member.backlog.reset();  // frees its share of the lines
  member.backlog_bytes = 0;
  backlogged_.erase(peer);
}

void ServerCore::TakeNotices() {
  const uint64_t count = room_->notice_count();
  if (count == notices_seen_) return;  // the common case
  notices_seen_ = count;
  std::vector<RoomNotice> notices;
  room_->TakeNotices(shard_, &notices);
  for (const RoomNotice& n : notices) {
    if (n.type == RoomNotice::Type::kAnnounce) {
      ServerMessage m;
      m.mutable_line()->set_kind(Line::SYSTEM);
      m.mutable_line()->set_text(n.text);
      auto shared = std::make_shared<const SharedMessage>(
          std::make_shared<const std::string>(Serialize(m)), &held_message_bytes_);
      for (const auto& [joined, member] : order_) Enqueue(member->id, *member, shared);
      Log(absl::StrCat("notice to ", Plural(order_.size(), "member"), ": ", n.text));
      continue;
    }
    auto it = order_.find(n.member);
    if (it == order_.end()) continue;  // gone meanwhile
    const PeerId peer = it->second->id;
    if (n.type == RoomNotice::Type::kReplaced) {
      // The room has already handed its nick on: no leave line.
      if (!it->second->held) Close(peer, "replaced by a new connection", /*flush=*/false);
      Forget(peer);
      continue;
    }
    ServerMessage probe;
    probe.mutable_probe();
    it->second->probed = true;
    Send(peer, Serialize(probe));
  }
}

void ServerCore::Send(PeerId peer, std::string bytes) {
  auto it = members_.find(peer);
  if (it == members_.end()) {
    EmitSend(peer, std::move(bytes));
    return;
  }
  Enqueue(peer, it->second,
          std::make_shared<const SharedMessage>(
              std::make_shared<const std::string>(std::move(bytes)), &held_message_bytes_));
}

void ServerCore::Enqueue(PeerId peer, MemberState& member,
                         std::shared_ptr<const SharedMessage> message) {
  if (member.held) return;  // its connection is gone (resume_grace)
  const uint64_t size = message->bytes().size();
  if (member.backlog == nullptr && member.in_flight < options_.send_window_bytes) {
    // The common case: the window is open and nothing waits; straight out.
    member.in_flight += size;
    in_flight_bytes_ += size;
    EmitSend(peer, message->bytes());  // the transport's copy
    return;
  }
  const bool was_over = member.backlog_bytes > options_.max_backlog_bytes ||
                        member.backlog_size() > options_.max_backlog_lines;
  if (member.backlog == nullptr) {
    member.backlog = std::make_unique<Backlog>();
    backlogged_.insert(peer);
  }
  member.backlog_bytes += size;
  member.backlog->push_back(std::move(message));
  ++backlog_entries_;
  Pump(peer, member, /*all=*/false);
  const bool over = member.backlog_bytes > options_.max_backlog_bytes ||
                    member.backlog_size() > options_.max_backlog_lines;
  if (over && !was_over) over_backlog_.push_back(peer);
}

void ServerCore::Pump(PeerId peer, MemberState& member, bool all) {
  if (member.backlog == nullptr) return;
  Backlog& backlog = *member.backlog;
  while (!backlog.empty() && (all || member.in_flight < options_.send_window_bytes)) {
    std::shared_ptr<const SharedMessage> next = std::move(backlog.front());
    backlog.pop_front();
    --backlog_entries_;
    const uint64_t size = next->bytes().size();
    member.backlog_bytes -= size;
    member.in_flight += size;
    in_flight_bytes_ += size;
    EmitSend(peer, next->bytes());  // the transport's copy
  }
  if (backlog.empty()) {
    member.backlog.reset();
    backlogged_.erase(peer);
  }
}

void ServerCore::DropLaggards(absl::Time now) {
  for (;;) {
    PeerId drop = 0;
    std::string why;
    while (!over_backlog_.empty() && drop == 0) {
      const PeerId id = over_backlog_.back();
      over_backlog_.pop_back();
      auto it = members_.find(id);
      if (it == members_.end()) continue;
      const MemberState& m = it->second;
      if (m.backlog_bytes > options_.max_backlog_bytes ||
          m.backlog_size() > options_.max_backlog_lines) {
        drop = id;
        why = absl::StrCat("backlog over ", options_.max_backlog_bytes, " bytes or ",
                           options_.max_backlog_lines, " messages");
      }
    }
    if (drop == 0 && held_bytes() > options_.max_held_bytes) {
      // Only members with a backlog can be the longest; ties drop the
      // earliest to join.
      uint64_t longest = 0;
      uint64_t earliest = 0;
      for (PeerId id : backlogged_) {
        const MemberState& m = members_.at(id);
        if (m.backlog_bytes > longest ||
            (m.backlog_bytes == longest && longest > 0 && m.joined < earliest)) {
          longest = m.backlog_bytes;
          earliest = m.joined;
          drop = id;
        }
      }
      why = absl::StrCat("the room holds over ", options_.max_held_bytes, " bytes");
    }
    if (drop == 0) return;
    Close(drop, "dropped: cannot keep up", /*flush=*/false);
    Remove(now, drop, "dropped", why);
  }
}

void ServerCore::EmitSend(PeerId peer, std::string bytes) {
  ServerAction a;
  a.type = ServerAction::Type::kSend;
  a.peer = peer;
  a.bytes = std::move(bytes);
  actions_.push_back(std::move(a));
}

void ServerCore::Close(PeerId peer, std::string reason, bool flush) {
  ServerAction a;
  a.type = ServerAction::Type::kClose;
  a.peer = peer;
  a.reason = std::move(reason);
  a.flush = flush;
  actions_.push_back(std::move(a));
}

void ServerCore::Log(std::string text) {
  ServerAction a;
  a.type = ServerAction::Type::kLog;
  a.text = std::move(text);
  actions_.push_back(std::move(a));
}

}  // namespace udpmsg::chat
