#include "tests/cli/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace udpmsg::testing {

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    const std::vector<std::string>& argv) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
      ::pipe2(err, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::unique_ptr<Subprocess> p(new Subprocess());
  int rc = ::posix_spawn(&p->pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  p->stdin_fd_ = in[1];
  p->out_.fd = out[0];
  p->err_.fd = err[0];
  if (rc != 0) {
    p->reaped_ = true;
    return absl::InternalError(absl::StrCat("posix_spawn ", argv[0], ": ", std::strerror(rc)));
  }
  return p;
}

Subprocess::~Subprocess() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  for (int fd : {stdin_fd_, out_.fd, err_.fd}) {
    if (fd >= 0) ::close(fd);
  }
}

absl::Status Subprocess::WriteStdin(const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(stdin_fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError(absl::StrCat("write stdin: ", std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

void Subprocess::CloseStdin() {
  if (stdin_fd_ >= 0) ::close(stdin_fd_);
  stdin_fd_ = -1;
}

bool Subprocess::Pump(absl::Time deadline) {
  pollfd fds[2];
  Stream* streams[2];
  int n = 0;
  for (Stream* s : {&out_, &err_}) {
    if (!s->eof) {
      fds[n] = {s->fd, POLLIN, 0};
      streams[n++] = s;
    }
  }
  if (n == 0) return false;
  const absl::Duration left = deadline - absl::Now();
  const int ms = left <= absl::ZeroDuration() ? 0 : static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
  int ready = ::poll(fds, n, ms);
  if (ready <= 0) return false;
  for (int i = 0; i < n; ++i) {
    if (fds[i].revents == 0) continue;
    char buffer[65536];
    ssize_t got = ::read(fds[i].fd, buffer, sizeof(buffer));
    if (got <= 0) {
      streams[i]->eof = true;
    } else {
      streams[i]->all.append(buffer, static_cast<size_t>(got));
    }
  }
  return true;
}

absl::StatusOr<std::string> Subprocess::ReadLine(Stream& stream, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    size_t newline = stream.all.find('\n', stream.consumed);
    if (newline != std::string::npos) {
      std::string line = stream.all.substr(stream.consumed, newline - stream.consumed);
      stream.consumed = newline + 1;
      return line;
    }
    if (stream.eof) return absl::OutOfRangeError("end of stream");
    if (!Pump(deadline) && absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no line within ", absl::FormatDuration(timeout), "; stdout so far: \"",
                       out_.all, "\"; stderr so far: \"", err_.all, "\""));
    }
  }
}

absl::StatusOr<std::string> Subprocess::ReadStdoutLine(absl::Duration timeout) {
  return ReadLine(out_, timeout);
}

absl::StatusOr<std::string> Subprocess::ReadStderrLine(absl::Duration timeout) {
  return ReadLine(err_, timeout);
}

absl::Status Subprocess::WaitForStderr(const std::string& text, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!absl::StrContains(err_.all, text)) {
    if (err_.eof) {
      return absl::OutOfRangeError(
          absl::StrCat("stderr ended without \"", text, "\": \"", err_.all, "\""));
    }
    if (!Pump(deadline) && absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no \"", text, "\" on stderr within ", absl::FormatDuration(timeout),
                       "; stderr so far: \"", err_.all, "\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!(out_.eof && err_.eof)) {
    if (!Pump(deadline) && absl::Now() >= deadline) {
      Kill(SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      reaped_ = true;
      return absl::DeadlineExceededError(
          absl::StrCat("process did not exit within ", absl::FormatDuration(timeout),
                       "; stderr: \"", err_.all, "\""));
    }
  }
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

void Subprocess::Kill(int signal) {
  if (!reaped_) ::kill(pid_, signal);
}

std::string UdpmsgPath() {
  // Bazel runs tests in the runfiles tree of the workspace.
  return "cli/udpmsg";
}

int FreePortPair() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    int probe = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ::close(probe);
      continue;
    }
    const int port = ntohs(a.sin_port);
    ::close(probe);
    if (port >= 65535) continue;
    bool free = true;
    for (auto [type, p] : {std::pair{SOCK_DGRAM, port}, std::pair{SOCK_STREAM, port},
                           std::pair{SOCK_DGRAM, port + 1}}) {
      int fd = ::socket(AF_INET, type, 0);
      sockaddr_in b{};
      b.sin_family = AF_INET;
      b.sin_addr.s_addr = htonl(INADDR_ANY);
      b.sin_port = htons(static_cast<uint16_t>(p));
      if (::bind(fd, reinterpret_cast<sockaddr*>(&b), sizeof(b)) != 0) free = false;
      ::close(fd);
    }
    if (free) return port;
  }
  return 0;
}

absl::StatusOr<int> ParseListeningPort(const std::string& line) {
  if (!absl::StartsWith(line, "listening on ")) {
    return absl::InvalidArgumentError(absl::StrCat("not a listening line: \"", line, "\""));
  }
  size_t colon = line.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(line.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("no port in \"", line, "\""));
  }
  return port;
}

std::unique_ptr<Subprocess> StartUdpmsg(std::vector<std::string> args) {
  args.insert(args.begin(), UdpmsgPath());
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(args);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

UdpmsgServer StartUdpmsgServer(std::vector<std::string> args, absl::Duration timeout) {
  UdpmsgServer s;
  s.process = StartUdpmsg(std::move(args));
  if (s.process == nullptr) return s;
  absl::StatusOr<std::string> line = s.process->ReadStderrLine(timeout);
  EXPECT_TRUE(line.ok()) << line.status();
  absl::StatusOr<int> port = ParseListeningPort(line.ok() ? *line : "");
  EXPECT_TRUE(port.ok()) << port.status() << " in " << (line.ok() ? *line : "");
  s.port = port.ok() ? *port : 0;
  return s;
}

int ExitCodeWithin(Subprocess& p, absl::Duration timeout) {
  absl::StatusOr<int> code = p.Wait(timeout);
  EXPECT_TRUE(code.ok()) << code.status();
  return code.ok() ? *code : -1;
}

RunResult RunUdpmsg(std::vector<std::string> args, const std::string& stdin_text,
                    absl::Duration timeout) {
  std::unique_ptr<Subprocess> p = StartUdpmsg(std::move(args));
  if (p == nullptr) return {};
  if (!stdin_text.empty()) {
    const absl::Status written = p->WriteStdin(stdin_text);
    EXPECT_TRUE(written.ok()) << written;
  }
  p->CloseStdin();
  return {ExitCodeWithin(*p, timeout), p->stdout_text(), p->stderr_text()};
}

std::string FirstExecutable(const std::vector<std::string>& candidates) {
  for (const std::string& c : candidates) {
    if (::access(c.c_str(), X_OK) == 0) return c;
  }
  return "";
}

absl::Status RunToSuccess(const std::vector<std::string>& argv, absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv);
  if (!p.ok()) return p.status();
  absl::StatusOr<int> rc = (*p)->Wait(timeout);
  if (rc.ok() && *rc == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), ": ",
                                          rc.ok() ? absl::StrCat("exit ", *rc)
                                                  : std::string(rc.status().message()),
                                          ": ", (*p)->stdout_text(), (*p)->stderr_text()));
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

std::map<std::string, uint64_t> ImpairCounters(const std::string& stderr_text,
                                               const std::string& direction) {
  std::map<std::string, uint64_t> counters;
  for (absl::string_view line : absl::StrSplit(stderr_text, '\n', absl::SkipEmpty())) {
    if (!absl::StartsWith(line, direction + ":")) continue;
    for (absl::string_view field : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      std::vector<std::string> kv = absl::StrSplit(field, '=');
      uint64_t value = 0;
      if (kv.size() == 2 && absl::SimpleAtoi(kv[1], &value)) counters[kv[0]] = value;
    }
  }
  return counters;
}

}  // namespace udpmsg::testing
