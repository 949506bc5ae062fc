#include "apps/chat/server_core.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "apps/chat/rules.h"
#include "apps/chat/text.h"

namespace udpmsg::chat {
namespace {

std::string Serialize(const ServerMessage& m) {
  std::string s;
  m.SerializeToString(&s);
  return s;
}

Line MakeLine(Line::Kind kind, const std::string& from, const std::string& text) {
  Line line;
  line.set_kind(kind);
  line.set_from(from);
  line.set_text(text);
  return line;
}

}  // namespace

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
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ServerCore>> ServerCore::Create(
    const ServerOptions& options, std::unique_ptr<Sequencer> sequencer) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (sequencer == nullptr) return absl::InvalidArgumentError("a ServerCore needs a Sequencer");
  return std::unique_ptr<ServerCore>(new ServerCore(options, std::move(sequencer)));
}

ServerCore::ServerCore(const ServerOptions& options, std::unique_ptr<Sequencer> sequencer)
    : options_(options), sequencer_(std::move(sequencer)) {}

std::vector<ServerAction> ServerCore::TakeActions() { return std::exchange(actions_, {}); }

std::vector<std::string> ServerCore::Members() const {
  std::vector<std::string> nicks;
  nicks.reserve(order_.size());
  for (PeerId id : order_) nicks.push_back(members_.at(id));
  return nicks;
}

std::string ServerCore::NickOf(PeerId peer) const {
  auto it = members_.find(peer);
  return it == members_.end() ? "" : it->second;
}

std::string ServerCore::Count() const {
  return absl::StrCat("(", Plural(members_.size(), "member"), ")");
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
  pending_[peer] = Pending{std::move(shown), now};
}

void ServerCore::OnMessage(absl::Time now, PeerId peer, absl::string_view bytes) {
  ClientMessage m;
  const bool parsed = bytes.size() <= kMaxMessageBytes &&
                      m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
  auto member = members_.find(peer);
  if (member == members_.end()) {
    auto pending = pending_.find(peer);
    if (pending == pending_.end()) return;  // refused and closing
    if (!parsed || !m.has_join()) {
      Refuse(peer, pending->second.address, "protocol error: expected Join");
      return;
    }
    OnJoin(now, peer, m.join().nick());
    return;
  }
  const std::string nick = member->second;
  if (!parsed) {
    Close(peer, "protocol error: malformed chat message", /*flush=*/false);
    Remove(now, peer, "protocol error", "sent a malformed message");
    return;
  }
  switch (m.body_case()) {
    case ClientMessage::kJoin:
      SendError(peer, absl::StrCat("already joined as ", nick));
      break;
    case ClientMessage::kSay:
      if (absl::Status s = CheckText(m.say().text()); !s.ok()) {
        SendError(peer, std::string(s.message()));
        break;
      }
      Deliver(now, MakeLine(Line::SAY, nick, m.say().text()), order_);
      break;
    case ClientMessage::kMe:
      if (absl::Status s = CheckText(m.me().action()); !s.ok()) {
        SendError(peer, std::string(s.message()));
        break;
      }
      Deliver(now, MakeLine(Line::ME, nick, m.me().action()), order_);
      break;
    case ClientMessage::kPrivateMessage: {
      const Private& p = m.private_message();
      auto target = by_nick_.find(NickKey(p.to()));
      if (target == by_nick_.end()) {
        SendError(peer, absl::StrCat("no member named \"", Displayable(p.to()), "\""));
        break;
      }
      if (absl::Status s = CheckText(p.text()); !s.ok()) {
        SendError(peer, std::string(s.message()));
        break;
      }
      Line line = MakeLine(Line::PRIVATE, nick, p.text());
      line.set_to(members_.at(target->second));
      std::vector<PeerId> to = {target->second};
      if (target->second != peer) to.push_back(peer);
      Deliver(now, std::move(line), to);
      break;
    }
    case ClientMessage::kRename:
      OnRename(now, peer, m.rename().nick());
      break;
    case ClientMessage::kWho: {
      ServerMessage reply;
      for (PeerId id : order_) reply.mutable_who_reply()->add_nicks(members_.at(id));
      Send(peer, Serialize(reply));
      break;
    }
    case ClientMessage::kLeave:
      Close(peer, "left", /*flush=*/true);
      Remove(now, peer, "", "");
      break;
    case ClientMessage::BODY_NOT_SET:
      SendError(peer, "empty or unknown message (is the client newer than the server?)");
      break;
  }
}

void ServerCore::OnJoin(absl::Time now, PeerId peer, const std::string& nick) {
  const std::string address = pending_.at(peer).address;
  if (absl::Status s = CheckNick(nick); !s.ok()) {
    Refuse(peer, address, std::string(s.message()));
    return;
  }
  if (members_.size() >= options_.max_members) {
    Refuse(peer, address,
           absl::StrCat("the chat is full (", Plural(options_.max_members, "member"), ")"));
    return;
  }
  if (by_nick_.contains(NickKey(nick))) {
    Refuse(peer, address, absl::StrCat("nick \"", nick, "\" is taken"));
    return;
  }
  pending_.erase(peer);
  members_[peer] = nick;
  by_nick_[NickKey(nick)] = peer;
  order_.push_back(peer);
  ServerMessage welcome;
  welcome.mutable_welcome()->set_nick(nick);
  for (PeerId id : order_) welcome.mutable_welcome()->add_members(members_.at(id));
  Send(peer, Serialize(welcome));
  Log(absl::StrCat(Displayable(nick), " joined from ", address, " ", Count()));
  Deliver(now, MakeLine(Line::JOIN, nick, ""), order_);
}

void ServerCore::OnRename(absl::Time now, PeerId peer, const std::string& nick) {
  std::string& current = members_.at(peer);
  if (absl::Status s = CheckNick(nick); !s.ok()) {
    SendError(peer, std::string(s.message()));
    return;
  }
  if (nick == current) {
    SendError(peer, absl::StrCat("you are already ", nick));
    return;
  }
  auto holder = by_nick_.find(NickKey(nick));
  if (holder != by_nick_.end() && holder->second != peer) {
    SendError(peer, absl::StrCat("nick \"", nick, "\" is taken"));
    return;
  }
  const std::string old = current;
  by_nick_.erase(NickKey(old));
  by_nick_[NickKey(nick)] = peer;
  current = nick;
  Log(absl::StrCat(Displayable(old), " is now known as ", Displayable(nick)));
  Deliver(now, MakeLine(Line::RENAME, old, nick), order_);
}

void ServerCore::OnClosed(absl::Time now, PeerId peer, CloseCause cause, absl::string_view detail) {
  pending_.erase(peer);
  if (!members_.contains(peer)) return;
  const char* why = "connection lost";
  if (cause == CloseCause::kTimedOut) why = "timed out";
  if (cause == CloseCause::kClosedByPeer) why = "connection closed";
  Remove(now, peer, why, detail);
}

void ServerCore::OnSendFailed(absl::Time now, PeerId peer, absl::string_view why) {
  if (!members_.contains(peer)) return;
  Close(peer, "dropped: cannot keep up", /*flush=*/false);
  Remove(now, peer, "dropped", why);
}

void ServerCore::OnTick(absl::Time now) {
  std::vector<PeerId> expired;
  for (const auto& [id, p] : pending_) {
    if (now - p.since >= options_.join_timeout) expired.push_back(id);
  }
  std::sort(expired.begin(), expired.end());  // a deterministic order
  for (PeerId id : expired) {
    Log(absl::StrCat("closing ", pending_.at(id).address, ": no Join within ",
                     absl::FormatDuration(options_.join_timeout)));
    pending_.erase(id);
    Close(id, "no Join", /*flush=*/false);
  }
}

absl::Time ServerCore::NextDeadline() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [id, p] : pending_) next = std::min(next, p.since + options_.join_timeout);
  return next;
}

void ServerCore::Shutdown(absl::Time now) {
  Log(absl::StrCat("shutting down ", Count()));
  Deliver(now, MakeLine(Line::SYSTEM, "", "server shutting down"), order_);
  for (PeerId id : order_) Close(id, "server shutting down", /*flush=*/true);
  std::vector<PeerId> pending;
  for (const auto& [id, p] : pending_) pending.push_back(id);
  std::sort(pending.begin(), pending.end());
  for (PeerId id : pending) Close(id, "server shutting down", /*flush=*/false);
  members_.clear();
  by_nick_.clear();
  order_.clear();
  pending_.clear();
}

void ServerCore::Refuse(PeerId peer, std::string address, const std::string& why) {
  pending_.erase(peer);
  ServerMessage m;
  m.mutable_error()->set_text(why);
  m.mutable_error()->set_fatal(true);
  Send(peer, Serialize(m));
  Close(peer, why, /*flush=*/true);
  Log(absl::StrCat("refused ", address, ": ", Displayable(why)));
}

void ServerCore::SendError(PeerId peer, const std::string& text) {
  ServerMessage m;
  m.mutable_error()->set_text(text);
  Send(peer, Serialize(m));
}

void ServerCore::Deliver(absl::Time now, Line line, const std::vector<PeerId>& to) {
  line.set_seq(sequencer_->Next());
  line.set_time_ms(absl::ToUnixMillis(now));
  ServerMessage m;
  *m.mutable_line() = std::move(line);
  const std::string bytes = Serialize(m);
  for (PeerId id : to) Send(id, bytes);
}

void ServerCore::Remove(absl::Time now, PeerId peer, const std::string& why,
                        absl::string_view detail) {
  auto it = members_.find(peer);
  if (it == members_.end()) return;
  const std::string nick = it->second;
  members_.erase(it);
  by_nick_.erase(NickKey(nick));
  order_.erase(std::remove(order_.begin(), order_.end(), peer), order_.end());
  std::string log = absl::StrCat(Displayable(nick), " left");
  if (!why.empty()) {
    absl::StrAppend(&log, " (", why, detail.empty() ? "" : ": ", Displayable(detail), ")");
  }
  Log(absl::StrCat(log, " ", Count()));
  Deliver(now, MakeLine(Line::LEAVE, nick, why), order_);
}

void ServerCore::Send(PeerId peer, std::string bytes) {
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
