#include "apps/chat/client_core.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/rules.h"
#include "apps/chat/text.h"

namespace udpmsg::chat {
namespace {

std::string Serialize(const ClientMessage& m) {
  std::string s;
  m.SerializeToString(&s);
  return s;
}

UserInput SendInput(const ClientMessage& m) {
  UserInput in;
  in.type = UserInput::Type::kSend;
  in.message = Serialize(m);
  return in;
}

UserInput ErrorInput(std::string text) {
  UserInput in;
  in.type = UserInput::Type::kError;
  in.error = std::move(text);
  return in;
}

UserInput PlainInput(UserInput::Type type) {
  UserInput in;
  in.type = type;
  return in;
}

UserInput SayInput(absl::string_view text) {
  if (absl::Status s = CheckText(text); !s.ok()) return ErrorInput(std::string(s.message()));
  ClientMessage m;
  m.mutable_say()->set_text(std::string(text));
  return SendInput(m);
}

}  // namespace

std::string JoinMessage(absl::string_view nick, absl::string_view resume_token, uint64_t last_seq) {
  ClientMessage m;
  m.mutable_join()->set_nick(std::string(nick));
  if (!resume_token.empty()) m.mutable_join()->set_resume_token(std::string(resume_token));
  m.mutable_join()->set_last_seq(last_seq);
  return Serialize(m);
}

std::string LeaveMessage(absl::string_view reason) {
  ClientMessage m;
  m.mutable_leave();
  if (!reason.empty()) m.mutable_leave()->set_reason(CutUtf8(reason, kMaxLeaveReasonBytes));
  return Serialize(m);
}

UserInput ParseInput(absl::string_view raw) {
  if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
  const std::string line = ValidUtf8(raw);
  if (absl::StripAsciiWhitespace(line).empty()) return PlainInput(UserInput::Type::kNothing);
  if (line[0] != '/' || absl::StartsWith(line, "//")) {
    return SayInput(line[0] == '/' ? absl::string_view(line).substr(1) : absl::string_view(line));
  }
  absl::string_view rest = line;
  rest.remove_prefix(1);
  const size_t space = rest.find(' ');
  const std::string command = absl::AsciiStrToLower(rest.substr(0, space));
  absl::string_view args =
      space == absl::string_view::npos ? absl::string_view() : rest.substr(space + 1);
  args = absl::StripLeadingAsciiWhitespace(args);
  ClientMessage m;
  if (command == "quit" || command == "exit") {
    UserInput in = PlainInput(UserInput::Type::kQuit);
    in.reason = CutUtf8(absl::StripAsciiWhitespace(args), kMaxLeaveReasonBytes);
    return in;
  }
  if (command == "stats") return PlainInput(UserInput::Type::kStats);
  if (command == "help") return PlainInput(UserInput::Type::kHelp);
  if (command == "who") {
    m.mutable_who();
    return SendInput(m);
  }
  if (command == "nick") {
    const std::string nick(absl::StripAsciiWhitespace(args));
    if (absl::Status s = CheckNick(nick); !s.ok()) {
      return ErrorInput(nick.empty() ? "usage: /nick NEW" : std::string(s.message()));
    }
    m.mutable_rename()->set_nick(nick);
    return SendInput(m);
  }
  if (command == "me") {
    if (absl::Status s = CheckText(args); !s.ok()) {
      return ErrorInput(args.empty() ? "usage: /me ACTION" : std::string(s.message()));
    }
    m.mutable_me()->set_action(std::string(args));
    return SendInput(m);
  }
  if (command == "msg") {
    const size_t gap = args.find(' ');
    const absl::string_view to = args.substr(0, gap);
    const absl::string_view text = gap == absl::string_view::npos
                                       ? absl::string_view()
                                       : absl::StripLeadingAsciiWhitespace(args.substr(gap + 1));
    if (to.empty() || text.empty()) return ErrorInput("usage: /msg NICK TEXT");
    if (absl::Status s = CheckText(text); !s.ok()) return ErrorInput(std::string(s.message()));
    m.mutable_private_message()->set_to(std::string(to));
    m.mutable_private_message()->set_text(std::string(text));
    return SendInput(m);
  }
  return ErrorInput(absl::StrCat("unknown command /", Displayable(command), " (try /help)"));
}

absl::StatusOr<std::optional<ClientEvent>> ClientCore::OnServerMessage(absl::string_view bytes) {
  ServerMessage m;
  if (bytes.size() > kMaxMessageBytes ||
      !m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("malformed server message");
  }
  ClientEvent e;
  switch (m.body_case()) {
    case ServerMessage::kWelcome:
      nick_ = m.welcome().nick();
      joined_ = true;
      e.type = ClientEvent::Type::kWelcome;
      e.nick = Displayable(nick_);
      for (const std::string& n : m.welcome().members()) e.nicks.push_back(Displayable(n));
      e.member_count = std::max<uint64_t>(m.welcome().member_count(), e.nicks.size());
      if (m.welcome().resume_token().size() >= kResumeTokenBytes &&
          m.welcome().resume_token().size() <= kMaxResumeTokenBytes) {
        e.resume_token = m.welcome().resume_token();
      }
      return e;
    case ServerMessage::kError:
      if (m.error().fatal()) return absl::FailedPreconditionError(Displayable(m.error().text()));
      e.type = ClientEvent::Type::kError;
      e.text = Displayable(m.error().text());
      return e;
    case ServerMessage::kLine:
      return OnLine(m.line());
    case ServerMessage::kWhoReply:
      e.type = ClientEvent::Type::kWhoReply;
      for (const std::string& n : m.who_reply().nicks()) e.nicks.push_back(Displayable(n));
      e.member_count = std::max<uint64_t>(m.who_reply().count(), e.nicks.size());
      return e;
    case ServerMessage::kProbe:  // the transport's acknowledgement is the answer
    case ServerMessage::BODY_NOT_SET:
      break;  // from a newer server: ignore
  }
  return std::nullopt;
}

ClientEvent ClientCore::OnLine(const Line& line) {
  ClientEvent e;
  e.type = ClientEvent::Type::kLine;
  DisplayLine& d = e.line;
  d.seq = line.seq();
  last_seq_ = std::max(last_seq_, line.seq());
  d.time = absl::FromUnixMillis(line.time_ms());
  d.from = Displayable(line.from());
  d.text = Displayable(line.text());
  switch (line.kind()) {
    case Line::SAY:
      d.kind = DisplayLine::Kind::kSay;
      break;
    case Line::ME:
      d.kind = DisplayLine::Kind::kMe;
      break;
    case Line::PRIVATE:
      if (NickKey(line.from()) == NickKey(nick_)) {
        d.kind = DisplayLine::Kind::kPrivateOut;
        d.to = Displayable(line.to());
      } else {
        d.kind = DisplayLine::Kind::kPrivateIn;
      }
      break;
    case Line::JOIN:
      d.kind = DisplayLine::Kind::kJoin;
      break;
    case Line::LEAVE:
      d.kind = DisplayLine::Kind::kLeave;
      break;
    case Line::RENAME:
      if (line.from() == nick_) nick_ = line.text();
      d.kind = DisplayLine::Kind::kRename;
      break;
    case Line::SYSTEM:
    default:
      d.kind = DisplayLine::Kind::kSystem;
      break;
  }
  return e;
}

}  // namespace udpmsg::chat
