#include "redis/server_process.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace udpmsg::redis {
namespace {

constexpr int kPortAttempts = 5;
// Between two looks at a server that is starting or a child that is ending.
constexpr absl::Duration kPollInterval = absl::Milliseconds(5);
constexpr absl::Duration kKillTimeout = absl::Seconds(30);
// One readiness probe (connect, AUTH, PING, INFO). Short, so that a port
// another process listens on (and never answers) costs little; a probe that
// runs out is simply tried again until the startup bound.
constexpr absl::Duration kProbeTimeout = absl::Milliseconds(250);

std::string ErrnoText(int error) {
  char buffer[256];
  return ::strerror_r(error, buffer, sizeof(buffer));
}

bool IsExecutable(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// /usr/bin/redis-server, else the first redis-server on PATH; empty if none.
std::string FindServerProcess() {
  const std::string usual = "/usr/bin/redis-server";
  if (IsExecutable(usual)) return usual;
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/redis-server");
    if (IsExecutable(candidate)) return candidate;
  }
  return "";
}

absl::StatusOr<std::string> MakeDirectory(bool* under_test_tmpdir) {
  const char* test_tmpdir = std::getenv("TEST_TMPDIR");
  *under_test_tmpdir = test_tmpdir != nullptr && test_tmpdir[0] != '\0';
  std::string pattern = absl::StrCat(*under_test_tmpdir ? test_tmpdir : "/tmp", "/redis-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", pattern, ": ", ErrnoText(errno)));
  }
  return pattern;
}

// A TCP port of 127.0.0.1 that was free a moment ago (0 if none).
int PickPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

// RFC 3986 percent-encoding of everything but the unreserved characters.
std::string PercentEncode(absl::string_view in) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : in) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

off_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

// The file from `offset` on (at most 1 MiB).
std::string ReadFrom(const std::string& path, off_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(offset);
  std::string text(1 << 20, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

// A test CA and a certificate for 127.0.0.1 it signed (EC P-256, valid two
// days) in `dir`, made by the openssl command: ca.pem, server.pem,
// server.key. INTERNAL with the command's output when it fails.
absl::Status MakeCertificates(const std::string& dir) {
  const std::string quiet = absl::StrCat(" >>'", dir, "/openssl.log' 2>&1");
  const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::vector<std::string> commands = {
      absl::StrCat("cd '", dir, "' && printf 'subjectAltName=IP:127.0.0.1\n' > san.ext"),
      absl::StrCat("cd '", dir, "' && openssl req -x509", ec,
                   " -days 2 -subj /CN=udpmsg-test-ca -keyout ca.key -out ca.pem", quiet),
      absl::StrCat("cd '", dir, "' && openssl req", ec,
                   " -subj /CN=127.0.0.1 -keyout server.key -out server.csr", quiet),
      absl::StrCat("cd '", dir, "' && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key",
                   " -CAcreateserial -days 2 -extfile san.ext -out server.pem", quiet),
  };
  for (const std::string& c : commands) {
    if (std::system(c.c_str()) != 0) {
      return absl::InternalError(absl::StrCat("making a test certificate failed (", c,
                                              "): ", ReadFrom(dir + "/openssl.log", 0)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(Options options) {
  if (options.startup_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ServerProcess: startup_timeout must be positive");
  }
  std::unique_ptr<ServerProcess> server(new ServerProcess(std::move(options)));
  server->binary_ = FindServerProcess();
  if (server->binary_.empty()) {
    return absl::FailedPreconditionError(
        "redis-server is neither /usr/bin/redis-server nor on PATH; ./bazelw installs it "
        "(Debian package redis-server)");
  }
  bool under_test_tmpdir = false;
  absl::StatusOr<std::string> dir = MakeDirectory(&under_test_tmpdir);
  if (!dir.ok()) return dir.status();
  server->dir_ = *std::move(dir);
  server->remove_dir_ = !under_test_tmpdir;
  if (server->options_.tls) {
    if (absl::Status s = MakeCertificates(server->dir_); !s.ok()) return s;
  }

  absl::Status last;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    server->port_ = PickPort();
    if (server->port_ == 0) {
      return absl::InternalError(absl::StrCat("no free TCP port on 127.0.0.1: ", ErrnoText(errno)));
    }
    bool port_taken = false;
    last = server->Launch(&port_taken);
    if (last.ok()) return server;
    if (!port_taken) return last;
  }
  return last;
}

ServerProcess::~ServerProcess() {
  Kill(SIGKILL);
  if (remove_dir_ && !dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::string ServerProcess::url(const std::string& room) const {
  const std::string credentials =
      options_.password.empty() ? "" : absl::StrCat(":", PercentEncode(options_.password), "@");
  return absl::StrCat(options_.tls ? "rediss://" : "redis://", credentials, "127.0.0.1:", port_,
                      "/", room);
}

Endpoint ServerProcess::endpoint() const {
  Endpoint e;
  e.host = "127.0.0.1";
  e.port = port_;
  e.password = options_.password;
  if (options_.tls) {
    e.tls = true;
    e.tls_ca_file = absl::StrCat(dir_, "/ca.pem");
  }
  return e;
}

std::string ServerProcess::LogTail(int lines) const {
  const std::string path = absl::StrCat(dir_, "/redis.log");
  const off_t size = FileSize(path);
  const off_t keep = 64 * 1024;
  std::string text = ReadFrom(path, size > keep ? size - keep : 0);
  std::vector<absl::string_view> all =
      absl::StrSplit(absl::StripTrailingAsciiWhitespace(text), '\n');
  if (all.size() > static_cast<size_t>(lines)) {
    all.erase(all.begin(), all.end() - lines);
  }
  return absl::StrJoin(all, "\n");
}

absl::Status ServerProcess::Launch(bool* port_taken) {
  *port_taken = false;
  const std::string log_path = absl::StrCat(dir_, "/redis.log");
  std::vector<std::string> args = {
      binary_,
      "--port",
      absl::StrCat(port_),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir_,
      "--appendonly",
      options_.persistence == Persistence::kNone ? "no" : "yes",
      "--appendfsync",
      options_.persistence == Persistence::kAofEverySec ? "everysec" : "always",
      "--save",
      "",
      "--daemonize",
      "no",
      "--protected-mode",
      "no"};
  if (!options_.password.empty()) {
    args.push_back("--requirepass");
    args.push_back(options_.password);
  }
  if (options_.tls) {  // TLS only: the plain port closed
    args[2] = "0";
    for (const std::string& a :
         {std::string("--tls-port"), absl::StrCat(port_), std::string("--tls-cert-file"),
          absl::StrCat(dir_, "/server.pem"), std::string("--tls-key-file"),
          absl::StrCat(dir_, "/server.key"), std::string("--tls-ca-cert-file"),
          absl::StrCat(dir_, "/ca.pem"), std::string("--tls-auth-clients"), std::string("no")}) {
      args.push_back(a);
    }
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // Everything the child needs is ready before fork: between fork and exec
  // it calls only async-signal-safe functions.
  const off_t log_start = FileSize(log_path);
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(absl::StrCat("open ", log_path, ": ", ErrnoText(errno)));
  }
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int exec_error[2];
  if (null_fd < 0 || ::pipe2(exec_error, O_CLOEXEC) != 0) {
    const int error = errno;
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return absl::InternalError(absl::StrCat("open /dev/null or pipe2: ", ErrnoText(error)));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The server dies with the process that started it, even a killed one.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(argv[0], argv.data());
    const int error = errno;
    ssize_t ignored = ::write(exec_error[1], &error, sizeof(error));
    (void)ignored;
    ::_exit(127);
  }
  const int fork_error = errno;
  ::close(log_fd);
  ::close(null_fd);
  ::close(exec_error[1]);
  if (pid < 0) {
    ::close(exec_error[0]);
    return absl::InternalError(absl::StrCat("fork: ", ErrnoText(fork_error)));
  }
  pid_ = pid;
  // EOF once exec succeeded (the pipe is close-on-exec), errno if it failed.
  int error = 0;
  ssize_t got;
  do {
    got = ::read(exec_error[0], &error, sizeof(error));
  } while (got < 0 && errno == EINTR);
  ::close(exec_error[0]);
  if (got == static_cast<ssize_t>(sizeof(error))) {
    Reap(absl::InfiniteDuration());
    return absl::InternalError(absl::StrCat("exec ", binary_, ": ", ErrnoText(error)));
  }

  const absl::Time deadline = absl::Now() + options_.startup_timeout;
  std::string last_answer = "nothing yet";
  for (;;) {
    if (!running()) {
      const std::string log = ReadFrom(log_path, log_start);
      *port_taken = absl::StrContains(log, "Address already in use");
      return absl::UnavailableError(absl::StrCat(
          "redis-server on port ", port_, " exited while starting; its log ends:\n", LogTail()));
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    absl::StatusOr<std::unique_ptr<Connection>> c =
        Connection::Connect(endpoint(), std::min(left, kProbeTimeout));
    if (!c.ok()) {
      last_answer = c.status().ToString();
    } else {
      absl::StatusOr<Reply> pong = (*c)->Command({"PING"});
      if (!pong.ok()) {
        last_answer = pong.status().ToString();
      } else if (pong->type != Reply::Type::kStatus || pong->str != "PONG") {
        last_answer = absl::StrCat("PING answered \"", pong->str, "\"");  // e.g. -LOADING
      } else {
        // Another process may hold the port we picked: make sure the server
        // that answers is ours.
        absl::StatusOr<Reply> info = (*c)->Command({"INFO", "server"});
        const std::string ours = absl::StrCat("process_id:", pid_, "\r\n");
        if (info.ok() && info->type == Reply::Type::kString && absl::StrContains(info->str, ours)) {
          return absl::OkStatus();
        }
        last_answer = "a server that is not ours answers on the port";
      }
    }
    absl::SleepFor(std::min(kPollInterval, std::max(deadline - absl::Now(), absl::ZeroDuration())));
  }
  Kill(SIGKILL);
  return absl::DeadlineExceededError(
      absl::StrCat("redis-server on port ", port_, " did not answer PING within ",
                   absl::FormatDuration(options_.startup_timeout), " (last: ", last_answer,
                   "); its log ends:\n", LogTail()));
}

bool ServerProcess::Reap(absl::Duration timeout) {
  if (pid_ < 0) return true;
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const int options = timeout == absl::InfiniteDuration() ? 0 : WNOHANG;
    const pid_t r = ::waitpid(pid_, nullptr, options);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      pid_ = -1;
      return true;
    }
    if (r < 0 && errno == EINTR) continue;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(std::min(kPollInterval, deadline - absl::Now()));
  }
}

void ServerProcess::Kill(int signal) {
  if (pid_ < 0) return;
  ::kill(pid_, signal);
  if (!Reap(kKillTimeout)) {
    ::kill(pid_, SIGKILL);
    Reap(absl::InfiniteDuration());
  }
}

bool ServerProcess::running() {
  if (pid_ < 0) return false;
  return !Reap(absl::ZeroDuration());
}

absl::Status ServerProcess::Restart() {
  if (running()) {
    return absl::FailedPreconditionError(
        absl::StrCat("redis-server on port ", port_, " is still running; Kill it first"));
  }
  absl::Status last;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    bool port_taken = false;
    last = Launch(&port_taken);
    if (last.ok() || !port_taken) return last;
    // Someone holds our port: give it a moment, then try again (bounded).
    absl::SleepFor(absl::Milliseconds(100));
  }
  return last;
}

}  // namespace udpmsg::redis
