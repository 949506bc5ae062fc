#include "cli/demo_chat.h"

#include <algorithm>
#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "apps/chat/client_core.h"
#include "apps/chat/rules.h"
#include "apps/chat/text.h"

namespace udpmsg::cli {
namespace {

constexpr size_t kLines = std::size(kDemoChatLines);

// A line as `udpmsg chat join` shows it, without the time and colours. The
// core has escaped every peer string in it already.
std::string DisplayText(const chat::DisplayLine& line) {
  using Kind = chat::DisplayLine::Kind;
  switch (line.kind) {
    case Kind::kSay:
      return absl::StrCat("<", line.from, "> ", line.text);
    case Kind::kMe:
      return absl::StrCat("* ", line.from, " ", line.text);
    case Kind::kPrivateOut:
      return absl::StrCat("-> ", line.to, ": ", line.text);
    case Kind::kPrivateIn:
      return absl::StrCat("<- ", line.from, ": ", line.text);
    case Kind::kJoin:
      return absl::StrCat("*** ", line.from, " joined");
    case Kind::kLeave:
      return absl::StrCat("*** ", line.from, " left",
                          line.text.empty() ? "" : absl::StrCat(" (", line.text, ")"));
    case Kind::kRename:
      return absl::StrCat("*** ", line.from, " is now known as ", line.text);
    case Kind::kSystem:
      break;
  }
  return absl::StrCat("*** ", line.text);
}

// One chat member: a ClientCore on a Host of its own.
class Member final {
 public:
  static absl::StatusOr<std::unique_ptr<Member>> Create(std::string nick,
                                                        const SocketAddress& bind) {
    HostOptions options;
    options.bind = bind;
    options.max_message_bytes = chat::kMaxMessageBytes;
    absl::StatusOr<Host> host = Host::Create(options);
    if (!host.ok()) return host.status();
    return std::unique_ptr<Member>(new Member(std::move(nick), *std::move(host)));
  }

  absl::Status Connect(const SocketAddress& server) {
    absl::StatusOr<ConnectionId> id = host_.Connect(server);
    if (!id.ok()) return Named(id.status());
    id_ = *id;
    return absl::OkStatus();
  }

  absl::Status Send(std::string message) {
    return Named(host_.Send(id_, chat::kChannel, DeliveryMode::kReliableOrdered, std::move(message))
                     .status());
  }
  absl::Status Join() { return Send(core_.JoinMessage()); }
  // What the user typing `text` sends.
  absl::Status Say(absl::string_view text) {
    chat::UserInput in = chat::ParseInput(text);
    if (in.type != chat::UserInput::Type::kSend) {
      return absl::InternalError(absl::StrCat(nick(), ": cannot say \"", text, "\": ", in.error));
    }
    return Send(std::move(in.message));
  }

  // Sends a Leave and closes, flushing, as `chat join` does on /quit.
  absl::Status Leave(absl::Duration timeout) {
    leaving_ = true;
    if (absl::Status s = Send(chat::LeaveMessage()); !s.ok()) return s;
    if (absl::Status s = host_.Close(id_, "left", /*flush=*/true); !s.ok()) return Named(s);
    return Named(host_.Flush(timeout));
  }

  // Runs the host for up to `timeout` and hands what arrived to the core.
  absl::Status Poll(absl::Duration timeout) {
    absl::StatusOr<Host::PollResult> r = host_.Poll(timeout);
    if (!r.ok()) return Named(r.status());
    for (const Event& e : r->events) {
      if (e.connection != id_) continue;
      switch (e.type) {
        case Event::Type::kConnected:
          connected_ = true;
          break;
        case Event::Type::kMessage:
          if (e.channel != chat::kChannel) break;
          if (absl::Status s = OnServerMessage(e.message); !s.ok()) return s;
          break;
        case Event::Type::kClosed:
          if (leaving_) break;
          return absl::UnavailableError(
              absl::StrCat(nick(), "'s connection closed: ", CloseReasonName(e.close_reason),
                           e.reason.empty() ? "" : ": ", chat::Displayable(e.reason)));
        case Event::Type::kAcked:
        case Event::Type::kPathChanged:
          break;
      }
    }
    return absl::OkStatus();
  }

  const std::string& nick() const { return nick_; }
  bool connected() const { return connected_; }
  bool joined() const { return core_.joined(); }
  const std::vector<chat::DisplayLine>& lines() const { return lines_; }
  // The Say lines delivered so far.
  std::vector<chat::DisplayLine> says() const {
    std::vector<chat::DisplayLine> out;
    for (const chat::DisplayLine& l : lines_) {
      if (l.kind == chat::DisplayLine::Kind::kSay) out.push_back(l);
    }
    return out;
  }
  bool SawJoinOf(absl::string_view nick) const {
    for (const chat::DisplayLine& l : lines_) {
      if (l.kind == chat::DisplayLine::Kind::kJoin && l.from == nick) return true;
    }
    return false;
  }

 private:
  Member(std::string nick, Host host) : nick_(nick), host_(std::move(host)), core_(nick) {}

  absl::Status OnServerMessage(absl::string_view bytes) {
    absl::StatusOr<std::optional<chat::ClientEvent>> e = core_.OnServerMessage(bytes);
    if (!e.ok()) return Named(e.status());
    if (!e->has_value()) return absl::OkStatus();
    const chat::ClientEvent& event = **e;
    if (event.type == chat::ClientEvent::Type::kError) {
      return absl::FailedPreconditionError(
          absl::StrCat(nick(), ": the chat server answered: ", event.text));
    }
    if (event.type == chat::ClientEvent::Type::kLine) lines_.push_back(event.line);
    return absl::OkStatus();
  }

  absl::Status Named(const absl::Status& s) const {
    if (s.ok()) return s;
    return absl::Status(s.code(), absl::StrCat(nick(), ": ", s.message()));
  }

  const std::string nick_;
  Host host_;
  chat::ClientCore core_;
  ConnectionId id_ = 0;
  bool connected_ = false;
  bool leaving_ = false;
  std::vector<chat::DisplayLine> lines_;
};

// Polls both members, a millisecond each in turn, until `done`.
absl::Status Pump(Member& a, Member& b, const std::function<bool()>& done, absl::Time deadline,
                  absl::string_view what) {
  while (!done()) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("chat: timed out waiting for ", what));
    }
    for (Member* m : {&a, &b}) {
      if (absl::Status s = m->Poll(absl::Milliseconds(1)); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

// Every line exactly once, in the script's order, from the right speaker.
absl::Status CheckSays(const Member& m, const std::vector<std::string>& expected) {
  std::vector<std::string> got;
  for (const chat::DisplayLine& l : m.says()) got.push_back(DisplayText(l));
  if (got != expected) {
    return absl::DataLossError(absl::StrCat(m.nick(), " saw the chat lines [",
                                            absl::StrJoin(got, " | "), "], expected [",
                                            absl::StrJoin(expected, " | "), "]"));
  }
  return absl::OkStatus();
}

// Both members saw the same line numbers, strictly increasing.
absl::Status CheckOneOrder(const Member& a, const Member& b) {
  std::vector<uint64_t> seq_a, seq_b;
  for (const chat::DisplayLine& l : a.says()) seq_a.push_back(l.seq);
  for (const chat::DisplayLine& l : b.says()) seq_b.push_back(l.seq);
  for (size_t i = 1; i < seq_a.size(); ++i) {
    if (seq_a[i] <= seq_a[i - 1]) {
      return absl::DataLossError(
          absl::StrCat(a.nick(), " saw line ", seq_a[i], " after line ", seq_a[i - 1]));
    }
  }
  if (seq_a != seq_b) {
    return absl::DataLossError(
        absl::StrCat(a.nick(), " and ", b.nick(), " saw different orders: lines ",
                     absl::StrJoin(seq_a, ","), " and ", absl::StrJoin(seq_b, ",")));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DemoChat> RunDemoChat(const SocketAddress& server, const SocketAddress& bind,
                                     absl::Time deadline) {
  absl::StatusOr<std::unique_ptr<Member>> alice_or = Member::Create("alice", bind);
  if (!alice_or.ok()) return alice_or.status();
  absl::StatusOr<std::unique_ptr<Member>> bob_or = Member::Create("bob", bind);
  if (!bob_or.ok()) return bob_or.status();
  Member& alice = **alice_or;
  Member& bob = **bob_or;

  if (absl::Status s = alice.Connect(server); !s.ok()) return s;
  if (absl::Status s = bob.Connect(server); !s.ok()) return s;
  if (absl::Status s = Pump(
          alice, bob, [&] { return alice.connected() && bob.connected(); }, deadline,
          "alice and bob to connect");
      !s.ok()) {
    return s;
  }
  // alice joins first, then bob: alice then shows bob joining.
  if (absl::Status s = alice.Join(); !s.ok()) return s;
  if (absl::Status s = Pump(
          alice, bob, [&] { return alice.joined(); }, deadline, "alice's Welcome");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = bob.Join(); !s.ok()) return s;
  if (absl::Status s = Pump(
          alice, bob, [&] { return bob.joined() && alice.SawJoinOf("bob"); }, deadline,
          "bob's join");
      !s.ok()) {
    return s;
  }

  std::vector<std::string> expected;
  for (size_t i = 0; i < kLines; ++i) {
    Member& speaker = i % 2 == 0 ? alice : bob;
    if (absl::Status s = speaker.Say(kDemoChatLines[i]); !s.ok()) return s;
    expected.push_back(absl::StrCat("<", speaker.nick(), "> ", kDemoChatLines[i]));
    if (absl::Status s = Pump(
            alice, bob, [&] { return alice.says().size() > i && bob.says().size() > i; }, deadline,
            absl::StrCat("line ", i + 1, " of ", kLines, " to reach both members"));
        !s.ok()) {
      return s;
    }
  }

  DemoChat out;
  for (const chat::DisplayLine& l : alice.lines()) out.alice_display.push_back(DisplayText(l));
  const absl::Duration left = std::max(deadline - absl::Now(), absl::Seconds(1));
  for (Member* m : {&alice, &bob}) {
    if (absl::Status s = m->Leave(left); !s.ok()) return s;
  }
  // What each member saw up to its leave: every line once, in one order.
  for (Member* m : {&alice, &bob}) {
    if (absl::Status s = CheckSays(*m, expected); !s.ok()) return s;
  }
  if (absl::Status s = CheckOneOrder(alice, bob); !s.ok()) return s;
  return out;
}

}  // namespace udpmsg::cli
