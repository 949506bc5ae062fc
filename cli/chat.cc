// chat serve / chat join: a multi-party chat over the reliable runtime.
//
// One server, any number of members, each on its own reliable connection.
// Every message is a protobuf (proto/chat.proto) sent reliable-ordered on
// channel 0. The server puts every line it delivers into one total order
// (Line.seq) and sends it to its recipients in that order, so all members see
// the same conversation in the same order, their own lines included (a client
// prints what it says only when the server echoes it).
//
// The client runs one Poll loop for the network, stdin (Runtime::Watch) and
// signals (a signalfd). On a TTY (stdin and stdout) it edits a line in raw
// mode under a "> " prompt and prints incoming lines above it; otherwise each
// stdin line is a message and each delivered line one stdout line.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "cli/security.h"
#include "proto/chat.pb.h"
#include "proto/frames.h"
#include "reliable/runtime.h"
#include "udp/errno_status.h"
#include "udp/owned_fd.h"
#include "udp/resolve.h"

namespace udpmsg::cli {
namespace {

using reliable::ConnectionId;
using reliable::DeliveryMode;
using reliable::Event;
using reliable::Runtime;

constexpr char kCommand[] = "chat";
constexpr uint32_t kChannel = 0;
constexpr size_t kMaxTextBytes = 4096;
constexpr size_t kMaxNickBytes = 32;
constexpr int kMaxMembersLimit = 1024;
// Largest protobuf accepted from a peer: a Line or a WhoReply of 1024 nicks
// fits with room to spare.
constexpr uint64_t kMaxMessageBytes = 256 << 10;
// The client stops reading stdin while this much is queued to the server.
constexpr uint64_t kPauseStdinBytes = 256 << 10;
constexpr uint64_t kStdinToken = 1;
constexpr uint64_t kSignalToken = 2;

// ---- text ------------------------------------------------------------------


// `s` with every invalid UTF-8 byte replaced by U+FFFD (protobuf strings must
// be valid UTF-8).
std::string ValidUtf8(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8Length(s, i);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

// `s` safe for a terminal: control characters (C0, DEL, C1) escaped as \xNN
// or \uNNNN, a tab as a space; printable ASCII and other UTF-8 kept.
std::string Displayable(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = Utf8Length(s, i);
    if (n == 1) {
      if (c >= 0x20 && c < 0x7f) {
        out.push_back(static_cast<char>(c));
      } else if (c == '\t') {
        out.push_back(' ');
      } else {
        absl::StrAppendFormat(&out, "\\x%02x", c);
      }
      ++i;
    } else if (n == 2 && c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0) {
      absl::StrAppendFormat(&out, "\\u%04x", static_cast<unsigned char>(s[i + 1]));
      i += 2;
    } else if (n == 0) {
      absl::StrAppendFormat(&out, "\\x%02x", c);
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

// Nicks compare case-insensitively (ASCII): "Bob" and "bob" are one nick.
std::string NickKey(absl::string_view nick) { return absl::AsciiStrToLower(nick); }

absl::Status CheckNick(absl::string_view nick) {
  if (nick.empty()) return absl::InvalidArgumentError("a nick must not be empty");
  if (nick.size() > kMaxNickBytes) {
    return absl::InvalidArgumentError(absl::StrCat("nick \"", Displayable(nick.substr(0, 40)),
                                                   nick.size() > 40 ? "..." : "", "\" is too long (",
                                                   nick.size(), " characters, at most ",
                                                   kMaxNickBytes, ")"));
  }
  for (char c : nick) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          absl::StrCat("nick \"", Displayable(nick),
                       "\" is invalid: use printable ASCII characters without spaces"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckText(absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("empty message");
  if (text.size() > kMaxTextBytes) {
    return absl::InvalidArgumentError(absl::StrCat("message too long (", text.size(),
                                                   " bytes, at most ", kMaxTextBytes, ")"));
  }
  return absl::OkStatus();
}

std::string Plural(size_t n, absl::string_view word) {
  return absl::StrCat(n, " ", word, n == 1 ? "" : "s");
}

// ---- shared setup ----------------------------------------------------------


// A silent peer is dropped after `timeout`; keepalives every quarter of it
// keep a live but quiet connection well clear of that, even under loss.
reliable::EndpointOptions ChatOptions(absl::Duration timeout) {
  reliable::EndpointOptions o;
  o.connection.handshake_timeout = timeout;
  o.connection.peer_timeout = timeout;
  o.connection.idle_timeout = timeout;
  o.connection.keepalive =
      std::clamp(timeout / 4, absl::Milliseconds(50), absl::Seconds(5));
  o.connection.max_message_bytes = kMaxMessageBytes;
  return o;
}

// Blocks `signals` and returns a signalfd that reports them.
absl::StatusOr<udp::OwnedFd> SignalFd(std::initializer_list<int> signals) {
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : signals) sigaddset(&mask, s);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return udp::ErrnoStatus(errno, "sigprocmask");
  udp::OwnedFd fd(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) return udp::ErrnoStatus(errno, "signalfd");
  return fd;
}

// Reads every pending siginfo; true if any signal was pending.
bool DrainSignals(int fd) {
  bool any = false;
  signalfd_siginfo info;
  while (::read(fd, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) any = true;
  return any;
}

std::string Serialize(const google::protobuf::MessageLite& m) {
  std::string s;
  m.SerializeToString(&s);
  return s;
}

// ---- server ----------------------------------------------------------------

class Server {
 public:
  Server(Runtime* rt, absl::Duration timeout, size_t max_members)
      : rt_(rt), timeout_(timeout), max_members_(max_members) {}

  // Serves until a signal arrives on `signal_fd`; then says goodbye.
  absl::Status Run(int signal_fd) {
    if (absl::Status s = rt_->Watch(signal_fd, kSignalToken); !s.ok()) return s;
    for (;;) {
      absl::StatusOr<Runtime::PollResult> r = rt_->Poll(absl::Seconds(1));
      if (!r.ok()) return r.status();
      for (Event& e : r->events) {
        switch (e.type) {
          case Event::Type::kConnected:
            pending_[e.connection] = Pending{e.peer, absl::Now()};
            break;
          case Event::Type::kMessage:
            if (e.channel == kChannel) OnMessage(e);
            break;
          case Event::Type::kClosed:
            OnClosed(e);
            break;
          case Event::Type::kAcked:
            break;
        }
        Reap();
      }
      for (uint64_t token : r->ready) {
        if (token == kSignalToken && DrainSignals(signal_fd)) return Shutdown();
      }
      ExpirePending();
    }
  }

 private:
  struct Member {
    std::string nick;
    udp::SocketAddress peer;
  };
  struct Pending {
    udp::SocketAddress peer;
    absl::Time since;
  };

  static void Log(const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }

  std::string Count() const { return absl::StrCat("(", Plural(members_.size(), "member"), ")"); }

  void OnMessage(const Event& e) {
    chat::ClientMessage m;
    const bool parsed = m.ParseFromString(e.message);
    auto member = members_.find(e.connection);
    if (member == members_.end()) {
      if (!pending_.contains(e.connection)) return;  // refused and closing
      if (!parsed || !m.has_join()) {
        Refuse(e.connection, e.peer, "protocol error: expected Join");
        return;
      }
      OnJoin(e.connection, e.peer, m.join().nick());
      return;
    }
    const ConnectionId id = e.connection;
    const std::string nick = member->second.nick;
    if (!parsed) {
      (void)rt_->Close(id, "protocol error: malformed chat message", false);
      Remove(id, "protocol error", "sent a malformed message");
      return;
    }
    switch (m.body_case()) {
      case chat::ClientMessage::kJoin:
        SendError(id, absl::StrCat("already joined as ", nick));
        break;
      case chat::ClientMessage::kSay:
        if (absl::Status s = CheckText(m.say().text()); !s.ok()) {
          SendError(id, std::string(s.message()));
          break;
        }
        Deliver(MakeLine(chat::Line::SAY, nick, m.say().text()), order_);
        break;
      case chat::ClientMessage::kMe:
        if (absl::Status s = CheckText(m.me().action()); !s.ok()) {
          SendError(id, std::string(s.message()));
          break;
        }
        Deliver(MakeLine(chat::Line::ME, nick, m.me().action()), order_);
        break;
      case chat::ClientMessage::kPrivateMessage: {
        const chat::Private& p = m.private_message();
        auto target = by_nick_.find(NickKey(p.to()));
        if (target == by_nick_.end()) {
          SendError(id, absl::StrCat("no member named \"", Displayable(p.to()), "\""));
          break;
        }
        if (absl::Status s = CheckText(p.text()); !s.ok()) {
          SendError(id, std::string(s.message()));
          break;
        }
        chat::Line line = MakeLine(chat::Line::PRIVATE, nick, p.text());
        line.set_to(members_[target->second].nick);
        std::vector<ConnectionId> to = {target->second};
        if (target->second != id) to.push_back(id);
        Deliver(std::move(line), to);
        break;
      }
      case chat::ClientMessage::kRename:
        OnRename(id, m.rename().nick());
        break;
      case chat::ClientMessage::kWho: {
        chat::ServerMessage reply;
        for (ConnectionId m_id : order_) reply.mutable_who_reply()->add_nicks(members_[m_id].nick);
        SendBytes(id, Serialize(reply));
        break;
      }
      case chat::ClientMessage::kLeave:
        (void)rt_->Close(id, "left", /*flush=*/true);
        Remove(id, "", "");
        break;
      case chat::ClientMessage::BODY_NOT_SET:
        SendError(id, "empty or unknown message (is the client newer than the server?)");
        break;
    }
  }

  void OnJoin(ConnectionId id, const udp::SocketAddress& peer, const std::string& nick) {
    if (absl::Status s = CheckNick(nick); !s.ok()) {
      Refuse(id, peer, std::string(s.message()));
      return;
    }
    if (members_.size() >= max_members_) {
      Refuse(id, peer, absl::StrCat("the chat is full (", Plural(max_members_, "member"), ")"));
      return;
    }
    if (by_nick_.contains(NickKey(nick))) {
      Refuse(id, peer, absl::StrCat("nick \"", nick, "\" is taken"));
      return;
    }
    pending_.erase(id);
    members_[id] = Member{nick, peer};
    by_nick_[NickKey(nick)] = id;
    order_.push_back(id);
    chat::ServerMessage welcome;
    welcome.mutable_welcome()->set_nick(nick);
    for (ConnectionId m : order_) welcome.mutable_welcome()->add_members(members_[m].nick);
    SendBytes(id, Serialize(welcome));
    Log(absl::StrCat(nick, " joined from ", peer.ToString(), " ", Count()));
    Deliver(MakeLine(chat::Line::JOIN, nick, ""), order_);
  }

  void OnRename(ConnectionId id, const std::string& nick) {
    Member& member = members_[id];
    if (absl::Status s = CheckNick(nick); !s.ok()) {
      SendError(id, std::string(s.message()));
      return;
    }
    if (nick == member.nick) {
      SendError(id, absl::StrCat("you are already ", nick));
      return;
    }
    auto holder = by_nick_.find(NickKey(nick));
    if (holder != by_nick_.end() && holder->second != id) {
      SendError(id, absl::StrCat("nick \"", nick, "\" is taken"));
      return;
    }
    const std::string old = member.nick;
    by_nick_.erase(NickKey(old));
    by_nick_[NickKey(nick)] = id;
    member.nick = nick;
    Log(absl::StrCat(old, " is now known as ", nick));
    Deliver(MakeLine(chat::Line::RENAME, old, nick), order_);
  }

  void OnClosed(const Event& e) {
    pending_.erase(e.connection);
    if (!members_.contains(e.connection)) return;
    std::string why;
    if (!e.by_peer && (e.code == proto::kCloseIdleTimeout ||
                       e.code == proto::kCloseTooManyRetransmissions)) {
      why = "timed out";
    } else if (e.by_peer) {
      why = "connection closed";
    } else {
      why = "connection lost";
    }
    Remove(e.connection, why, e.reason);
  }

  // A fatal error for a connection that has not joined: say why, close.
  void Refuse(ConnectionId id, const udp::SocketAddress& peer, const std::string& why) {
    pending_.erase(id);
    chat::ServerMessage m;
    m.mutable_error()->set_text(why);
    m.mutable_error()->set_fatal(true);
    (void)rt_->Send(id, kChannel, DeliveryMode::kReliableOrdered, Serialize(m));
    (void)rt_->Close(id, why.substr(0, proto::kMaxReasonBytes), /*flush=*/true);
    Log(absl::StrCat("refused ", peer.ToString(), ": ", why));
  }

  void SendError(ConnectionId id, const std::string& text) {
    chat::ServerMessage m;
    m.mutable_error()->set_text(text);
    SendBytes(id, Serialize(m));
  }

  chat::Line MakeLine(chat::Line::Kind kind, const std::string& from, const std::string& text) {
    chat::Line line;
    line.set_kind(kind);
    line.set_from(from);
    line.set_text(text);
    return line;
  }

  // Gives `line` the next number in the total order and sends it to `to`.
  void Deliver(chat::Line line, const std::vector<ConnectionId>& to) {
    line.set_seq(next_seq_++);
    line.set_time_ms(absl::ToUnixMillis(absl::Now()));
    chat::ServerMessage m;
    *m.mutable_line() = std::move(line);
    const std::string bytes = Serialize(m);
    for (ConnectionId id : to) SendBytes(id, bytes);
  }

  void SendBytes(ConnectionId id, const std::string& bytes) {
    absl::StatusOr<uint64_t> seq = rt_->Send(id, kChannel, DeliveryMode::kReliableOrdered, bytes);
    if (!seq.ok()) doomed_.push_back({id, std::string(seq.status().message())});
  }

  // Ends a membership and tells the others. `why` goes into the leave line
  // ("timed out"; empty for a plain Leave), `detail` only into the log.
  void Remove(ConnectionId id, const std::string& why, const std::string& detail) {
    auto it = members_.find(id);
    if (it == members_.end()) return;
    const Member member = it->second;
    members_.erase(it);
    by_nick_.erase(NickKey(member.nick));
    order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
    std::string log = absl::StrCat(member.nick, " left");
    if (!why.empty()) absl::StrAppend(&log, " (", why, detail.empty() ? "" : ": ", detail, ")");
    Log(absl::StrCat(log, " ", Count()));
    Deliver(MakeLine(chat::Line::LEAVE, member.nick, why), order_);
  }

  // Drops members a send failed for (a full queue: they cannot keep up).
  void Reap() {
    while (!doomed_.empty()) {
      const auto [id, why] = doomed_.front();
      doomed_.pop_front();
      if (!members_.contains(id)) continue;
      // A connection that is already closed reports its own kClosed.
      if (!rt_->endpoint().IsEstablished(id)) continue;
      (void)rt_->Close(id, "dropped: cannot keep up", /*flush=*/false);
      Remove(id, "dropped", why);
    }
  }

  // Connections that never send a Join are closed after the timeout.
  void ExpirePending() {
    const absl::Time now = absl::Now();
    std::vector<ConnectionId> expired;
    for (const auto& [id, p] : pending_) {
      if (now - p.since >= timeout_) expired.push_back(id);
    }
    for (ConnectionId id : expired) {
      Log(absl::StrCat("closing ", pending_[id].peer.ToString(), ": no Join within ",
                       absl::FormatDuration(timeout_)));
      pending_.erase(id);
      (void)rt_->Close(id, "no Join", /*flush=*/false);
    }
  }

  absl::Status Shutdown() {
    Log(absl::StrCat("shutting down ", Count()));
    Deliver(MakeLine(chat::Line::SYSTEM, "", "server shutting down"), order_);
    for (ConnectionId id : order_) (void)rt_->Close(id, "server shutting down", /*flush=*/true);
    for (const auto& [id, p] : pending_) (void)rt_->Close(id, "server shutting down", false);
    (void)rt_->Flush(std::min(timeout_, absl::Seconds(2)));
    return absl::OkStatus();
  }

  Runtime* rt_;
  absl::Duration timeout_;
  size_t max_members_;
  absl::flat_hash_map<ConnectionId, Member> members_;
  absl::flat_hash_map<std::string, ConnectionId> by_nick_;  // NickKey -> member
  std::vector<ConnectionId> order_;                         // members in join order
  absl::flat_hash_map<ConnectionId, Pending> pending_;      // connected, not joined
  std::deque<std::pair<ConnectionId, std::string>> doomed_;
  uint64_t next_seq_ = 1;
};

// ---- client: terminal -------------------------------------------------------

// Writes all of `data`, waiting while a non-blocking descriptor is full.
bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      (void)::poll(&p, 1, 1000);
      continue;
    }
    if (n < 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Raw mode for line editing (no echo, no canonical mode, no signals from
// keys; output processing stays on, so "\n" still starts a new line).
// Restores the saved settings when destroyed.
class RawTerminal {
 public:
  RawTerminal() = default;
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  ~RawTerminal() { Restore(); }

  absl::Status Enter(int fd) {
    if (::tcgetattr(fd, &saved_) != 0) return udp::ErrnoStatus(errno, "tcgetattr");
    termios raw = saved_;
    raw.c_iflag &= ~static_cast<tcflag_t>(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
    raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ICANON | IEXTEN | ISIG);
    raw.c_cflag |= CS8;
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (::tcsetattr(fd, TCSANOW, &raw) != 0) return udp::ErrnoStatus(errno, "tcsetattr");
    fd_ = fd;
    return absl::OkStatus();
  }

  void Restore() {
    if (fd_ < 0) return;
    (void)::tcsetattr(fd_, TCSADRAIN, &saved_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  termios saved_{};
};

// O_NONBLOCK on a descriptor, undone when destroyed (stdin may share its
// file description with the shell's terminal).
class NonBlocking {
 public:
  NonBlocking() = default;
  NonBlocking(const NonBlocking&) = delete;
  NonBlocking& operator=(const NonBlocking&) = delete;
  ~NonBlocking() { Restore(); }

  absl::Status Set(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0) return udp::ErrnoStatus(errno, "fcntl F_GETFL");
    if (::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
      return udp::ErrnoStatus(errno, "fcntl F_SETFL");
    }
    fd_ = fd;
    saved_ = flags;
    return absl::OkStatus();
  }

  void Restore() {
    if (fd_ < 0) return;
    (void)::fcntl(fd_, F_SETFL, saved_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  int saved_ = 0;
};

size_t TerminalColumns() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

bool IsContinuation(char c) { return (static_cast<unsigned char>(c) & 0xc0) == 0x80; }

// The end of `s` that fits in `columns` (one column per code point).
absl::string_view Tail(absl::string_view s, size_t columns) {
  size_t count = 0;
  size_t start = s.size();
  while (start > 0) {
    size_t prev = start - 1;
    while (prev > 0 && IsContinuation(s[prev])) --prev;
    if (count + 1 > columns) break;
    ++count;
    start = prev;
  }
  return s.substr(start);
}

// ---- client ------------------------------------------------------------------

class Client {
 public:
  Client(Runtime* rt, const udp::SocketAddress& server, std::string nick, absl::Duration timeout,
         bool interactive, bool color, int signal_fd)
      : rt_(rt),
        server_(server),
        nick_(std::move(nick)),
        timeout_(timeout),
        interactive_(interactive),
        color_(color),
        signal_fd_(signal_fd) {}
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() { RestoreTerminal(); }

  // Joins and chats until /quit, EOF, a signal or an error.
  absl::Status Run() {
    if (absl::Status s = rt_->Watch(signal_fd_, kSignalToken); !s.ok()) return s;
    absl::StatusOr<ConnectionId> id = rt_->Connect(server_);
    if (!id.ok()) return id.status();
    id_ = *id;
    const absl::Time join_deadline = absl::Now() + timeout_ + absl::Seconds(1);
    for (;;) {
      if (state_ != State::kChatting && absl::Now() >= join_deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat(state_ == State::kConnecting ? "cannot connect to " : "no welcome from ",
                         server_.ToString(), " within ", absl::FormatDuration(timeout_)));
      }
      UpdateStdinPause();
      const bool poll_stdin = stdin_ == StdinMode::kAlwaysReady && !paused_;
      absl::StatusOr<Runtime::PollResult> r =
          rt_->Poll(poll_stdin ? absl::ZeroDuration() : absl::Milliseconds(250));
      if (!r.ok()) return r.status();
      for (Event& e : r->events) {
        if (e.connection != id_) continue;
        if (absl::Status s = OnEvent(e); !s.ok()) return s;
      }
      for (uint64_t token : r->ready) {
        if (token == kSignalToken && DrainSignals(signal_fd_)) quit_ = true;
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

  // Clears the prompt and gives the terminal back. Idempotent.
  void RestoreTerminal() {
    if (prompt_shown_) (void)WriteAll(STDOUT_FILENO, "\r\x1b[K");
    prompt_shown_ = false;
    raw_.Restore();
    nonblocking_.Restore();
  }

 private:
  enum class State { kConnecting, kJoining, kChatting };
  enum class StdinMode { kNone, kWatched, kAlwaysReady, kClosed };

  absl::Status OnEvent(Event& e) {
    switch (e.type) {
      case Event::Type::kConnected: {
        state_ = State::kJoining;
        chat::ClientMessage m;
        m.mutable_join()->set_nick(nick_);
        Send(m);
        return absl::OkStatus();
      }
      case Event::Type::kClosed:
        if (state_ == State::kConnecting) {
          return absl::UnavailableError(absl::StrCat("cannot connect to ", server_.ToString(),
                                                     ": ", e.by_peer ? "refused: " : "",
                                                     e.reason));
        }
        return absl::UnavailableError(
            absl::StrCat("lost connection to server ", server_.ToString(), ": ",
                         e.by_peer ? "server closed the connection: " : "", e.reason));
      case Event::Type::kMessage:
        if (e.channel != kChannel) return absl::OkStatus();
        return OnServerMessage(e.message);
      case Event::Type::kAcked:
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  absl::Status OnServerMessage(const std::string& bytes) {
    chat::ServerMessage m;
    if (!m.ParseFromString(bytes)) {
      return absl::DataLossError(
          absl::StrCat("server ", server_.ToString(), " sent a malformed message"));
    }
    switch (m.body_case()) {
      case chat::ServerMessage::kWelcome: {
        nick_ = m.welcome().nick();
        std::vector<std::string> members;
        for (const std::string& n : m.welcome().members()) members.push_back(Displayable(n));
        state_ = State::kChatting;
        if (absl::Status s = StartInput(); !s.ok()) return s;
        Notice(absl::StrCat("connected to ", server_.ToString(), " as ", Nick(nick_), "; ",
                            Plural(members.size(), "member"), ": ", absl::StrJoin(members, ", ")));
        return absl::OkStatus();
      }
      case chat::ServerMessage::kError:
        if (m.error().fatal()) {
          return absl::FailedPreconditionError(Displayable(m.error().text()));
        }
        Error(Displayable(m.error().text()));
        return absl::OkStatus();
      case chat::ServerMessage::kLine:
        OnLine(m.line());
        return absl::OkStatus();
      case chat::ServerMessage::kWhoReply: {
        std::vector<std::string> nicks;
        for (const std::string& n : m.who_reply().nicks()) nicks.push_back(Nick(n));
        Notice(absl::StrCat(Plural(nicks.size(), "member"), ": ", absl::StrJoin(nicks, ", ")));
        return absl::OkStatus();
      }
      case chat::ServerMessage::BODY_NOT_SET:
        return absl::OkStatus();  // from a newer server: ignore
    }
    return absl::OkStatus();
  }

  void OnLine(const chat::Line& line) {
    const absl::Time at = absl::FromUnixMillis(line.time_ms());
    const std::string from = Nick(line.from());
    const std::string text = Displayable(line.text());
    switch (line.kind()) {
      case chat::Line::SAY:
        Print(at, absl::StrCat("<", from, "> ", text));
        break;
      case chat::Line::ME:
        Print(at, absl::StrCat("* ", from, " ", text));
        break;
      case chat::Line::PRIVATE:
        if (NickKey(line.from()) == NickKey(nick_)) {
          Print(at, absl::StrCat("-> ", Nick(line.to()), ": ", text));
        } else {
          Print(at, absl::StrCat("<- ", from, ": ", text));
        }
        break;
      case chat::Line::JOIN:
        Print(at, absl::StrCat(Stars(), " ", from, " joined"));
        break;
      case chat::Line::LEAVE:
        Print(at, absl::StrCat(Stars(), " ", from, " left",
                               text.empty() ? "" : absl::StrCat(" (", text, ")")));
        break;
      case chat::Line::RENAME:
        if (line.from() == nick_) nick_ = line.text();
        Print(at, absl::StrCat(Stars(), " ", from, " is now known as ", Nick(line.text())));
        break;
      case chat::Line::SYSTEM:
      default:
        Print(at, absl::StrCat(Stars(), " ", text));
        break;
    }
  }

  // ---- input

  absl::Status StartInput() {
    if (interactive_) {
      if (absl::Status s = raw_.Enter(STDIN_FILENO); !s.ok()) return s;
      prompt_shown_ = true;
    }
    if (absl::Status s = nonblocking_.Set(STDIN_FILENO); !s.ok()) return s;
    // epoll refuses regular files (stdin redirected from a file): they are
    // always readable, so the loop just reads them between polls.
    stdin_ = rt_->Watch(STDIN_FILENO, kStdinToken).ok() ? StdinMode::kWatched
                                                        : StdinMode::kAlwaysReady;
    Redraw();
    return absl::OkStatus();
  }

  // Stops reading stdin while much is queued for the server; resumes later.
  void UpdateStdinPause() {
    if (stdin_ != StdinMode::kWatched && stdin_ != StdinMode::kAlwaysReady) return;
    const bool over = rt_->endpoint().QueuedBytes(id_) > kPauseStdinBytes;
    if (over == paused_) return;
    paused_ = over;
    if (stdin_ != StdinMode::kWatched) return;
    absl::Status s = over ? rt_->Unwatch(STDIN_FILENO) : rt_->Watch(STDIN_FILENO, kStdinToken);
    if (!s.ok()) failure_ = s;
  }

  void ReadStdin() {
    if (stdin_ != StdinMode::kWatched && stdin_ != StdinMode::kAlwaysReady) return;
    char buffer[65536];
    while (!paused_ && !quit_ && failure_.ok()) {
      const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n < 0) {
        failure_ = udp::ErrnoStatus(errno, "read stdin");
        return;
      }
      if (n == 0) {
        if (stdin_ == StdinMode::kWatched) (void)rt_->Unwatch(STDIN_FILENO);
        stdin_ = StdinMode::kClosed;
        if (!interactive_ && !partial_.empty()) HandleInput(std::exchange(partial_, ""));
        quit_ = true;
        return;
      }
      const absl::string_view data(buffer, static_cast<size_t>(n));
      if (interactive_) {
        OnKeys(data);
      } else {
        OnScripted(data);
      }
      UpdateStdinPause();
    }
  }

  // Scripted input: one message or command per line.
  void OnScripted(absl::string_view data) {
    while (!data.empty() && !quit_) {
      const size_t newline = data.find('\n');
      const absl::string_view piece = data.substr(0, newline);
      if (!discarding_) partial_.append(piece.data(), piece.size());
      if (partial_.size() > kMaxTextBytes + 1024) {
        if (!discarding_) Error(absl::StrCat("line too long (at most ", kMaxTextBytes, " bytes)"));
        discarding_ = true;
        partial_.clear();
      }
      if (newline == absl::string_view::npos) return;
      data.remove_prefix(newline + 1);
      if (!discarding_) HandleInput(std::exchange(partial_, ""));
      discarding_ = false;
    }
  }

  // Interactive input: keys in raw mode.
  void OnKeys(absl::string_view data) {
    for (const char ch : data) {
      if (quit_) return;
      const unsigned char c = static_cast<unsigned char>(ch);
      if (escape_ == 1) {  // after ESC: a CSI/SS3 sequence or a lone key
        escape_ = (c == '[' || c == 'O') ? 2 : 0;
        continue;
      }
      if (escape_ == 2) {  // inside a sequence: ends with a byte in @..~
        if (c >= 0x40 && c <= 0x7e) escape_ = 0;
        continue;
      }
      switch (c) {
        case '\r':
        case '\n': {
          std::string line = std::exchange(input_, "");
          Redraw();
          HandleInput(std::move(line));
          break;
        }
        case 0x7f:  // Backspace
        case 0x08:  // Ctrl-H
          while (!input_.empty() && IsContinuation(input_.back())) input_.pop_back();
          if (!input_.empty()) input_.pop_back();
          Redraw();
          break;
        case 0x15:  // Ctrl-U
          input_.clear();
          Redraw();
          break;
        case 0x17: {  // Ctrl-W: spaces, then the word before them
          while (!input_.empty() && input_.back() == ' ') input_.pop_back();
          while (!input_.empty() && input_.back() != ' ') input_.pop_back();
          Redraw();
          break;
        }
        case 0x03:  // Ctrl-C
        case 0x04:  // Ctrl-D
          quit_ = true;
          break;
        case 0x0c:  // Ctrl-L
          (void)WriteAll(STDOUT_FILENO, "\x1b[H\x1b[2J");
          Redraw();
          break;
        case 0x1b:
          escape_ = 1;
          break;
        case '\t':
          AddKey(' ');
          break;
        default:
          if (c >= 0x20) AddKey(ch);  // printable ASCII and UTF-8 bytes
          break;
      }
    }
  }

  void AddKey(char c) {
    if (input_.size() >= kMaxTextBytes + 64) {
      (void)WriteAll(STDOUT_FILENO, "\a");
      return;
    }
    input_.push_back(c);
    // Redraw only on a complete character (UTF-8 arrives a byte at a time).
    if (Utf8Length(input_, LastCharStart()) != 0 || !IsContinuation(c)) Redraw();
  }

  size_t LastCharStart() const {
    size_t i = input_.size() - 1;
    while (i > 0 && IsContinuation(input_[i])) --i;
    return i;
  }

  // A message or a /command, from either input mode.
  void HandleInput(std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    line = ValidUtf8(line);
    if (absl::StripAsciiWhitespace(line).empty()) return;
    if (line[0] != '/' || absl::StartsWith(line, "//")) {
      SayText(line[0] == '/' ? line.substr(1) : line);
      return;
    }
    absl::string_view rest = line;
    rest.remove_prefix(1);
    const size_t space = rest.find(' ');
    const std::string command = absl::AsciiStrToLower(rest.substr(0, space));
    absl::string_view args =
        space == absl::string_view::npos ? absl::string_view() : rest.substr(space + 1);
    args = absl::StripLeadingAsciiWhitespace(args);
    chat::ClientMessage m;
    if (command == "quit" || command == "exit") {
      quit_ = true;
    } else if (command == "who") {
      m.mutable_who();
      Send(m);
    } else if (command == "nick") {
      const std::string nick(absl::StripAsciiWhitespace(args));
      if (absl::Status s = CheckNick(nick); !s.ok()) {
        Error(nick.empty() ? "usage: /nick NEW" : std::string(s.message()));
        return;
      }
      m.mutable_rename()->set_nick(nick);
      Send(m);
    } else if (command == "me") {
      if (absl::Status s = CheckText(args); !s.ok()) {
        Error(args.empty() ? "usage: /me ACTION" : std::string(s.message()));
        return;
      }
      m.mutable_me()->set_action(std::string(args));
      Send(m);
    } else if (command == "msg") {
      const size_t gap = args.find(' ');
      const absl::string_view to = args.substr(0, gap);
      const absl::string_view text =
          gap == absl::string_view::npos ? absl::string_view()
                                         : absl::StripLeadingAsciiWhitespace(args.substr(gap + 1));
      if (to.empty() || text.empty()) {
        Error("usage: /msg NICK TEXT");
        return;
      }
      if (absl::Status s = CheckText(text); !s.ok()) {
        Error(std::string(s.message()));
        return;
      }
      m.mutable_private_message()->set_to(std::string(to));
      m.mutable_private_message()->set_text(std::string(text));
      Send(m);
    } else if (command == "stats") {
      Stats();
    } else if (command == "help") {
      Notice("commands: /who, /nick NEW, /me ACTION, /msg NICK TEXT, /stats, /quit "
             "(//text sends a line starting with /)");
    } else {
      Error(absl::StrCat("unknown command /", Displayable(command), " (try /help)"));
    }
  }

  void SayText(const std::string& text) {
    if (absl::Status s = CheckText(text); !s.ok()) {
      Error(std::string(s.message()));
      return;
    }
    chat::ClientMessage m;
    m.mutable_say()->set_text(text);
    Send(m);
  }

  void Send(const chat::ClientMessage& m) {
    absl::StatusOr<uint64_t> seq =
        rt_->Send(id_, kChannel, DeliveryMode::kReliableOrdered, Serialize(m));
    // A closed connection reports itself with kClosed; say anything else.
    if (!seq.ok() && rt_->endpoint().IsEstablished(id_)) {
      Error(absl::StrCat("not sent: ", seq.status().message()));
    }
  }

  void Stats() {
    absl::StatusOr<reliable::ConnectionStats> s = rt_->Stats(id_);
    if (!s.ok()) {
      Error(std::string(s.status().message()));
      return;
    }
    const double loss =
        s->packets_sent == 0 ? 0.0 : 100.0 * s->packets_lost / s->packets_sent;
    Notice(absl::StrFormat(
        "stats: rtt %.1fms (min %.1fms), sent %d packets, lost %d (%.1f%%), retransmitted %d "
        "fragments, received %d packets (%d duplicates), %d messages sent, %d delivered",
        absl::ToDoubleMilliseconds(s->srtt), absl::ToDoubleMilliseconds(s->min_rtt),
        s->packets_sent, s->packets_lost, loss, s->fragments_retransmitted, s->packets_received,
        s->duplicate_packets, s->messages_sent, s->messages_delivered));
  }

  // Sends Leave and waits until the server has it (and everything before).
  absl::Status Leave() {
    if (state_ != State::kChatting) {
      (void)rt_->Close(id_, "gave up", /*flush=*/false);
      return absl::OkStatus();
    }
    if (rt_->endpoint().IsEstablished(id_)) {
      chat::ClientMessage m;
      m.mutable_leave();
      (void)rt_->Send(id_, kChannel, DeliveryMode::kReliableOrdered, Serialize(m));
      (void)rt_->Close(id_, "left", /*flush=*/true);
    }
    if (absl::Status s = rt_->Flush(timeout_); !s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("lost connection to server ", server_.ToString(), ": ", s.message()));
    }
    return absl::OkStatus();
  }

  // ---- output

  std::string Color(absl::string_view code, absl::string_view text) const {
    if (!color_) return std::string(text);
    return absl::StrCat("\x1b[", code, "m", text, "\x1b[0m");
  }

  // A nick, coloured by a hash of its (case-folded) name.
  std::string Nick(absl::string_view nick) const {
    const std::string shown = Displayable(nick);
    if (!color_) return shown;
    uint32_t h = 2166136261u;
    for (char c : NickKey(nick)) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    return Color(absl::StrCat("1;3", 1 + h % 6), shown);
  }

  std::string Stars() const { return Color("33", "***"); }

  void Notice(const std::string& text) { Print(absl::Now(), absl::StrCat(Stars(), " ", text)); }
  void Error(const std::string& text) {
    Print(absl::Now(), absl::StrCat(Color("31", "*** error:"), " ", text));
  }

  // One complete line: on a TTY above the prompt, with a timestamp.
  void Print(absl::Time at, const std::string& line) {
    std::string out;
    if (interactive_) {
      absl::StrAppend(&out, "\r\x1b[K",
                      Color("2", absl::FormatTime("[%H:%M]", at, absl::LocalTimeZone())), " ",
                      line, "\n");
      if (prompt_shown_) absl::StrAppend(&out, PromptText());
    } else {
      out = absl::StrCat(line, "\n");
    }
    Write(out);
  }

  std::string PromptText() const {
    const size_t columns = TerminalColumns();
    const size_t room = columns > 4 ? columns - 3 : 1;
    return absl::StrCat("> ", Tail(input_, room));
  }

  void Redraw() {
    if (prompt_shown_) Write(absl::StrCat("\r\x1b[K", PromptText()));
  }

  void Write(const std::string& out) {
    if (!WriteAll(STDOUT_FILENO, out) && failure_.ok()) {
      failure_ = udp::ErrnoStatus(errno, "write stdout");
    }
  }

  Runtime* rt_;
  udp::SocketAddress server_;
  std::string nick_;
  absl::Duration timeout_;
  bool interactive_;
  bool color_;
  int signal_fd_;
  ConnectionId id_ = 0;
  State state_ = State::kConnecting;
  StdinMode stdin_ = StdinMode::kNone;
  bool paused_ = false;
  bool quit_ = false;
  absl::Status failure_;
  std::string partial_;     // scripted: the line read so far
  bool discarding_ = false;  // scripted: skipping an overlong line
  std::string input_;       // interactive: the line being edited
  int escape_ = 0;          // interactive: inside an escape sequence
  bool prompt_shown_ = false;
  RawTerminal raw_;
  NonBlocking nonblocking_;
};

// ---- commands ----------------------------------------------------------------

int RunServe(const Args& args) {
  if (!args.empty()) return UsageError(kCommand, "serve takes no positional arguments");
  const int port = absl::GetFlag(FLAGS_port);
  if (port < 0) return UsageError(kCommand, "serve: --port is required");
  if (absl::Status s = CheckPort(port); !s.ok()) return UsageError(kCommand, s.message());
  absl::StatusOr<absl::Duration> timeout = TimeoutFromFlag();
  if (!timeout.ok()) return UsageError(kCommand, timeout.status().message());
  const int max_members = absl::GetFlag(FLAGS_max_members);
  if (max_members < 1 || max_members > kMaxMembersLimit) {
    return UsageError(kCommand, absl::StrCat("--max_members ", max_members,
                                             " is out of range (1 to ", kMaxMembersLimit, ")"));
  }
  std::string bind = absl::GetFlag(FLAGS_bind);
  if (bind.empty() && absl::GetFlag(FLAGS_ipv4)) bind = "0.0.0.0";
  absl::StatusOr<std::vector<udp::SocketAddress>> locals =
      BindAddresses(bind, port, udp::SocketType::kDatagram);
  if (!locals.ok()) return Fail(locals.status());
  absl::StatusOr<udp::OwnedFd> signals = SignalFd({SIGINT, SIGTERM});
  if (!signals.ok()) return Fail(signals.status());

  Runtime::Options options;
  options.endpoint = ChatOptions(*timeout);
  if (absl::Status s = ApplySecurityFlags(&options.endpoint); !s.ok()) return Fail(s);
  options.endpoint.accept_incoming = true;
  options.endpoint.max_connections = static_cast<size_t>(max_members) + 64;
  options.bind = locals->front();
  absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(options);
  if (!rt.ok()) return Fail(rt.status());
  PrintListening((*rt)->local_address());
  Server server(rt->get(), *timeout, static_cast<size_t>(max_members));
  if (absl::Status s = server.Run(signals->get()); !s.ok()) return Fail(s);
  return kExitOk;
}

int RunJoin(const Args& args) {
  if (args.size() != 1) return UsageError(kCommand, "join expects HOST:PORT and --nick NAME");
  const std::string nick = absl::GetFlag(FLAGS_nick);
  if (nick.empty()) return UsageError(kCommand, "join: --nick NAME is required");
  if (absl::Status s = CheckNick(nick); !s.ok()) return UsageError(kCommand, s.message());
  absl::StatusOr<absl::Duration> timeout = TimeoutFromFlag();
  if (!timeout.ok()) return UsageError(kCommand, timeout.status().message());
  const udp::AddressFamily family = FamilyFromFlags();
  absl::StatusOr<std::vector<udp::SocketAddress>> peers =
      udp::ResolveHostPort(args[0], family, udp::SocketType::kDatagram);
  if (!peers.ok()) return Fail(peers.status());
  const udp::SocketAddress server = peers->front();
  absl::StatusOr<udp::OwnedFd> signals = SignalFd({SIGINT, SIGTERM, SIGHUP});
  if (!signals.ok()) return Fail(signals.status());
  ::signal(SIGPIPE, SIG_IGN);  // a closed stdout is a write error, not death

  const bool interactive = ::isatty(STDIN_FILENO) == 1 && ::isatty(STDOUT_FILENO) == 1;
  const char* no_color = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  const bool color = interactive && absl::GetFlag(FLAGS_color) &&
                     (no_color == nullptr || no_color[0] == '\0') &&
                     !(term != nullptr && std::strcmp(term, "dumb") == 0);

  Runtime::Options options;
  options.endpoint = ChatOptions(*timeout);
  if (absl::Status s = ApplySecurityFlags(&options.endpoint); !s.ok()) return Fail(s);
  options.bind = udp::SocketAddress::Any(server.family(), 0);
  absl::StatusOr<std::unique_ptr<Runtime>> rt = Runtime::Create(options);
  if (!rt.ok()) return Fail(rt.status());
  absl::Status status;
  {
    Client client(rt->get(), server, nick, *timeout, interactive, color, signals->get());
    status = client.Run();
    client.RestoreTerminal();
  }
  // Error messages print after the terminal is back to normal.
  return status.ok() ? kExitOk : Fail(status);
}

}  // namespace

int RunChat(const Args& args) {
  if (args.empty()) {
    return UsageError(kCommand,
                      "expects serve or join (chat serve --port P | chat join HOST:PORT --nick NAME)");
  }
  const Args rest(args.begin() + 1, args.end());
  if (args[0] == "serve") return RunServe(rest);
  if (args[0] == "join") return RunJoin(rest);
  return UsageError(kCommand,
                    absl::StrCat("unknown mode \"", args[0], "\": expects serve or join"));
}

}  // namespace udpmsg::cli
