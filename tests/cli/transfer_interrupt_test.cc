// `udpmsg send --reliable` and `udpmsg recv --reliable` stopped by SIGINT,
// SIGTERM or SIGHUP at known points (while connecting, mid-transfer, while
// waiting for the receiver's verdict, while closing).
// Each signal goes to the child after a line or a byte count it printed (or a
// datagram or message it sent) says where it is; every wait is bounded. The
// peer's --timeout is 30 s, and it must end within 5 s: it learned from the
// close, not from its timeout.
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "apps/transfer/transfer.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reliable/runtime.h"
#include "tests/cli/subprocess.h"
#include "udp/socket_address.h"

namespace udpmsg::testing {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr absl::Duration kStartTimeout = absl::Seconds(10);
// The peers' --timeout, and how soon they must end instead.
constexpr char kPeerTimeout[] = "30s";
constexpr absl::Duration kPrompt = absl::Seconds(5);

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// Whether any name in `dir` starts with `prefix` (a temporary file left).
bool AnyFileStartsWith(const std::string& dir, const std::string& prefix) {
  bool found = false;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) found = found || absl::StartsWith(e->d_name, prefix);
    ::closedir(d);
  }
  return found;
}

std::string LastLine(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return lines.empty() ? "" : lines.back();
}

int CountOf(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string SignalName(int signal) {
  switch (signal) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
  }
  return absl::StrCat("signal ", signal);
}

// A recv with a 30 s timeout and a sender reading 100000 bytes from a pipe
// that stays open (so the transfer cannot end by itself), both past the
// point where the receiver has acknowledged all 100000 bytes: the sender's
// progress line (on a pipe with --progress on) shows them.
struct Transfer {
  UdpmsgServer recv;
  std::unique_ptr<Subprocess> send;
  std::string out;
  std::string name;
  std::string sender_address;  // as recv prints it, "127.0.0.1:PORT"
};

constexpr int kSentBytes = 100000;

void StartTransferOfAPipe(const std::string& name, Transfer* t) {
  t->name = name;
  t->out = absl::StrCat(TempDir(), "/", name);
  t->recv = StartUdpmsgServer({"recv", "--reliable", "--port", "0", "--bind", "127.0.0.1", "--out", t->out,
                   "--timeout", kPeerTimeout});
  ASSERT_NE(t->recv.port, 0);
  t->send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", t->recv.port), "--timeout",
                    kPeerTimeout, "--progress", "on"});
  ASSERT_NE(t->send, nullptr);
  ASSERT_TRUE(t->send->WriteStdin(std::string(kSentBytes, 'y')).ok());
  absl::StatusOr<std::string> line = t->recv.process->ReadStderrLine(kStartTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  ASSERT_THAT(*line, StartsWith("receiving from "));
  t->sender_address = std::string(absl::StripPrefix(*line, "receiving from "));
  // The size is unknown (a pipe), so the progress line starts with the
  // bytes acknowledged: 100.0 kB once all of them are.
  const absl::Status acked = t->send->WaitForStderr("\r100.0 kB  ", kStartTimeout);
  ASSERT_TRUE(acked.ok()) << acked;
}

// Ctrl-C (or SIGTERM, SIGHUP) on the sender mid-transfer: the progress line
// is erased, the sender says how far it got in one line and exits 128 + N;
// the receiver learns from the close at once, says who stopped it and why,
// and leaves no file, temporary or final.
TEST(TransferInterruptTest, SenderInterruptedMidTransferTellsTheReceiverAtOnce) {
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) {
    SCOPED_TRACE(SignalName(signal));
    Transfer t;
    ASSERT_NO_FATAL_FAILURE(StartTransferOfAPipe(absl::StrCat("out-send-sig-", signal), &t));

    t.send->Kill(signal);
    const absl::Time stopped = absl::Now();
    EXPECT_EQ(ExitCodeWithin(*t.recv.process, absl::Seconds(30)), 1) << t.recv.process->stderr_text();
    EXPECT_LT(absl::Now() - stopped, kPrompt) << "the receiver waited for its timeout";
    EXPECT_EQ(LastLine(t.recv.process->stderr_text()),
              absl::StrCat("udpmsg: sender ", t.sender_address, " interrupted the transfer (",
                           SignalName(signal), ") after ", kSentBytes,
                           " bytes; nothing written to ", t.out));

    EXPECT_EQ(ExitCodeWithin(*t.send, absl::Seconds(10)), 128 + signal) << t.send->stderr_text();
    const std::string said = t.send->stderr_text();
    // The progress line is erased (carriage return, clear to the end of the
    // line), then exactly one line.
    EXPECT_THAT(said, EndsWith(absl::StrCat("\r\x1b[Kudpmsg: interrupted by ", SignalName(signal),
                                            " after ", kSentBytes,
                                            " bytes sent to 127.0.0.1:", t.recv.port, "\n")));
    EXPECT_EQ(CountOf(said, "udpmsg"), 1) << said;
    EXPECT_EQ(CountOf(said, "\n"), 1) << said;
    EXPECT_FALSE(Exists(t.out));
    EXPECT_FALSE(AnyFileStartsWith(TempDir(), t.name + ".part")) << "temporary file left behind";
  }
}

// The receiver interrupted mid-transfer: it removes its temporary file and
// exits 128 + N; the sender learns at once who stopped the transfer.
TEST(TransferInterruptTest, ReceiverInterruptedMidTransferTellsTheSenderAtOnce) {
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) {
    SCOPED_TRACE(SignalName(signal));
    Transfer t;
    ASSERT_NO_FATAL_FAILURE(StartTransferOfAPipe(absl::StrCat("out-recv-sig-", signal), &t));

    t.recv.process->Kill(signal);
    const absl::Time stopped = absl::Now();
    EXPECT_EQ(ExitCodeWithin(*t.send, absl::Seconds(30)), 1) << t.send->stderr_text();
    EXPECT_LT(absl::Now() - stopped, kPrompt) << "the sender waited for its timeout";
    EXPECT_EQ(
        LastLine(t.send->stderr_text()),
        absl::StrCat("udpmsg: receiver 127.0.0.1:", t.recv.port, " interrupted the transfer (",
                     SignalName(signal), ") after ", kSentBytes, " bytes sent"));

    EXPECT_EQ(ExitCodeWithin(*t.recv.process, absl::Seconds(10)), 128 + signal)
        << t.recv.process->stderr_text();
    EXPECT_EQ(
        LastLine(t.recv.process->stderr_text()),
        absl::StrCat("udpmsg: interrupted by ", SignalName(signal), " after ", kSentBytes,
                     " bytes received from ", t.sender_address, "; nothing written to ", t.out));
    EXPECT_FALSE(Exists(t.out));
    EXPECT_FALSE(AnyFileStartsWith(TempDir(), t.name + ".part")) << "temporary file left behind";
  }
}

// A udpmsg process on a terminal of its own: a pseudo-terminal whose session
// it leads, as its stdin, stdout and stderr (like a command typed into an
// interactive shell). Ctrl-C typed into it reaches the process as SIGINT
// through the terminal driver, which also echoes "^C". Every wait has a
// deadline; the destructor kills (SIGKILL) and reaps a child still running.
class OnTerminal {
 public:
  static std::unique_ptr<OnTerminal> Start(std::vector<std::string> args) {
    args.insert(args.begin(), UdpmsgPath());
    std::unique_ptr<OnTerminal> t(new OnTerminal());
    t->master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (t->master_ < 0 || ::grantpt(t->master_) != 0 || ::unlockpt(t->master_) != 0) {
      return nullptr;
    }
    const std::string slave = ::ptsname(t->master_);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    t->pid_ = ::fork();
    if (t->pid_ == 0) {
      // The child: a new session, whose controlling terminal is the first
      // terminal it opens.
      ::setsid();
      const int fd = ::open(slave.c_str(), O_RDWR);
      if (fd < 0) ::_exit(127);
      for (int i = 0; i < 3; ++i) ::dup2(fd, i);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    return t->pid_ > 0 ? std::move(t) : nullptr;
  }
  ~OnTerminal() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) ::close(master_);
  }

  void Type(const std::string& keys) { (void)!::write(master_, keys.data(), keys.size()); }

  // Waits until the terminal has shown `text` after `from` (an offset in
  // output()); returns where it ends.
  absl::StatusOr<size_t> WaitFor(const std::string& text, absl::Duration timeout, size_t from = 0) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      const size_t at = output_.find(text, from);
      if (at != std::string::npos) return at + text.size();
      if (eof_ || !Pump(deadline)) {
        return absl::DeadlineExceededError(
            absl::StrCat("no \"", text, "\" on the terminal: \"", output_, "\""));
      }
    }
  }

  // Reads the terminal until the child closed it, and reaps the child: its
  // exit code (128 + N for signal N).
  absl::StatusOr<int> Wait(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!eof_) {
      if (!Pump(deadline)) return absl::DeadlineExceededError("the process did not exit");
    }
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // Everything shown on the terminal so far (with its "\r\n" line ends).
  const std::string& output() const { return output_; }

 private:
  OnTerminal() = default;
  // Reads what the terminal shows until `deadline`; false when nothing came.
  bool Pump(absl::Time deadline) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p{master_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) != 1) return false;
    char buffer[4096];
    const ssize_t n = ::read(master_, buffer, sizeof(buffer));
    if (n <= 0) {
      eof_ = true;  // EIO: every descriptor of the terminal's other side is closed
    } else {
      output_.append(buffer, static_cast<size_t>(n));
    }
    return true;
  }

  int master_ = -1;
  pid_t pid_ = -1;
  bool reaped_ = false;
  bool eof_ = false;
  std::string output_;
};

// Ctrl-C typed into the receiver's terminal mid-transfer: the terminal
// echoes "^C", which the receiver erases (carriage return, clear to the end
// of the line) before its one line, so the line and the prompt after it
// start clean. The sender learns at once.
TEST(TransferInterruptTest, CtrlCOnTheReceiversTerminalErasesTheEchoBeforeItsLine) {
  const std::string name = "out-terminal";
  const std::string out = absl::StrCat(TempDir(), "/", name);
  std::unique_ptr<OnTerminal> recv =
      OnTerminal::Start({"recv", "--reliable", "--port", "0", "--bind", "127.0.0.1", "--out", out,
                         "--timeout", kPeerTimeout});
  ASSERT_NE(recv, nullptr);
  absl::StatusOr<size_t> listening = recv->WaitFor("listening on ", kStartTimeout);
  ASSERT_TRUE(listening.ok()) << listening.status();
  absl::StatusOr<size_t> end = recv->WaitFor("\r\n", kStartTimeout, *listening);
  ASSERT_TRUE(end.ok()) << end.status();
  absl::StatusOr<int> port =
      ParseListeningPort(recv->output().substr(*listening - 13, *end - 2 - (*listening - 13)));
  ASSERT_TRUE(port.ok()) << port.status();

  auto send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", *port), "--timeout",
                      kPeerTimeout, "--progress", "on"});
  ASSERT_NE(send, nullptr);
  ASSERT_TRUE(send->WriteStdin(std::string(kSentBytes, 'y')).ok());
  absl::StatusOr<size_t> receiving = recv->WaitFor("receiving from ", kStartTimeout);
  ASSERT_TRUE(receiving.ok()) << receiving.status();
  end = recv->WaitFor("\r\n", kStartTimeout, *receiving);
  ASSERT_TRUE(end.ok()) << end.status();
  const std::string sender_address = recv->output().substr(*receiving, *end - 2 - *receiving);
  const absl::Status acked = send->WaitForStderr("\r100.0 kB  ", kStartTimeout);
  ASSERT_TRUE(acked.ok()) << acked;

  recv->Type("\x03");  // Ctrl-C
  const absl::Time stopped = absl::Now();
  absl::StatusOr<int> code = recv->Wait(absl::Seconds(10));
  ASSERT_TRUE(code.ok()) << code.status() << ": " << recv->output();
  EXPECT_EQ(*code, 130) << recv->output();
  EXPECT_THAT(recv->output(),
              EndsWith(absl::StrCat("\r\x1b[Kudpmsg: interrupted by SIGINT after ", kSentBytes,
                                    " bytes received from ", sender_address,
                                    "; nothing written to ", out, "\r\n")));
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(30)), 1) << send->stderr_text();
  EXPECT_LT(absl::Now() - stopped, kPrompt) << "the sender waited for its timeout";
  EXPECT_EQ(LastLine(send->stderr_text()),
            absl::StrCat("udpmsg: receiver 127.0.0.1:", *port,
                         " interrupted the transfer (SIGINT) after ", kSentBytes, " bytes sent"));
  EXPECT_FALSE(Exists(out));
  EXPECT_FALSE(AnyFileStartsWith(TempDir(), name + ".part")) << "temporary file left behind";
}

// A UDP socket on 127.0.0.1 that reads but never answers: a peer that
// leaves a sender in its handshake.
class SilentPeer {
 public:
  SilentPeer() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port_ = ntohs(a.sin_port);
    }
  }
  ~SilentPeer() {
    if (fd_ >= 0) ::close(fd_);
  }
  int port() const { return port_; }
  // Whether a datagram arrives within `timeout`.
  bool Receive(absl::Duration timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) != 1) return false;
    char buffer[65536];
    return ::recv(fd_, buffer, sizeof(buffer), 0) >= 0;
  }
  // Whether a datagram is waiting now (loopback delivers within sendto, so
  // after the sender exited, everything it sent is here).
  bool HasDatagram() {
    char buffer[65536];
    return ::recv(fd_, buffer, sizeof(buffer), MSG_DONTWAIT) >= 0;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Interrupted while connecting (its hello reached a peer that never
// answers): one line saying so, 128 + N, at once.
TEST(TransferInterruptTest, SenderInterruptedWhileConnectingSaysNothingWasSent) {
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) {
    SCOPED_TRACE(SignalName(signal));
    SilentPeer peer;
    ASSERT_NE(peer.port(), 0);
    auto send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", peer.port()), "hello",
                        "--timeout", kPeerTimeout, "--progress", "on"});
    ASSERT_NE(send, nullptr);
    ASSERT_TRUE(peer.Receive(kStartTimeout)) << "no hello from the sender";
    send->Kill(signal);
    const absl::Time stopped = absl::Now();
    EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(30)), 128 + signal) << send->stderr_text();
    EXPECT_LT(absl::Now() - stopped, kPrompt);
    EXPECT_EQ(send->stderr_text(),
              absl::StrCat("udpmsg: interrupted by ", SignalName(signal),
                           " while connecting to 127.0.0.1:", peer.port(), "; nothing sent\n"));
  }
}

// A receiver of our own (the transfer protocol by hand) that takes the
// whole transfer and never answers: the sender waits for the verdict.
// Interrupted then, it says all bytes were sent but not verified, and the
// receiver gets the close at once.
TEST(TransferInterruptTest, SenderInterruptedWhileAwaitingTheVerdictClosesTheConnection) {
  const std::string input = absl::StrCat(TempDir(), "/in-verdict");
  std::ofstream(input, std::ios::binary) << std::string(5000, 'v');
  reliable::Runtime::Options options;
  options.bind = udp::SocketAddress::Loopback(udp::AddressFamily::kIpv4, 0);
  options.endpoint.accept_incoming = true;
  absl::StatusOr<std::unique_ptr<reliable::Runtime>> rt = reliable::Runtime::Create(options);
  ASSERT_TRUE(rt.ok()) << rt.status();
  const int port = (*rt)->local_address().port();
  auto send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", port), "--file", input,
                      "--timeout", kPeerTimeout, "--progress", "on"});
  ASSERT_NE(send, nullptr);

  // Serve the connection until the End has arrived and the sender's progress
  // shows every byte acknowledged (100%).
  bool ended = false;
  bool all_acked = false;
  std::optional<reliable::Event> closed;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!(ended && all_acked) && absl::Now() < deadline) {
    absl::StatusOr<reliable::Runtime::PollResult> r = (*rt)->Poll(absl::Milliseconds(10));
    ASSERT_TRUE(r.ok()) << r.status();
    for (reliable::Event& e : r->events) {
      if (e.type == reliable::Event::Type::kClosed) closed = std::move(e);
      if (e.type != reliable::Event::Type::kMessage) continue;
      transfer::TransferMessage m;
      ASSERT_TRUE(m.ParseFromString(e.message));
      ended = ended || m.has_end();
    }
    ASSERT_FALSE(closed.has_value()) << closed->reason;
    all_acked = all_acked || send->WaitForStderr("100%", absl::ZeroDuration()).ok();
  }
  ASSERT_TRUE(ended && all_acked) << send->stderr_text();

  send->Kill(SIGINT);
  const absl::Time stopped = absl::Now();
  while (!closed.has_value() && absl::Now() - stopped < kPrompt) {
    absl::StatusOr<reliable::Runtime::PollResult> r = (*rt)->Poll(absl::Milliseconds(50));
    ASSERT_TRUE(r.ok()) << r.status();
    for (reliable::Event& e : r->events) {
      if (e.type == reliable::Event::Type::kClosed) closed = std::move(e);
    }
  }
  ASSERT_TRUE(closed.has_value()) << "no close from the sender within 5 s";
  EXPECT_TRUE(closed->by_peer);
  EXPECT_EQ(closed->reason, "sender interrupted by SIGINT");
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(10)), 130) << send->stderr_text();
  EXPECT_THAT(send->stderr_text(),
              EndsWith(absl::StrCat("\r\x1b[Kudpmsg: interrupted by SIGINT after 5000 of 5000 "
                                    "bytes sent to 127.0.0.1:",
                                    port, ", before the receiver verified them\n")));
  EXPECT_EQ(CountOf(send->stderr_text(), "\n"), 1) << send->stderr_text();
}

// A second Ctrl-C while the sender is closing (lingering to repeat its
// close to a peer still sending it packets, up to a second) ends it at
// once. The path's delay (500 ms each way) keeps the receiver's
// acknowledgements coming long after the first signal.
TEST(TransferInterruptTest, SecondSignalWhileClosingExitsAtOnce) {
  const std::string name = "out-second-signal";
  const std::string out = absl::StrCat(TempDir(), "/", name);
  UdpmsgServer recv = StartUdpmsgServer({"recv", "--reliable", "--port", "0", "--bind", "127.0.0.1", "--out", out,
                       "--timeout", kPeerTimeout});
  ASSERT_NE(recv.port, 0);
  UdpmsgServer proxy = StartUdpmsgServer({"impair", "--listen", "0", "--bind", "127.0.0.1", "--to",
                        absl::StrCat("127.0.0.1:", recv.port), "--delay", "500ms"});
  ASSERT_NE(proxy.port, 0);
  auto send = StartUdpmsg({"send", "--reliable", absl::StrCat("127.0.0.1:", proxy.port), "--timeout",
                      kPeerTimeout, "--progress", "off"});
  ASSERT_NE(send, nullptr);
  ASSERT_TRUE(send->WriteStdin(std::string(2 << 20, 'z')).ok());
  absl::StatusOr<std::string> line = recv.process->ReadStderrLine(kStartTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  ASSERT_THAT(*line, StartsWith("receiving from "));

  send->Kill(SIGINT);
  const absl::Time stopped = absl::Now();
  line = send->ReadStderrLine(kStartTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_THAT(*line, StartsWith("udpmsg: interrupted by SIGINT after "));
  send->Kill(SIGINT);
  EXPECT_EQ(ExitCodeWithin(*send, absl::Seconds(10)), 130) << send->stderr_text();
  // Well inside the one-second closing time.
  EXPECT_LT(absl::Now() - stopped, absl::Milliseconds(600));
  EXPECT_EQ(CountOf(send->stderr_text(), "\n"), 1) << send->stderr_text();

  EXPECT_EQ(ExitCodeWithin(*recv.process, absl::Seconds(30)), 1) << recv.process->stderr_text();
  EXPECT_LT(absl::Now() - stopped, kPrompt) << "the receiver waited for its timeout";
  EXPECT_THAT(LastLine(recv.process->stderr_text()),
              HasSubstr("interrupted the transfer (SIGINT)"));
  EXPECT_FALSE(Exists(out));
  EXPECT_FALSE(AnyFileStartsWith(TempDir(), name + ".part")) << "temporary file left behind";
  proxy.process->Kill(SIGTERM);
  EXPECT_EQ(ExitCodeWithin(*proxy.process, absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace udpmsg::testing
