#include "cli/chat_terminal.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

#include "udpmsg/udpmsg.h"

namespace udpmsg::cli {

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

size_t TerminalColumns() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

void NoteMembers(const chat::ClientEvent& e, NickCompletions* nicks) {
  using Type = chat::ClientEvent::Type;
  using Kind = chat::DisplayLine::Kind;
  if (e.type == Type::kWelcome || e.type == Type::kWhoReply) {
    // A large room's list holds only its first members: keep the nicks
    // learnt from joins beside them.
    if (e.type == Type::kWelcome || e.member_count <= e.nicks.size()) {
      nicks->Reset(e.nicks);
    } else {
      for (const std::string& n : e.nicks) nicks->Add(n);
    }
    return;
  }
  if (e.type != Type::kLine) return;
  switch (e.line.kind) {
    case Kind::kJoin:
      nicks->Add(e.line.from);
      break;
    case Kind::kLeave:
      nicks->Remove(e.line.from);
      break;
    case Kind::kRename:
      nicks->Remove(e.line.from);
      nicks->Add(e.line.text);
      break;
    default:
      break;
  }
}

absl::Status RawTerminal::Enter(int fd) {
  if (::tcgetattr(fd, &saved_) != 0) return ErrnoStatus(errno, "tcgetattr");
  termios raw = saved_;
  raw.c_iflag &= ~static_cast<tcflag_t>(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
  raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ICANON | IEXTEN | ISIG);
  raw.c_cflag |= CS8;
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  if (::tcsetattr(fd, TCSANOW, &raw) != 0) return ErrnoStatus(errno, "tcsetattr");
  fd_ = fd;
  return absl::OkStatus();
}

void RawTerminal::Restore() {
  if (fd_ < 0) return;
  (void)::tcsetattr(fd_, TCSADRAIN, &saved_);
  fd_ = -1;
}

absl::Status NonBlocking::Set(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoStatus(errno, "fcntl F_GETFL");
  if (::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoStatus(errno, "fcntl F_SETFL");
  }
  fd_ = fd;
  saved_ = flags;
  return absl::OkStatus();
}

void NonBlocking::Restore() {
  if (fd_ < 0) return;
  (void)::fcntl(fd_, F_SETFL, saved_);
  fd_ = -1;
}

void BracketedPaste::Enable(int fd) {
  if (WriteAll(fd, "\x1b[?2004h")) fd_ = fd;
}

void BracketedPaste::Restore() {
  if (fd_ < 0) return;
  (void)WriteAll(fd_, "\x1b[?2004l");
  fd_ = -1;
}

}  // namespace udpmsg::cli
