#include "bench/connections.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "apps/chat/client_core.h"
#include "apps/chat/rules.h"
#include "apps/chat/text.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg::bench {
namespace {

// Every Host is polled at least this often (its timers: acknowledgement
// delay, keepalives, retransmissions) besides whenever its socket is
// readable; a sweep skips the Hosts polled within the interval.
constexpr absl::Duration kSweepInterval = absl::Milliseconds(20);
// How often the workers publish their counters and the main thread prints
// progress.
constexpr absl::Duration kPublishInterval = absl::Milliseconds(100);
constexpr absl::Duration kProgressInterval = absl::Seconds(2);
// The settle phase ends after this long without a line reaching any member.
constexpr absl::Duration kQuiet = absl::Seconds(1);
// The text of a load line: this prefix and the line's number.
constexpr char kLinePrefix[] = "bench line ";
constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    const int e = errno;
    if (e == ENOENT || e == ESRCH) return absl::NotFoundError(absl::StrCat(path, ": gone"));
    return absl::ErrnoToStatus(e, absl::StrCat("open ", path));
  }
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The sum of the second field (run-queue wait, ns) of every thread's
// schedstat under /proc/`who`/task; -1 when unreadable.
double RunDelaySeconds(const std::string& who) {
  const std::string dir = absl::StrCat("/proc/", who, "/task");
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return -1;
  int64_t ns = 0;
  bool any = false;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    absl::StatusOr<std::string> text =
        ReadSmallFile(absl::StrCat(dir, "/", e->d_name, "/schedstat"));
    if (!text.ok()) continue;
    std::vector<absl::string_view> f = absl::StrSplit(*text, ' ', absl::SkipEmpty());
    int64_t wait = 0;
    if (f.size() >= 2 && absl::SimpleAtoi(f[1], &wait)) {
      ns += wait;
      any = true;
    }
  }
  ::closedir(d);
  return any ? static_cast<double>(ns) / 1e9 : -1;
}

// The threads of process `pid` now (/proc/PID/task); 0 when unreadable.
int CountThreads(pid_t pid) {
  DIR* d = ::opendir(absl::StrCat("/proc/", pid, "/task").c_str());
  if (d == nullptr) return 0;
  int n = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

// Client-side CPU (this process) and RSS.
ProcSample SelfSample() {
  ProcSample s;
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  s.cpu_seconds = static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
                  static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  absl::StatusOr<std::string> status = ReadSmallFile("/proc/self/status");
  if (status.ok()) {
    absl::StatusOr<int64_t> rss = ParseVmRssKib(*status);
    if (rss.ok()) s.rss_kib = *rss;
  }
  s.run_delay_seconds = RunDelaySeconds("self");
  return s;
}

// Raises RLIMIT_NOFILE's soft limit to the hard one (and both to `need` when
// privileged); returns the soft limit now.
int64_t RaiseFileLimit(int64_t need) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
  if (r.rlim_max != RLIM_INFINITY && static_cast<int64_t>(r.rlim_max) < need) {
    rlimit more = r;
    more.rlim_max = static_cast<rlim_t>(need);
    if (::setrlimit(RLIMIT_NOFILE, &more) == 0) r = more;  // root (CAP_SYS_RESOURCE)
  }
  r.rlim_cur = r.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &r) != 0) ::getrlimit(RLIMIT_NOFILE, &r);
  return r.rlim_cur == RLIM_INFINITY ? int64_t{1} << 40 : static_cast<int64_t>(r.rlim_cur);
}

// The lowest free descriptor number (what the next socket() gets).
int LowestFreeFd() {
  const int fd = ::fcntl(STDIN_FILENO, F_DUPFD, 0);
  if (fd < 0) return -1;
  ::close(fd);
  return fd;
}

bool IsEpollFd(int fd) {
  char target[64] = {};
  const std::string link = absl::StrCat("/proc/self/fd/", fd);
  const ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
  return n > 0 && absl::string_view(target, static_cast<size_t>(n)) == "anon_inode:[eventpoll]";
}

// The UDP receive-buffer drops of this network namespace so far
// (/proc/net/snmp, Udp RcvbufErrors); -1 when unreadable.
int64_t UdpReceiveBufferDrops() {
  absl::StatusOr<std::string> snmp = ReadSmallFile("/proc/net/snmp");
  if (!snmp.ok()) return -1;
  std::vector<std::string> udp;
  for (absl::string_view line : absl::StrSplit(*snmp, '\n')) {
    if (absl::StartsWith(line, "Udp: ")) udp.emplace_back(line);
  }
  if (udp.size() < 2) return -1;
  std::vector<absl::string_view> names = absl::StrSplit(udp[0], ' ', absl::SkipEmpty());
  std::vector<absl::string_view> values = absl::StrSplit(udp[1], ' ', absl::SkipEmpty());
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    int64_t v = 0;
    if (names[i] == "RcvbufErrors" && absl::SimpleAtoi(values[i], &v)) return v;
  }
  return -1;
}

// The drops of the UDP sockets bound to `port` in this namespace
// (/proc/net/udp and udp6, last column); -1 when none is found.
int64_t SocketDrops(int port) {
  int64_t drops = -1;
  const std::string suffix = absl::StrFormat(":%04X", port);
  for (const char* path : {"/proc/net/udp", "/proc/net/udp6"}) {
    absl::StatusOr<std::string> text = ReadSmallFile(path);
    if (!text.ok()) continue;
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() < 13 || !absl::EndsWith(f[1], suffix)) continue;
      int64_t d = 0;
      if (absl::SimpleAtoi(f.back(), &d)) drops = std::max<int64_t>(drops, 0) + d;
    }
  }
  return drops;
}

// `reason` cut before its first address ("... peer 127.1.0.4:5913 ...") so
// that equal causes count together.
std::string WithoutAddresses(absl::string_view reason) {
  for (absl::string_view mark : {"127.", "[", "0.0.0.0"}) {
    const size_t at = reason.find(mark);
    if (at != absl::string_view::npos) reason = reason.substr(0, at);
  }
  return std::string(absl::StripTrailingAsciiWhitespace(reason));
}

// ---- the server

class Server final {
 public:
  // Spawns `binary chat serve ...` with stderr in a temporary file and
  // waits for its "listening on" line.
  static absl::StatusOr<std::unique_ptr<Server>> Spawn(const std::string& binary,
                                                       const std::vector<std::string>& args) {
    auto server = std::unique_ptr<Server>(new Server());
    char path[] = "/tmp/udpmsg-bench-server.XXXXXX";
    const int log = ::mkstemp(path);
    if (log < 0) return absl::ErrnoToStatus(errno, "mkstemp /tmp/udpmsg-bench-server.XXXXXX");
    server->log_path_ = path;
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), args.begin(), args.end());
    server->command_ = absl::StrJoin(argv, " ");
    std::vector<char*> raw;
    for (std::string& a : argv) raw.push_back(a.data());
    raw.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int e = errno;
      ::close(log);
      return absl::ErrnoToStatus(e, "fork");
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);
      const int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, STDIN_FILENO);
      ::dup2(null, STDOUT_FILENO);
      ::dup2(log, STDERR_FILENO);
      ::execv(raw[0], raw.data());
      ::_exit(127);
    }
    ::close(log);
    server->pid_ = pid;
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    for (;;) {
      absl::StatusOr<std::string> text = ReadSmallFile(server->log_path_);
      if (text.ok()) {
        const size_t at = text->find("listening on ");
        const size_t end = at == std::string::npos ? at : text->find('\n', at);
        if (end != std::string::npos) {
          const std::string line = text->substr(at, end - at);
          int port = 0;
          if (!absl::SimpleAtoi(line.substr(line.rfind(':') + 1), &port)) {
            return absl::InternalError(absl::StrCat("server said \"", line, "\": no port"));
          }
          server->port_ = port;
          return server;
        }
      }
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        server->pid_ = 0;
        return absl::FailedPreconditionError(absl::StrCat(
            "`", server->command_, "` exited (status ", status,
            ") before listening: ", absl::StripAsciiWhitespace(text.ok() ? *text : std::string())));
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("`", server->command_, "` did not say \"listening on\" within 10s"));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  ~Server() {
    Stop();
    if (!log_path_.empty() && !keep_log_) ::unlink(log_path_.c_str());
  }

  // Keeps the log file (a run that lost connections).
  void KeepLog() { keep_log_ = true; }

  // SIGTERM (the server tells its members and flushes for up to 2 s), then
  // SIGKILL after 10 s. Returns whether it was still running.
  bool Stop() {
    if (pid_ <= 0) return false;
    ::kill(pid_, SIGTERM);
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    pid_ = 0;
    return true;
  }

  // Whether the server exited on its own (reaps it).
  bool Exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = 0;
      keep_log_ = true;
      return true;
    }
    return false;
  }

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  const std::string& command() const { return command_; }
  const std::string& log_path() const { return log_path_; }

 private:
  Server() = default;
  pid_t pid_ = 0;
  int port_ = 0;
  std::string command_;
  std::string log_path_;
  bool keep_log_ = false;
};

// ---- the client swarm

enum class Phase : int { kConnect, kSettle, kIdle, kLoad, kDrain, kStop };

struct Member {
  enum class State { kWaiting, kConnecting, kJoining, kMember, kFailed, kLost };
  explicit Member(int64_t index) : core(absl::StrCat("m", index)) {}
  chat::ClientCore core;
  size_t host = 0;  // index into the worker's hosts
  ConnectionId id = 0;
  State state = State::kWaiting;
  absl::Time started;
  uint64_t last_seq = 0;
  // Load lines received, and the FNV-1a hash of their numbers in order.
  uint64_t lines = 0;
  uint64_t hash = kFnvOffset;
  bool seq_went_back = false;
};

struct ClientHost {
  std::unique_ptr<Host> host;
  int epoll_fd = -1;  // the Host's own epoll descriptor, or -1 when not found
  absl::flat_hash_map<ConnectionId, size_t> members;  // connection -> member index
  bool dirty = false;                                 // queued something since its last Poll
  absl::Time polled_at = absl::InfinitePast();        // loop_now_ at its last Poll
};

// What a worker publishes for the main thread (relaxed atomics, written by
// the worker alone).
struct Counters {
  std::atomic<int64_t> attempts{0};    // Connect() called
  std::atomic<int64_t> joined{0};      // Welcome received
  std::atomic<int64_t> failed{0};      // never joined
  std::atomic<int64_t> lost{0};        // closed while a member
  std::atomic<int64_t> deliveries{0};  // load lines received
  std::atomic<int64_t> lines_sent{0};
  std::atomic<int64_t> send_errors{0};
  std::atomic<int64_t> refused{0};                 // "slow down" errors
  std::atomic<int64_t> lines_received{0};          // every Line, any kind
  std::atomic<int64_t> behind{0};                  // kDrain: members short of the expected lines
  std::atomic<uint64_t> behind_for{~uint64_t{0}};  // the target `behind` was counted for
  std::atomic<int64_t> turns{0};
};

struct Shared {
  std::atomic<int> phase{static_cast<int>(Phase::kConnect)};
  // kLoad: lines are numbered from 0 at load_start + k / line_rate.
  std::atomic<int64_t> load_start_ns{0};
  std::atomic<int64_t> load_lines{0};       // lines to send in all (set before kLoad)
  std::atomic<int64_t> expected_lines{-1};  // kDrain: lines every member must get
  // The first client thread's error.
  std::mutex mu;
  absl::Status error;  // guarded by mu
  std::atomic<bool> failed{false};
};

class Worker final {
 public:
  Worker(int index, int threads, const ConnectionsConfig& config, Shared* shared)
      : index_(index), threads_(threads), config_(config), shared_(shared) {}

  // Adds a Host (created on the main thread) and the members it carries.
  void AddHost(ClientHost host, const std::vector<int64_t>& member_indices) {
    const size_t h = hosts_.size();
    hosts_.push_back(std::move(host));
    for (int64_t m : member_indices) {
      members_.push_back(std::make_unique<Member>(m));
      members_.back()->host = h;
    }
  }

  absl::Status Run();

  Counters& counters() { return counters_; }
  std::vector<double> connect_ms() {
    std::lock_guard<std::mutex> lock(mu_);
    return connect_ms_;
  }
  std::vector<double> join_ms() {
    std::lock_guard<std::mutex> lock(mu_);
    return join_ms_;
  }
  std::map<std::string, int64_t> failures() {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_;
  }
  // After Run returned: the order result of every member that is still a
  // member, as (lines, hash) -> count, and how many saw seq go back.
  void Orders(std::map<std::pair<uint64_t, uint64_t>, int64_t>* orders, int64_t* seq_back) const {
    for (const auto& m : members_) {
      if (m->state != Member::State::kMember) continue;
      ++(*orders)[{m->lines, m->hash}];
      if (m->seq_went_back) ++*seq_back;
    }
  }
  size_t hosts() const { return hosts_.size(); }

 private:
  Phase phase() const { return static_cast<Phase>(shared_->phase.load(std::memory_order_acquire)); }
  absl::Status PollHost(size_t h);
  void OnEvent(size_t h, const Event& e);
  void OnServerMessage(Member& m, const std::string& bytes);
  void Fail(Member& m, const std::string& why);
  void StartConnects();
  void SendDueLines(absl::Time now);
  void Publish();
  // A Host with something queued: its next Poll sends it.
  void MarkDirty(size_t h) {
    if (!hosts_[h].dirty) {
      hosts_[h].dirty = true;
      dirty_.push_back(h);
    }
  }
  absl::Status FlushDirty();
  void Note(const std::string& why) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failures_.size() < 16 || failures_.count(why) != 0) ++failures_[why];
  }

  const int index_;
  const int threads_;
  const ConnectionsConfig& config_;
  Shared* shared_;
  std::vector<ClientHost> hosts_;
  std::vector<std::unique_ptr<Member>> members_;
  std::vector<size_t> dirty_;
  // The loop turn's time: a sweep skips the Hosts polled since the last one.
  absl::Time loop_now_ = absl::InfinitePast();
  Counters counters_;
  std::mutex mu_;
  std::vector<double> connect_ms_;           // guarded by mu_
  std::vector<double> join_ms_;              // guarded by mu_
  std::map<std::string, int64_t> failures_;  // reason -> count, guarded by mu_
  size_t next_connect_ = 0;
  int64_t in_flight_ = 0;
  int64_t next_line_ = -1;  // the next load line this worker sends (k % threads == index)
  size_t next_sender_ = 0;
  int64_t deliveries_ = 0, lines_sent_ = 0, send_errors_ = 0, refused_ = 0;
  int64_t joined_ = 0, failed_ = 0, lost_ = 0;
  int64_t lines_received_ = 0;
};

void Worker::Fail(Member& m, const std::string& why) {
  if (m.state == Member::State::kConnecting || m.state == Member::State::kJoining) {
    m.state = Member::State::kFailed;
    --in_flight_;
    ++failed_;
    Note(absl::StrCat("failed: ", why));
  } else if (m.state == Member::State::kMember) {
    m.state = Member::State::kLost;
    ++lost_;
    Note(absl::StrCat("lost: ", why));
  }
  hosts_[m.host].host->Close(m.id, "bench: gave up", /*flush=*/false).IgnoreError();
  MarkDirty(m.host);
}

absl::Status Worker::FlushDirty() {
  // Polling may queue more (a Join after kConnected): a few rounds at most.
  for (int round = 0; round < 4 && !dirty_.empty(); ++round) {
    std::vector<size_t> now;
    now.swap(dirty_);
    for (size_t h : now) hosts_[h].dirty = false;
    for (size_t h : now) {
      if (absl::Status s = PollHost(h); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

void Worker::OnServerMessage(Member& m, const std::string& bytes) {
  absl::StatusOr<std::optional<chat::ClientEvent>> e = m.core.OnServerMessage(bytes);
  if (!e.ok()) {
    Fail(m, std::string(e.status().message()));
    return;
  }
  if (!e->has_value()) return;
  const chat::ClientEvent& ev = **e;
  switch (ev.type) {
    case chat::ClientEvent::Type::kWelcome: {
      if (m.state != Member::State::kJoining) return;
      m.state = Member::State::kMember;
      --in_flight_;
      ++joined_;
      std::lock_guard<std::mutex> lock(mu_);
      join_ms_.push_back(absl::ToDoubleMilliseconds(absl::Now() - m.started));
      return;
    }
    case chat::ClientEvent::Type::kError:
      if (absl::StartsWith(ev.text, "slow down")) {
        ++refused_;
      } else {
        Note(absl::StrCat("server error: ", ev.text));
      }
      return;
    case chat::ClientEvent::Type::kWhoReply:
      return;
    case chat::ClientEvent::Type::kLine:
      break;
  }
  const chat::DisplayLine& line = ev.line;
  if (line.seq <= m.last_seq) m.seq_went_back = true;
  m.last_seq = line.seq;
  ++lines_received_;
  using Kind = chat::DisplayLine::Kind;
  if (line.kind == Kind::kSay && absl::StartsWith(line.text, kLinePrefix)) {
    uint64_t k = 0;
    if (absl::SimpleAtoi(absl::string_view(line.text).substr(sizeof(kLinePrefix) - 1), &k)) {
      ++m.lines;
      m.hash = (m.hash ^ k) * kFnvPrime;
      ++deliveries_;
    }
  }
}

void Worker::OnEvent(size_t h, const Event& e) {
  auto it = hosts_[h].members.find(e.connection);
  if (it == hosts_[h].members.end()) return;
  Member& m = *members_[it->second];
  switch (e.type) {
    case Event::Type::kConnected: {
      if (m.state != Member::State::kConnecting) return;
      m.state = Member::State::kJoining;
      {
        std::lock_guard<std::mutex> lock(mu_);
        connect_ms_.push_back(absl::ToDoubleMilliseconds(absl::Now() - m.started));
      }
      absl::StatusOr<uint64_t> s = hosts_[h].host->Send(
          m.id, chat::kChannel, DeliveryMode::kReliableOrdered, m.core.JoinMessage());
      if (!s.ok()) Fail(m, absl::StrCat("send Join: ", s.status().message()));
      MarkDirty(h);
      return;
    }
    case Event::Type::kMessage:
      if (e.channel == chat::kChannel) OnServerMessage(m, e.message);
      return;
    case Event::Type::kAcked:
    case Event::Type::kPathChanged:
      return;
    case Event::Type::kClosed:
      if (m.state == Member::State::kFailed || m.state == Member::State::kLost) return;
      if (phase() == Phase::kStop) return;
      Fail(m, absl::StrCat(e.by_peer ? "closed by the server: " : "closed here: ",
                           CloseReasonName(e.close_reason), " ", WithoutAddresses(e.reason)));
      return;
  }
}

absl::Status Worker::PollHost(size_t h) {
  hosts_[h].polled_at = loop_now_;
  absl::StatusOr<Host::PollResult> r = hosts_[h].host->Poll(absl::ZeroDuration());
  if (!r.ok()) return r.status();
  for (const Event& e : r->events) OnEvent(h, e);
  return absl::OkStatus();
}

void Worker::StartConnects() {
  const int64_t window =
      std::max<int64_t>(1, (config_.connect_window + threads_ - 1 - index_) / threads_);
  while (in_flight_ < window && next_connect_ < members_.size()) {
    Member& m = *members_[next_connect_++];
    ClientHost& ch = hosts_[m.host];
    m.started = absl::Now();
    counters_.attempts.fetch_add(1, std::memory_order_relaxed);
    absl::StatusOr<ConnectionId> id = ch.host->Connect(config_.server);
    if (!id.ok()) {
      m.state = Member::State::kFailed;
      ++failed_;
      Note(absl::StrCat("failed: connect: ", id.status().message()));
      continue;
    }
    m.id = *id;
    m.state = Member::State::kConnecting;
    ch.members[m.id] = next_connect_ - 1;
    ++in_flight_;
    MarkDirty(m.host);
  }
}

void Worker::SendDueLines(absl::Time now) {
  const int64_t total = shared_->load_lines.load(std::memory_order_acquire);
  const absl::Time start = absl::FromUnixNanos(shared_->load_start_ns.load());
  if (next_line_ < 0) next_line_ = index_;
  while (next_line_ < total &&
         start + absl::Seconds(static_cast<double>(next_line_) / config_.line_rate) <= now) {
    // The next live member of this thread sends it.
    Member* sender = nullptr;
    for (size_t tries = 0; tries < members_.size() && sender == nullptr; ++tries) {
      Member& m = *members_[next_sender_];
      next_sender_ = (next_sender_ + 1) % members_.size();
      if (m.state == Member::State::kMember) sender = &m;
    }
    if (sender == nullptr) {
      ++send_errors_;
    } else {
      chat::UserInput in = chat::ParseInput(absl::StrCat(kLinePrefix, next_line_));
      absl::StatusOr<uint64_t> s = hosts_[sender->host].host->Send(
          sender->id, chat::kChannel, DeliveryMode::kReliableOrdered, std::move(in.message));
      MarkDirty(sender->host);
      if (s.ok()) {
        ++lines_sent_;
      } else {
        ++send_errors_;
        Note(absl::StrCat("send: ", s.status().message()));
      }
    }
    next_line_ += threads_;
  }
}

void Worker::Publish() {
  Counters& c = counters_;
  c.joined.store(joined_, std::memory_order_relaxed);
  c.failed.store(failed_, std::memory_order_relaxed);
  c.lost.store(lost_, std::memory_order_relaxed);
  c.deliveries.store(deliveries_, std::memory_order_relaxed);
  c.lines_sent.store(lines_sent_, std::memory_order_relaxed);
  c.send_errors.store(send_errors_, std::memory_order_relaxed);
  c.refused.store(refused_, std::memory_order_relaxed);
  c.lines_received.store(lines_received_, std::memory_order_relaxed);
  // In kDrain: members short of the expected number of load lines.
  if (phase() != Phase::kDrain) return;
  const int64_t expected = shared_->expected_lines.load(std::memory_order_acquire);
  int64_t behind = 0;
  for (const auto& m : members_) {
    if (m->state != Member::State::kMember) continue;
    if (expected >= 0 && static_cast<int64_t>(m->lines) < expected) ++behind;
  }
  c.behind.store(behind, std::memory_order_relaxed);
  c.behind_for.store(static_cast<uint64_t>(expected), std::memory_order_release);
}

absl::Status Worker::Run() {
  const int epoll = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) return absl::ErrnoToStatus(errno, "epoll_create1");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{epoll};
  for (size_t h = 0; h < hosts_.size(); ++h) {
    if (hosts_[h].epoll_fd < 0) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = h;
    if (::epoll_ctl(epoll, EPOLL_CTL_ADD, hosts_[h].epoll_fd, &ev) != 0) hosts_[h].epoll_fd = -1;
  }
  std::vector<epoll_event> ready(256);
  absl::Time next_sweep = absl::Now();
  absl::Time next_publish = absl::Now();
  for (;;) {
    const Phase p = phase();
    if (p == Phase::kStop) break;
    if (p == Phase::kConnect) StartConnects();
    absl::Time now = absl::Now();
    loop_now_ = now;
    if (p == Phase::kLoad) SendDueLines(now);
    if (now >= next_sweep) {
      loop_now_ = now;
      for (size_t h = 0; h < hosts_.size(); ++h) {
        if (hosts_[h].polled_at > now - kSweepInterval) continue;  // polled since the last sweep
        if (absl::Status s = PollHost(h); !s.ok()) return s;
      }
      now = absl::Now();
      next_sweep = now + kSweepInterval;
    }
    if (absl::Status s = FlushDirty(); !s.ok()) return s;
    if (now >= next_publish) {
      Publish();
      next_publish = now + kPublishInterval;
    }
    absl::Time wake = std::min(next_sweep, next_publish);
    if (p == Phase::kLoad) {
      const int64_t total = shared_->load_lines.load(std::memory_order_acquire);
      if (next_line_ >= 0 && next_line_ < total) {
        const absl::Time start = absl::FromUnixNanos(shared_->load_start_ns.load());
        wake = std::min(wake,
                        start + absl::Seconds(static_cast<double>(next_line_) / config_.line_rate));
      }
    }
    const int64_t ms =
        std::max<int64_t>(0, absl::ToInt64Milliseconds(wake - now + absl::Microseconds(999)));
    const int n = ::epoll_wait(epoll, ready.data(), static_cast<int>(ready.size()),
                               static_cast<int>(std::min<int64_t>(ms, 100)));
    if (n < 0 && errno != EINTR) return absl::ErrnoToStatus(errno, "epoll_wait");
    for (int i = 0; i < n; ++i) {
      if (absl::Status s = PollHost(static_cast<size_t>(ready[i].data.u64)); !s.ok()) return s;
    }
    if (absl::Status s = FlushDirty(); !s.ok()) return s;
    counters_.turns.fetch_add(1, std::memory_order_relaxed);
  }
  Publish();
  return absl::OkStatus();
}

// ---- the report

std::string Fixed(double v, int digits) { return absl::StrFormat("%.*f", digits, v); }

struct Row {
  std::string key;    // JSON name
  std::string label;  // table label
  std::string value;
  std::string note;
};

void PrintRows(const ConnectionsConfig& c, const std::string& title, const std::vector<Row>& rows,
               const std::vector<std::string>& notes) {
  if (c.json) {
    std::string out = "{";
    for (size_t i = 0; i < rows.size(); ++i) {
      // Percentages as bare numbers (their keys end in _pct).
      absl::string_view value = rows[i].value;
      absl::ConsumeSuffix(&value, "%");
      double v = 0;
      const bool number = absl::SimpleAtod(value, &v) && std::isfinite(v);
      absl::StrAppend(&out, i == 0 ? "" : ", ", "\"", rows[i].key,
                      "\": ", number ? std::string(value) : absl::StrCat("\"", value, "\""));
    }
    absl::StrAppend(&out, "}\n");
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
    return;
  }
  BenchTable t;
  t.title = title;
  if (c.format == TableFormat::kCsv) {  // the notes hold commas: figure names and values only
    t.columns = {"figure", "value"};
    for (const Row& r : rows) t.rows.push_back({r.key, r.value});
  } else {
    t.columns = {"figure", "value", "note"};
    for (const Row& r : rows) t.rows.push_back({r.label, r.value, r.note});
  }
  t.notes = notes;
  PrintTable(t, c.format);
}

}  // namespace

absl::Status ValidateConnectionsConfig(const ConnectionsConfig& c) {
  if (c.connections < 1 || c.connections > 1000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("connections ", c.connections, " is out of range (1 to 1000000)"));
  }
  if (c.threads < 1 || c.threads > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads ", c.threads, " is out of range (1 to 64)"));
  }
  if (c.per_socket < 1 || c.per_socket > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("connections per socket ", c.per_socket, " is out of range (1 to 1024)"));
  }
  if (c.connect_window < 1 || c.connect_window > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("connect window ", c.connect_window, " is out of range (1 to 100000)"));
  }
  if (!(c.line_rate > 0) || c.line_rate > 1e6) {
    return absl::InvalidArgumentError(
        absl::StrCat("line rate ", c.line_rate, " is out of range (above 0, at most 1000000)"));
  }
  if (c.idle < absl::ZeroDuration() || c.load < absl::ZeroDuration() || c.idle > absl::Hours(24) ||
      c.load > absl::Hours(24)) {
    return absl::InvalidArgumentError("idle and load durations must be 0 to 24h");
  }
  if (c.external && c.server_pid <= 0) {
    return absl::InvalidArgumentError("an external server needs its pid (for /proc)");
  }
  return absl::OkStatus();
}

namespace {

int64_t Sum(const std::vector<std::unique_ptr<Worker>>& workers,
            std::atomic<int64_t> Counters::*field) {
  int64_t n = 0;
  for (const auto& w : workers) n += (w->counters().*field).load(std::memory_order_relaxed);
  return n;
}

}  // namespace

absl::StatusOr<int64_t> ParseVmRssKib(absl::string_view status) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmRSS:")) continue;
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, "kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib)) return kib;
  }
  return absl::InvalidArgumentError("no VmRSS line in the status text");
}

absl::StatusOr<double> ParseStatCpuSeconds(absl::string_view stat, long ticks_per_second) {
  const size_t close = stat.rfind(')');
  if (close == absl::string_view::npos || ticks_per_second <= 0) {
    return absl::InvalidArgumentError("stat text without \"(comm)\"");
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipEmpty());
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  uint64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::InvalidArgumentError("stat text without utime and stime");
  }
  return static_cast<double>(utime + stime) / static_cast<double>(ticks_per_second);
}

absl::StatusOr<ProcSample> ReadProcSample(pid_t pid) {
  const std::string dir = absl::StrCat("/proc/", pid);
  absl::StatusOr<std::string> status = ReadSmallFile(dir + "/status");
  if (!status.ok()) return status.status();
  absl::StatusOr<std::string> stat = ReadSmallFile(dir + "/stat");
  if (!stat.ok()) return stat.status();
  absl::StatusOr<int64_t> rss = ParseVmRssKib(*status);
  if (!rss.ok()) return absl::NotFoundError(absl::StrCat(dir, "/status: no VmRSS (a zombie?)"));
  absl::StatusOr<double> cpu = ParseStatCpuSeconds(*stat, ::sysconf(_SC_CLK_TCK));
  if (!cpu.ok()) return absl::InternalError(absl::StrCat(dir, "/stat: ", cpu.status().message()));
  return ProcSample{*rss, *cpu, RunDelaySeconds(absl::StrCat(pid))};
}

double Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(p / 100.0 * static_cast<double>(values.size()));
  const size_t i = static_cast<size_t>(std::clamp(rank, 1.0, static_cast<double>(values.size())));
  return values[i - 1];
}

absl::StatusOr<udp::SocketAddress> ClientAddress(int64_t i) {
  if (i < 0) return absl::InvalidArgumentError("negative client socket index");
  const int64_t per_24 = 253;      // Z in 1..253 (254 and 255 left alone)
  const int64_t net = i / per_24;  // X.Y counting from 1.0
  const int64_t z = 1 + i % per_24;
  const int64_t xy = net + 256;  // X = 1, Y = 0 first
  if (xy >= 256 * 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("client socket ", i, " beyond 127.255.255.0/24"));
  }
  const uint32_t ip = (127u << 24) | (static_cast<uint32_t>(xy) << 8) | static_cast<uint32_t>(z);
  return udp::SocketAddress::Ipv4(ip, 0);
}

absl::Status RunConnections(const ConnectionsConfig& config) {
  if (absl::Status s = ValidateConnectionsConfig(config); !s.ok()) return s;
  ConnectionsConfig c = config;
  const int64_t n = c.connections;
  const int64_t sockets = (n + c.per_socket - 1) / c.per_socket;
  // Each Host holds a socket, an epoll and an eventfd.
  const int64_t fds_needed = sockets * 3 + 64;
  const int64_t fd_limit = RaiseFileLimit(fds_needed);
  if (fd_limit < fds_needed) {
    return absl::ResourceExhaustedError(
        absl::StrCat(n, " connections at ", c.per_socket, " per socket need ", fds_needed,
                     " descriptors; RLIMIT_NOFILE allows ", fd_limit,
                     " (raise it, or more connections per socket with --bench_per_socket)"));
  }
  ::signal(SIGPIPE, SIG_IGN);

  // The server.
  std::unique_ptr<Server> spawned;
  pid_t pid = c.server_pid;
  if (!c.external) {
    std::vector<std::string> args = {
        "chat",
        "serve",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        absl::StrCat("--max_members=", n),
        absl::StrCat("--max_members_per_address=", std::max(8, c.per_socket)),
        absl::StrCat("--timeout=", absl::FormatDuration(c.timeout))};
    args.insert(args.end(), c.server_args.begin(), c.server_args.end());
    absl::StatusOr<std::unique_ptr<Server>> s = Server::Spawn(c.server_binary, args);
    if (!s.ok()) return s.status();
    spawned = *std::move(s);
    pid = spawned->pid();
    c.server = udp::SocketAddress::Ipv4((127u << 24) | 1u, static_cast<uint16_t>(spawned->port()));
    c.server_description = absl::StrCat("spawned `udpmsg ", absl::StrJoin(args, " "), "`");
    std::fprintf(stderr, "bench connections: server pid %d: %s\n", static_cast<int>(pid),
                 spawned->command().c_str());
  }
  absl::SleepFor(absl::Milliseconds(200));
  absl::StatusOr<ProcSample> server_before = ReadProcSample(pid);
  if (!server_before.ok()) return server_before.status();
  const ProcSample client_before = SelfSample();
  const int server_port = c.server.port();
  const int64_t udp_drops_0 = UdpReceiveBufferDrops();
  const int64_t server_drops_0 = SocketDrops(server_port);

  // The client Hosts, created here on one thread so that each one's epoll
  // descriptor can be found among the descriptors it just opened.
  HostOptions options;
  options.handshake_timeout = c.timeout;
  options.peer_timeout = c.timeout;
  options.idle_timeout = c.timeout;
  options.keepalive = std::clamp(c.timeout / 4, absl::Milliseconds(50), absl::Seconds(5));
  options.max_message_bytes = chat::kMaxMessageBytes;
  options.max_connections = static_cast<size_t>(c.per_socket);
  options.socket_buffer_bytes = c.socket_buffer_bytes;
  options.max_reassembly_bytes = 1 << 20;
  options.max_undelivered_bytes = 1 << 20;
  Shared shared;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < c.threads; ++t) {
    workers.push_back(std::make_unique<Worker>(t, c.threads, c, &shared));
  }
  int64_t probed = 0;
  for (int64_t h = 0; h < sockets; ++h) {
    absl::StatusOr<udp::SocketAddress> local = ClientAddress(h);
    if (!local.ok()) return local.status();
    options.bind = *local;
    const int low = LowestFreeFd();
    absl::StatusOr<Host> host = Host::Create(options);
    if (!host.ok()) {
      return absl::Status(
          host.status().code(),
          absl::StrCat("client socket ", h + 1, " of ", sockets, ": ", host.status().message()));
    }
    ClientHost ch;
    ch.host = std::make_unique<Host>(*std::move(host));
    for (int fd = low; low >= 0 && fd < low + 8; ++fd) {
      if (IsEpollFd(fd)) {
        ch.epoll_fd = fd;
        ++probed;
        break;
      }
    }
    std::vector<int64_t> members;
    for (int64_t m = h * c.per_socket; m < std::min(n, (h + 1) * c.per_socket); ++m) {
      members.push_back(m);
    }
    workers[static_cast<size_t>(h % c.threads)]->AddHost(std::move(ch), members);
  }
  const ProcSample client_hosts = SelfSample();

  std::vector<std::thread> threads;
  for (size_t t = 0; t < workers.size(); ++t) {
    threads.emplace_back([&, t] {
      absl::Status s = workers[t]->Run();
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(shared.mu);
        if (shared.error.ok()) shared.error = s;
        shared.failed.store(true, std::memory_order_release);
      }
    });
  }
  struct Joiner {
    Shared* shared;
    std::vector<std::thread>* threads;
    ~Joiner() {
      shared->phase.store(static_cast<int>(Phase::kStop), std::memory_order_release);
      for (std::thread& t : *threads) {
        if (t.joinable()) t.join();
      }
    }
  } joiner{&shared, &threads};
  const auto set_phase = [&](Phase p) {
    shared.phase.store(static_cast<int>(p), std::memory_order_release);
  };
  const auto worker_failed = [&]() -> absl::Status {
    if (shared.failed.load(std::memory_order_acquire)) {
      std::lock_guard<std::mutex> lock(shared.mu);
      return shared.error;
    }
    if (spawned != nullptr && spawned->Exited()) {
      return absl::UnavailableError(
          absl::StrCat("the server exited; its log: ", spawned->log_path()));
    }
    if (!c.external || ::kill(pid, 0) == 0) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat("server pid ", pid, " is gone"));
  };

  // 1. Connect.
  const absl::Time connect_start = absl::Now();
  absl::Time last_progress = connect_start;
  absl::Time last_change = connect_start;
  int64_t last_done = -1;
  const absl::Duration stall = 2 * c.timeout + absl::Seconds(5);
  for (;;) {
    absl::SleepFor(kPublishInterval);
    if (absl::Status s = worker_failed(); !s.ok()) return s;
    const int64_t joined = Sum(workers, &Counters::joined);
    const int64_t failed = Sum(workers, &Counters::failed);
    const absl::Time now = absl::Now();
    if (joined + failed != last_done) {
      last_done = joined + failed;
      last_change = now;
    }
    if (now - last_progress >= kProgressInterval) {
      last_progress = now;
      std::fprintf(stderr,
                   "bench connections: connect: %lld of %lld joined, %lld failed (%.0f s)\n",
                   static_cast<long long>(joined), static_cast<long long>(n),
                   static_cast<long long>(failed), absl::ToDoubleSeconds(now - connect_start));
    }
    if (joined + failed >= n) break;
    if (now - last_change > stall) {
      std::fprintf(stderr, "bench connections: connect: no progress for %s; going on\n",
                   absl::FormatDuration(stall).c_str());
      break;
    }
  }
  const absl::Duration connect_wall = absl::Now() - connect_start;
  const int64_t udp_drops_1 = UdpReceiveBufferDrops();
  const int64_t server_drops_1 = SocketDrops(server_port);
  const int64_t joined_after_connect = Sum(workers, &Counters::joined);
  const int64_t failed = n - joined_after_connect;

  // 2. Settle: until no member has received a line for kQuiet (chat
  // announces each join to every member, up to chat serve's
  // --announce_limit).
  set_phase(Phase::kSettle);
  const absl::Time settle_start = absl::Now();
  bool settled = false;
  last_progress = settle_start;
  int64_t last_lines = Sum(workers, &Counters::lines_received);
  absl::Time quiet_since = settle_start;
  for (;;) {
    absl::SleepFor(kPublishInterval * 2);
    if (absl::Status s = worker_failed(); !s.ok()) return s;
    const int64_t lines_now = Sum(workers, &Counters::lines_received);
    const absl::Time now = absl::Now();
    if (lines_now != last_lines) {
      last_lines = lines_now;
      quiet_since = now;
    } else if (now - quiet_since >= kQuiet) {
      settled = true;
      break;
    }
    if (now - settle_start > c.settle_timeout) break;
    if (now - last_progress >= kProgressInterval) {
      last_progress = now;
      std::fprintf(stderr, "bench connections: settle: %lld lines received by members (%.0f s)\n",
                   static_cast<long long>(lines_now), absl::ToDoubleSeconds(now - settle_start));
    }
  }
  const absl::Duration settle_wall = absl::Now() - settle_start;

  // 3. Idle.
  set_phase(Phase::kIdle);
  const int64_t lost_before_idle = Sum(workers, &Counters::lost);
  std::fprintf(stderr, "bench connections: idle for %s\n", absl::FormatDuration(c.idle).c_str());
  absl::StatusOr<ProcSample> idle_start = ReadProcSample(pid);
  if (!idle_start.ok()) return idle_start.status();
  const ProcSample client_idle_start = SelfSample();
  const absl::Time idle_t0 = absl::Now();
  const int server_threads = CountThreads(pid);
  absl::SleepFor(c.idle);
  absl::StatusOr<ProcSample> idle_end = ReadProcSample(pid);
  if (!idle_end.ok()) return idle_end.status();
  const ProcSample client_idle_end = SelfSample();
  const double idle_seconds = absl::ToDoubleSeconds(absl::Now() - idle_t0);
  const int64_t lost_in_idle = Sum(workers, &Counters::lost) - lost_before_idle;
  const int64_t members_idle = joined_after_connect - Sum(workers, &Counters::lost);

  // 4. Load, then drain.
  const int64_t lines =
      static_cast<int64_t>(std::llround(absl::ToDoubleSeconds(c.load) * c.line_rate));
  std::fprintf(stderr, "bench connections: load: %lld lines at %g/s\n",
               static_cast<long long>(lines), c.line_rate);
  const int64_t lost_before_load = Sum(workers, &Counters::lost);
  const int64_t deliveries_before = Sum(workers, &Counters::deliveries);
  const int64_t udp_drops_3 = UdpReceiveBufferDrops();
  const int64_t server_drops_3 = SocketDrops(server_port);
  absl::StatusOr<ProcSample> load_start = ReadProcSample(pid);
  if (!load_start.ok()) return load_start.status();
  const ProcSample client_load_start = SelfSample();
  const absl::Time load_t0 = absl::Now();
  shared.load_lines.store(lines, std::memory_order_release);
  shared.load_start_ns.store(absl::ToUnixNanos(load_t0), std::memory_order_release);
  set_phase(Phase::kLoad);
  absl::SleepFor(c.load);
  absl::StatusOr<ProcSample> load_end = ReadProcSample(pid);
  if (!load_end.ok()) return load_end.status();
  const ProcSample client_load_end = SelfSample();
  const double load_seconds = absl::ToDoubleSeconds(absl::Now() - load_t0);
  const int64_t deliveries_in_load = Sum(workers, &Counters::deliveries) - deliveries_before;
  // Drain: every sender has sent everything; then every member must get
  // every line that was accepted.
  for (const absl::Time d = absl::Now() + absl::Seconds(2);
       Sum(workers, &Counters::lines_sent) + Sum(workers, &Counters::send_errors) < lines &&
       absl::Now() < d;) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Time drain_start = absl::Now();
  set_phase(Phase::kDrain);
  bool drained = false;
  int64_t expected = -1;
  for (;;) {
    // Refusals arrive after the lines were sent: recount each time.
    const int64_t now_expected =
        Sum(workers, &Counters::lines_sent) - Sum(workers, &Counters::refused);
    shared.expected_lines.store(now_expected, std::memory_order_release);
    absl::SleepFor(kPublishInterval * 2);
    bool all_counted = true;
    int64_t behind = 0;
    for (const auto& w : workers) {
      if (w->counters().behind_for.load(std::memory_order_acquire) !=
          static_cast<uint64_t>(now_expected)) {
        all_counted = false;
      }
      behind += w->counters().behind.load(std::memory_order_relaxed);
    }
    expected = now_expected;
    if (all_counted && behind == 0) {
      drained = true;
      break;
    }
    if (absl::Now() - drain_start > c.timeout + absl::Seconds(5)) break;
  }
  const double drain_seconds = absl::ToDoubleSeconds(absl::Now() - drain_start);
  const int64_t udp_drops_4 = UdpReceiveBufferDrops();
  const int64_t server_drops_4 = SocketDrops(server_port);
  const int64_t lost_in_load = Sum(workers, &Counters::lost) - lost_before_load;
  const int64_t lines_sent = Sum(workers, &Counters::lines_sent);
  const int64_t refused = Sum(workers, &Counters::refused);
  const int64_t send_errors = Sum(workers, &Counters::send_errors);

  set_phase(Phase::kStop);
  for (std::thread& t : threads) t.join();
  if (shared.failed.load(std::memory_order_acquire)) return shared.error;
  const ProcSample client_end = SelfSample();
  if (spawned != nullptr) {
    spawned->Stop();
    if (Sum(workers, &Counters::lost) > 0 || Sum(workers, &Counters::failed) > 0) {
      spawned->KeepLog();
    }
  }
  // "a (b server)" drops in one phase: the namespace's and the server socket's.
  const auto drops = [](int64_t all0, int64_t all1, int64_t srv0, int64_t srv1) {
    if (all0 < 0 || all1 < 0) return std::string("?");
    return absl::StrCat(all1 - all0, " (",
                        srv0 < 0 || srv1 < 0 ? std::string("?") : absl::StrCat(srv1 - srv0),
                        " server)");
  };

  // Statistics.
  std::vector<double> connect_ms, join_ms;
  std::map<std::string, int64_t> failures;
  std::map<std::pair<uint64_t, uint64_t>, int64_t> orders;
  int64_t seq_back = 0;
  for (const auto& w : workers) {
    std::vector<double> a = w->connect_ms();
    connect_ms.insert(connect_ms.end(), a.begin(), a.end());
    std::vector<double> b = w->join_ms();
    join_ms.insert(join_ms.end(), b.begin(), b.end());
    for (const auto& [why, count] : w->failures()) failures[why] += count;
    w->Orders(&orders, &seq_back);
  }
  int64_t members_end = 0, reference = 0;
  std::pair<uint64_t, uint64_t> reference_order{0, 0};
  for (const auto& [order, count] : orders) {
    members_end += count;
    if (count > reference) {
      reference = count;
      reference_order = order;
    }
  }
  const int64_t mismatches = members_end - reference + seq_back;
  const int64_t lost_total = Sum(workers, &Counters::lost);
  const double idle_cpu = (idle_end->cpu_seconds - idle_start->cpu_seconds) / idle_seconds;
  const double load_cpu = (load_end->cpu_seconds - load_start->cpu_seconds) / load_seconds;
  const double client_idle_cpu =
      (client_idle_end.cpu_seconds - client_idle_start.cpu_seconds) / idle_seconds;
  const double client_load_cpu =
      (client_load_end.cpu_seconds - client_load_start.cpu_seconds) / load_seconds;
  const int64_t rss_grew = idle_end->rss_kib - server_before->rss_kib;
  const double rss_per_connection =
      members_idle > 0 ? static_cast<double>(rss_grew) * 1024.0 / static_cast<double>(members_idle)
                       : 0;
  const double deliveries_per_s = static_cast<double>(deliveries_in_load) / load_seconds;
  const double offered = c.line_rate * static_cast<double>(members_end);
  const auto pct = [](double share) { return absl::StrCat(Fixed(100 * share, 1), "%"); };
  const auto wait = [&pct](const ProcSample& a, const ProcSample& b, double seconds) {
    if (a.run_delay_seconds < 0 || b.run_delay_seconds < 0) return std::string("?");
    return pct((b.run_delay_seconds - a.run_delay_seconds) / seconds);
  };
  const auto mib = [](int64_t kib) { return Fixed(static_cast<double>(kib) / 1024.0, 1); };

  std::vector<Row> rows = {
      {"connections", "connections asked", absl::StrCat(n),
       absl::StrCat(sockets, " client sockets (", c.per_socket,
                    " per socket, each on its own 127.X.Y.Z), ", c.threads, " client threads")},
      {"joined", "members joined", absl::StrCat(joined_after_connect), ""},
      {"failed", "connections failed", absl::StrCat(failed),
       failures.empty() ? "" : "reasons below"},
      {"connect_p50_ms", "connect p50 ms", Fixed(Percentile(connect_ms, 50), 2),
       "Connect() to the transport's kConnected"},
      {"connect_p99_ms", "connect p99 ms", Fixed(Percentile(connect_ms, 99), 2), ""},
      {"join_p50_ms", "join p50 ms", Fixed(Percentile(join_ms, 50), 2), "Connect() to the Welcome"},
      {"join_p99_ms", "join p99 ms", Fixed(Percentile(join_ms, 99), 2), ""},
      {"connect_seconds", "connect phase s", Fixed(absl::ToDoubleSeconds(connect_wall), 2),
       absl::StrCat(c.connect_window, " attempts in flight at most; ",
                    Fixed(static_cast<double>(joined_after_connect) /
                              std::max(1e-9, absl::ToDoubleSeconds(connect_wall)),
                          0),
                    " joins/s")},
      {"settle_seconds", "settle s", Fixed(absl::ToDoubleSeconds(settle_wall), 2),
       settled ? "until no line reached any member for 1s (join lines)"
               : "NOT settled: join lines still arriving at the timeout"},
      {"server_rss_before_mib", "server RSS before MiB", mib(server_before->rss_kib), ""},
      {"server_rss_idle_mib", "server RSS idle MiB", mib(idle_end->rss_kib), ""},
      {"server_rss_per_connection_bytes", "server RSS per connection B",
       Fixed(rss_per_connection, 0), "(idle RSS - RSS before) / members"},
      {"server_cpu_idle_pct", "server CPU idle", pct(idle_cpu),
       absl::StrCat("of one core, over ", Fixed(idle_seconds, 1), " s of keepalives (",
                    absl::FormatDuration(
                        std::clamp(c.timeout / 4, absl::Milliseconds(50), absl::Seconds(5))),
                    " keepalive)")},
      {"server_cpu_wait_idle_pct", "server CPU wait idle",
       wait(*idle_start, *idle_end, idle_seconds),
       "runnable but waiting for a CPU (schedstat), of the wall time"},
      {"lost_idle", "lost while idle", absl::StrCat(lost_in_idle), ""},
      {"lines_sent", "lines sent", absl::StrCat(lines_sent),
       absl::StrCat(Fixed(c.line_rate, 1), "/s for ", Fixed(load_seconds, 1), " s, ", refused,
                    " refused (rate limit), ", send_errors, " not sent")},
      {"deliveries_per_s", "deliveries/s", Fixed(deliveries_per_s, 0),
       absl::StrCat("lines received by all members during the load / its duration; offered ",
                    Fixed(offered, 0), "/s")},
      {"server_cpu_load_pct", "server CPU load", pct(load_cpu), "of one core"},
      {"server_cpu_wait_load_pct", "server CPU wait load",
       wait(*load_start, *load_end, load_seconds),
       "well above 0: the server was short of CPU (the client or other processes had it)"},
      {"drain_seconds", "drain s", Fixed(drain_seconds, 2),
       drained ? "until every member had every accepted line"
               : "NOT drained: some members short of lines at the timeout"},
      {"lost_load", "lost under load", absl::StrCat(lost_in_load), ""},
      {"lost_total", "lost connections", absl::StrCat(lost_total),
       "closed while members, any phase"},
      {"members_end", "members at end", absl::StrCat(members_end), ""},
      {"lines_per_member", "lines per member", absl::StrCat(reference_order.first),
       absl::StrCat("of ", expected, " accepted")},
      {"order_mismatches", "order mismatches", absl::StrCat(mismatches),
       "members whose sequence of lines differs from the most common one (or whose seq went back)"},
      {"client_cpu_idle_pct", "client CPU idle", pct(client_idle_cpu),
       absl::StrCat("this process, of one core (", std::thread::hardware_concurrency(), " CPUs)")},
      {"client_cpu_load_pct", "client CPU load", pct(client_load_cpu), ""},
      {"client_cpu_wait_load_pct", "client CPU wait load",
       wait(client_load_start, client_load_end, load_seconds), "its threads waiting for a CPU"},
      {"client_rss_mib", "client RSS MiB", mib(client_end.rss_kib),
       absl::StrCat(mib(client_hosts.rss_kib - client_before.rss_kib),
                    " MiB for the sockets' Hosts")},
  };
  // Rates over a phase shorter than half a second say nothing.
  for (Row& r : rows) {
    const bool idle_rate = r.key == "server_cpu_idle_pct" || r.key == "server_cpu_wait_idle_pct" ||
                           r.key == "client_cpu_idle_pct";
    const bool load_rate = r.key == "deliveries_per_s" || r.key == "server_cpu_load_pct" ||
                           r.key == "server_cpu_wait_load_pct" || r.key == "client_cpu_load_pct" ||
                           r.key == "client_cpu_wait_load_pct";
    if ((idle_rate && idle_seconds < 0.5) || (load_rate && load_seconds < 0.5)) {
      r.value = "-";
      r.note = "phase too short to measure";
    }
  }
  rows.push_back({"server_threads", "server threads", absl::StrCat(server_threads),
                  "in /proc/PID/task during the idle phase"});
  rows.push_back(
      {"udp_drops_connect", "UDP drops connect",
       drops(udp_drops_0, udp_drops_1, server_drops_0, server_drops_1),
       "receive-buffer drops in this network namespace (of them at the server's socket)"});
  rows.push_back({"udp_drops_idle", "UDP drops settle+idle",
                  drops(udp_drops_1, udp_drops_3, server_drops_1, server_drops_3), ""});
  rows.push_back({"udp_drops_load", "UDP drops load+drain",
                  drops(udp_drops_3, udp_drops_4, server_drops_3, server_drops_4), ""});
  std::vector<std::string> notes;
  {
    absl::StatusOr<std::string> loadavg = ReadSmallFile("/proc/loadavg");
    std::vector<absl::string_view> f;
    if (loadavg.ok()) f = absl::StrSplit(*loadavg, ' ');
    notes.push_back(
        absl::StrCat("machine: ", std::thread::hardware_concurrency(),
                     " CPUs; load average (1/5/15 min) at the end ",
                     f.size() >= 3 ? absl::StrCat(f[0], " ", f[1], " ", f[2]) : std::string("?"),
                     " (this run included)"));
  }
  notes.push_back(absl::StrCat(
      "server: ", c.external ? absl::StrCat("external, ", c.server.ToString(), " pid ", pid)
                             : c.server_description));
  notes.push_back(absl::StrCat("epoll descriptors found for ", probed, " of ", sockets,
                               " client Hosts (the rest are polled every ",
                               absl::FormatDuration(kSweepInterval), ")"));
  if (spawned != nullptr && (lost_total > 0 || failed > 0)) {
    notes.push_back(absl::StrCat("the server's log: ", spawned->log_path()));
  }
  for (const auto& [why, count] : failures) {
    notes.push_back(absl::StrCat(count, " x ", chat::Displayable(why)));
  }
  if (client_load_cpu > 0.8 * std::thread::hardware_concurrency() ||
      client_idle_cpu > 0.8 * std::thread::hardware_concurrency()) {
    notes.push_back(
        "the client used most of the machine's CPUs: it, not the server, may be the limit");
  }
  const std::string title =
      absl::StrCat("bench connections: ", n, " chat members, idle ", absl::FormatDuration(c.idle),
                   ", then ", Fixed(c.line_rate, 1), " lines/s for ", absl::FormatDuration(c.load),
                   ", server ", c.server.ToString());
  PrintRows(c, title, rows, notes);
  if (lost_total > 0 || mismatches > 0) {
    return absl::DataLossError(
        absl::StrCat(lost_total, " lost connections, ", mismatches, " order mismatches"));
  }
  return absl::OkStatus();
}

}  // namespace udpmsg::bench
