#include "cli/chat_client.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "apps/chat/rules.h"
#include "apps/chat/text.h"
#include "cli/common.h"

namespace udpmsg::cli {
namespace {

// The client stops reading stdin while this much is queued to the server.
constexpr uint64_t kPauseStdinBytes = 256 << 10;
constexpr uint64_t kStdinToken = 1;
constexpr uint64_t kSignalToken = 2;

}  // namespace

HostOptions ChatOptions(absl::Duration timeout) {
  HostOptions o;
  o.handshake_timeout = timeout;
  o.peer_timeout = timeout;
  o.idle_timeout = timeout;
  o.keepalive = std::clamp(timeout / 4, absl::Milliseconds(50), absl::Seconds(5));
  o.max_message_bytes = chat::kMaxMessageBytes;
  return o;
}

namespace {

chat::SessionOptions WithServers(chat::SessionOptions options, size_t servers) {
  options.servers = servers;
  return options;
}

}  // namespace

ChatClient::ChatClient(Host* host, ChatClientConfig config)
    : host_(host),
      config_(std::move(config)),
      session_(config_.nick, WithServers(config_.session, config_.servers.size())) {}

absl::Status ChatClient::Run() {
  if (absl::Status s = host_->Watch(config_.signal_fd, kSignalToken); !s.ok()) return s;
  if (absl::Status s = Connect(); !s.ok()) return s;
  for (;;) {
    const absl::Time now = absl::Now();
    if ((state_ == State::kConnecting || state_ == State::kJoining) && now >= attempt_deadline_) {
      const std::string what =
          absl::StrCat(state_ == State::kConnecting ? "cannot connect to " : "no welcome from ",
                       server().ToString(), " within ", absl::FormatDuration(config_.timeout));
      (void)host_->Close(id_, "gave up", /*flush=*/false);
      if (absl::Status s = Ended(chat::EndCause::kAttemptFailed, what,
                                 absl::DeadlineExceededError(what));
          !s.ok()) {
        return s;
      }
    }
    if (state_ == State::kWaiting && now >= next_attempt_) {
      if (absl::Status s = Connect(); !s.ok()) return s;
    }
    UpdateStdinPause();
    const bool poll_stdin = stdin_ == StdinMode::kAlwaysReady && !paused_;
    absl::Duration wait = poll_stdin ? absl::ZeroDuration() : absl::Milliseconds(250);
    if (state_ == State::kWaiting) {
      wait = std::clamp(next_attempt_ - now, absl::ZeroDuration(), wait);
    }
    absl::StatusOr<Host::PollResult> r = host_->Poll(wait);
    if (!r.ok()) return r.status();
    for (const Event& e : r->events) {
      if (e.connection != id_ || id_ == 0) continue;  // an ended attempt's
      if (absl::Status s = OnEvent(e); !s.ok()) return s;
    }
    for (uint64_t token : r->ready) {
      if (token == kSignalToken && DrainSignals(config_.signal_fd)) quit_ = true;
      if (token == kStdinToken) ReadStdin();
    }
    if (poll_stdin) ReadStdin();
    if (!failure_.ok()) {
      (void)Leave();
      return failure_;
    }
    if (quit_) return Leave();
  }
}

absl::Status ChatClient::Connect() {
  absl::StatusOr<ConnectionId> id = host_->Connect(server());
  if (!id.ok()) {
    id_ = 0;
    const std::string what =
        session_.ever_joined()
            ? std::string(id.status().message())
            : absl::StrCat("cannot connect to ", server().ToString(), ": ", id.status().message());
    return Ended(chat::EndCause::kAttemptFailed, what, id.status());
  }
  id_ = *id;
  state_ = State::kConnecting;
  attempt_deadline_ = absl::Now() + config_.timeout + absl::Seconds(1);
  return absl::OkStatus();
}

absl::Status ChatClient::Ended(chat::EndCause cause, const std::string& reason,
                               absl::Status error) {
  const bool was_chatting = state_ == State::kChatting;
  const bool first = !session_.ever_joined();
  id_ = 0;
  state_ = State::kWaiting;
  chat::ClientSession::Ended end = session_.OnEnded(absl::Now(), cause);  // may move server()
  for (const std::string& line : end.unconfirmed) {
    Notice(absl::StrCat("maybe not sent (connection lost): ", line));
  }
  if (end.unconfirmed_more > 0) {
    Notice(absl::StrCat("and ", end.unconfirmed_more, " more lines maybe not sent"));
  }
  if (!end.reconnect) return error;
  next_attempt_ = absl::Now() + end.delay;
  if (first) {  // the first connection: the next server at once
    Notice(absl::StrCat(reason, "; trying ", server().ToString()));
    return absl::OkStatus();
  }
  const std::string in = absl::FormatDuration(absl::Ceil(end.delay, absl::Milliseconds(100)));
  Notice(
      absl::StrCat(was_chatting || cause != chat::EndCause::kAttemptFailed ? "connection lost: "
                                                                           : "reconnect failed: ",
                   reason, "; reconnecting ",
                   config_.servers.size() > 1 ? absl::StrCat("to ", server().ToString(), " ") : "",
                   "in ", in, " (Ctrl-C to quit)"));
  return absl::OkStatus();
}

void ChatClient::RestoreTerminal() {
  if (prompt_shown_) (void)WriteAll(STDOUT_FILENO, "\r\x1b[K");
  prompt_shown_ = false;
  paste_.Restore();
  raw_.Restore();
  nonblocking_.Restore();
}

absl::Status ChatClient::OnEvent(const Event& e) {
  switch (e.type) {
    case Event::Type::kConnected:
      if (config_.on_connected) {
        if (absl::Status s = config_.on_connected(e.server_identity); !s.ok()) return s;
      }
      state_ = State::kJoining;
      (void)host_->Send(id_, chat::kChannel, DeliveryMode::kReliableOrdered,
                        session_.JoinMessage());
      return absl::OkStatus();
    case Event::Type::kClosed: {
      // The reason may come from the server: escape it.
      const std::string reason = chat::Displayable(e.reason);
      if (state_ == State::kConnecting) {
        const std::string what = absl::StrCat("cannot connect to ", server().ToString(), ": ",
                                              e.by_peer ? "refused: " : "", reason);
        return Ended(chat::EndCause::kAttemptFailed, what, absl::UnavailableError(what));
      }
      const std::string why =
          absl::StrCat(e.by_peer ? "server closed the connection: " : "", reason);
      const absl::Status error = absl::UnavailableError(
          absl::StrCat("lost connection to server ", server().ToString(), ": ", why));
      if (!session_.ever_joined()) return error;
      return Ended(chat::ClassifyClose(e.by_peer, IsTimeout(e.close_reason), e.reason), why,
                   error);
    }
    case Event::Type::kMessage:
      if (e.channel != chat::kChannel) return absl::OkStatus();
      return OnServerMessage(e.message);
    case Event::Type::kAcked:
      if (e.channel == chat::kChannel) session_.OnAcked(e.sequence);
      return absl::OkStatus();
    case Event::Type::kPathChanged:  // servers only: clients never move
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status ChatClient::OnServerMessage(const std::string& bytes) {
  const bool rejoin = session_.ever_joined();
  absl::StatusOr<std::optional<chat::ClientEvent>> e =
      session_.OnServerMessage(absl::Now(), bytes);
  if (!e.ok()) {
    if (absl::IsDataLoss(e.status())) {
      return absl::DataLossError(
          absl::StrCat("server ", server().ToString(), " sent a malformed message"));
    }
    return e.status();
  }
  if (!e->has_value()) return absl::OkStatus();
  if ((*e)->type == chat::ClientEvent::Type::kWelcome) {
    state_ = State::kChatting;
    if (rejoin) {
      Notice(absl::StrCat("reconnected to ", server().ToString(), " as ", Nick((*e)->nick), "; ",
                          Roster((*e)->member_count, (*e)->nicks)));
      UpdateStdinPause();
      return absl::OkStatus();
    }
    if (absl::Status s = StartInput(); !s.ok()) return s;
  }
  Show(**e);
  NoteMembers(**e, &editor_.nicks());
  return absl::OkStatus();
}

std::string ChatClient::Roster(uint64_t count, const std::vector<std::string>& listed) const {
  std::vector<std::string> nicks;
  for (const std::string& n : listed) nicks.push_back(Nick(n));
  std::string s = absl::StrCat(chat::Plural(count, "member"), ": ", absl::StrJoin(nicks, ", "));
  if (count > listed.size()) absl::StrAppend(&s, " and ", count - listed.size(), " more");
  return s;
}

void ChatClient::Show(const chat::ClientEvent& e) {
  switch (e.type) {
    case chat::ClientEvent::Type::kWelcome:
      Notice(absl::StrCat("connected to ", server().ToString(), " as ", Nick(e.nick), "; ",
                          Roster(e.member_count, e.nicks)));
      break;
    case chat::ClientEvent::Type::kError:
      Error(e.text);
      break;
    case chat::ClientEvent::Type::kLine:
      ShowLine(e.line);
      break;
    case chat::ClientEvent::Type::kWhoReply: {
      Notice(Roster(e.member_count, e.nicks));
      break;
    }
  }
}

void ChatClient::ShowLine(const chat::DisplayLine& line) {
  using Kind = chat::DisplayLine::Kind;
  const std::string from = Nick(line.from);
  const std::string& text = line.text;
  switch (line.kind) {
    case Kind::kSay:
      Print(line.time, absl::StrCat("<", from, "> ", text));
      break;
    case Kind::kMe:
      Print(line.time, absl::StrCat("* ", from, " ", text));
      break;
    case Kind::kPrivateOut:
      Print(line.time, absl::StrCat("-> ", Nick(line.to), ": ", text));
      break;
    case Kind::kPrivateIn:
      Print(line.time, absl::StrCat("<- ", from, ": ", text));
      break;
    case Kind::kJoin:
      Print(line.time, absl::StrCat(Stars(), " ", from, " joined"));
      break;
    case Kind::kLeave:
      Print(line.time, absl::StrCat(Stars(), " ", from, " left",
                                    text.empty() ? "" : absl::StrCat(" (", text, ")")));
      break;
    case Kind::kRename:
      Print(line.time, absl::StrCat(Stars(), " ", from, " is now known as ", Nick(text)));
      break;
    case Kind::kSystem:
      Print(line.time, absl::StrCat(Stars(), " ", text));
      break;
  }
}

// ---- input

absl::Status ChatClient::StartInput() {
  if (config_.interactive) {
    if (absl::Status s = raw_.Enter(STDIN_FILENO); !s.ok()) return s;
    paste_.Enable(STDOUT_FILENO);
    prompt_shown_ = true;
  }
  if (absl::Status s = nonblocking_.Set(STDIN_FILENO); !s.ok()) return s;
  // epoll refuses regular files (stdin redirected from a file): they are
  // always readable, so the loop just reads them between polls.
  stdin_ =
      host_->Watch(STDIN_FILENO, kStdinToken).ok() ? StdinMode::kWatched : StdinMode::kAlwaysReady;
  Redraw();
  return absl::OkStatus();
}

// Stops reading stdin while much is queued for the server; resumes later.
void ChatClient::UpdateStdinPause() {
  if (stdin_ != StdinMode::kWatched && stdin_ != StdinMode::kAlwaysReady) return;
  const bool over = state_ == State::kChatting && host_->QueuedBytes(id_) > kPauseStdinBytes;
  if (over == paused_) return;
  paused_ = over;
  if (stdin_ != StdinMode::kWatched) return;
  absl::Status s = over ? host_->Unwatch(STDIN_FILENO) : host_->Watch(STDIN_FILENO, kStdinToken);
  if (!s.ok()) failure_ = s;
}

void ChatClient::ReadStdin() {
  if (stdin_ != StdinMode::kWatched && stdin_ != StdinMode::kAlwaysReady) return;
  char buffer[65536];
  while (!paused_ && !quit_ && failure_.ok()) {
    const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) {
      failure_ = ErrnoStatus(errno, "read stdin");
      return;
    }
    if (n == 0) {
      if (stdin_ == StdinMode::kWatched) (void)host_->Unwatch(STDIN_FILENO);
      stdin_ = StdinMode::kClosed;
      if (!config_.interactive && !partial_.empty()) HandleInput(std::exchange(partial_, ""));
      quit_ = true;
      return;
    }
    const absl::string_view data(buffer, static_cast<size_t>(n));
    if (config_.interactive) {
      OnKeys(data);
    } else {
      OnScripted(data);
    }
    UpdateStdinPause();
  }
}

// Scripted input: one message or command per line.
void ChatClient::OnScripted(absl::string_view data) {
  while (!data.empty() && !quit_) {
    const size_t newline = data.find('\n');
    const absl::string_view piece = data.substr(0, newline);
    if (!discarding_) partial_.append(piece.data(), piece.size());
    if (partial_.size() > chat::kMaxTextBytes + 1024) {
      if (!discarding_) {
        Error(absl::StrCat("line too long (at most ", chat::kMaxTextBytes, " bytes)"));
      }
      discarding_ = true;
      partial_.clear();
    }
    if (newline == absl::string_view::npos) return;
    data.remove_prefix(newline + 1);
    if (!discarding_) HandleInput(std::exchange(partial_, ""));
    discarding_ = false;
  }
}

// Interactive input: keys in raw mode, edited by the LineEditor.
void ChatClient::OnKeys(absl::string_view data) {
  for (const LineEditor::Event& e : editor_.Feed(data)) {
    if (quit_) break;
    switch (e.type) {
      case LineEditor::Event::Type::kLine:
        HandleInput(e.text);
        break;
      case LineEditor::Event::Type::kQuit:
        quit_ = true;
        break;
      case LineEditor::Event::Type::kClearScreen:
        Write("\x1b[H\x1b[2J");
        break;
      case LineEditor::Event::Type::kBell:
        Write("\a");
        break;
      case LineEditor::Event::Type::kTooLong:
        Notice(absl::StrCat("line too long: kept the first ", e.kept, " bytes"));
        break;
    }
  }
  Redraw();
}

// A message or a /command, from either input mode.
void ChatClient::HandleInput(absl::string_view line) {
  chat::UserInput in = chat::ParseInput(line);
  switch (in.type) {
    case chat::UserInput::Type::kNothing:
      break;
    case chat::UserInput::Type::kSend:
      if (state_ != State::kChatting) {
        // Never silently: say so, and give the line back to edit or resend.
        Notice(absl::StrCat("not sent (not connected): ", chat::Displayable(line)));
        if (config_.interactive && editor_.Restore(line)) Redraw();
        break;
      }
      Send(in.message, line);
      break;
    case chat::UserInput::Type::kQuit:
      leave_reason_ = std::move(in.reason);
      quit_ = true;
      break;
    case chat::UserInput::Type::kStats:
      Stats();
      break;
    case chat::UserInput::Type::kHelp:
      Notice(chat::kHelpText);
      break;
    case chat::UserInput::Type::kError:
      Error(in.error);
      break;
  }
}

void ChatClient::Send(const std::string& message, absl::string_view line) {
  absl::StatusOr<uint64_t> seq =
      host_->Send(id_, chat::kChannel, DeliveryMode::kReliableOrdered, message);
  if (seq.ok()) {
    session_.OnSent(*seq, line);  // reported if never acknowledged
    return;
  }
  Error(absl::StrCat("not sent: ", seq.status().message(), ": ", chat::Displayable(line)));
}

void ChatClient::Stats() {
  absl::StatusOr<ConnectionStats> s = host_->Stats(id_);
  if (!s.ok()) {
    Error(std::string(s.status().message()));
    return;
  }
  const double loss = s->packets_sent == 0 ? 0.0 : 100.0 * s->packets_lost / s->packets_sent;
  Notice(absl::StrFormat(
      "stats: rtt %.1fms (min %.1fms), sent %d packets, lost %d (%.1f%%), retransmitted %d "
      "fragments, received %d packets (%d duplicates), %d messages sent, %d delivered",
      absl::ToDoubleMilliseconds(s->srtt), absl::ToDoubleMilliseconds(s->min_rtt), s->packets_sent,
      s->packets_lost, loss, s->fragments_retransmitted, s->packets_received, s->duplicate_packets,
      s->messages_sent, s->messages_delivered));
}

// Sends Leave and waits until the server has it (and everything before).
absl::Status ChatClient::Leave() {
  if (state_ != State::kChatting) {
    if (id_ != 0) (void)host_->Close(id_, "gave up", /*flush=*/false);
    return absl::OkStatus();
  }
  if (host_->IsEstablished(id_)) {
    (void)host_->Send(id_, chat::kChannel, DeliveryMode::kReliableOrdered,
                      chat::LeaveMessage(leave_reason_));
    (void)host_->Close(id_, "left", /*flush=*/true);
  }
  if (absl::Status s = host_->Flush(config_.timeout); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("lost connection to server ", server().ToString(), ": ", s.message()));
  }
  return absl::OkStatus();
}

// ---- output

std::string ChatClient::Color(absl::string_view code, absl::string_view text) const {
  if (!config_.color) return std::string(text);
  return absl::StrCat("\x1b[", code, "m", text, "\x1b[0m");
}

// A nick, coloured by a hash of its (case-folded) name.
std::string ChatClient::Nick(absl::string_view nick) const {
  const std::string shown = chat::Displayable(nick);
  if (!config_.color) return shown;
  uint32_t h = 2166136261u;
  for (char c : chat::NickKey(nick)) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return Color(absl::StrCat("1;3", 1 + h % 6), shown);
}

std::string ChatClient::Stars() const { return Color("33", "***"); }

void ChatClient::Notice(const std::string& text) {
  Print(absl::Now(), absl::StrCat(Stars(), " ", text));
}

void ChatClient::Error(const std::string& text) {
  Print(absl::Now(), absl::StrCat(Color("31", "*** error:"), " ", text));
}

// One complete line: on a TTY above the prompt, with a timestamp.
void ChatClient::Print(absl::Time at, const std::string& line) {
  std::string out;
  if (config_.interactive) {
    absl::StrAppend(&out, "\r\x1b[K",
                    Color("2", absl::FormatTime("[%H:%M]", at, absl::LocalTimeZone())), " ", line,
                    "\n");
    if (prompt_shown_) absl::StrAppend(&out, PromptText());
  } else {
    out = absl::StrCat(line, "\n");
  }
  Write(out);
}

std::string ChatClient::PromptText() { return editor_.Render("> ", TerminalColumns()); }

void ChatClient::Redraw() {
  if (prompt_shown_) Write(PromptText());
}

void ChatClient::Write(const std::string& out) {
  if (!WriteAll(STDOUT_FILENO, out) && failure_.ok()) {
    failure_ = ErrnoStatus(errno, "write stdout");
  }
}

}  // namespace udpmsg::cli
