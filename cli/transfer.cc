// send --reliable / recv --reliable: one file (or stdin, or messages) over a
// reliable-ordered channel, verified end to end with SHA-256. The protocol is
// apps/transfer (Sender, Receiver); this file is the flags, the file or
// stdin, the terminal and the udpmsg::Host loop around it.
//
// Signals: both commands block SIGINT, SIGTERM and SIGHUP and watch them on
// a signalfd in the Host's loop. On one, the sender erases its progress line
// and closes its connection ("sender interrupted by SIGINT"); the receiver
// removes its temporary file and closes its sender's ("receiver interrupted
// by ..."), so the peer learns at once instead of waiting out its timeout,
// and says who stopped the transfer. Each prints one line, then lingers for
// about a probe timeout (CloseLinger, LingerAfterClose; 1 s at most),
// answering the peer's late packets with the close again in case the first
// was lost; a second signal ends that at once. The command exits 128 + the
// first signal's number (SignalExitCode).
#include "cli/transfer.h"

#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "apps/rendezvous/client_on_host.h"
#include "apps/rendezvous/names.h"
#include "apps/transfer/receiver.h"
#include "apps/transfer/sender.h"
#include "apps/transfer/sink.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/flags.h"
#include "cli/security.h"
#include "udpmsg/udpmsg.h"


namespace udpmsg::cli {
namespace {


constexpr size_t kChunkBytes = 64 * 1024;
// Bytes the sender keeps queued in the reliable layer at most; more is read
// from the source only as acknowledgements drain the queue.
constexpr uint64_t kQueueTarget = 8 << 20;
constexpr absl::Duration kProgressEvery = absl::Milliseconds(250);
// Host::Watch tokens.
constexpr uint64_t kSignalToken = 1;
constexpr uint64_t kSourceToken = 2;

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::Status(errno == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kInternal,
                      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::StatusOr<bool> ProgressWanted() {
  const std::string p = absl::GetFlag(FLAGS_progress);
  if (p == "on") return true;
  if (p == "off") return false;
  if (p == "auto") return isatty(STDERR_FILENO) == 1;
  return absl::InvalidArgumentError(
      absl::StrCat("--progress \"", p, "\" must be auto, on or off"));
}

absl::StatusOr<CongestionControl> CongestionFromFlag() {
  absl::StatusOr<CongestionControl> cc =
      ParseCongestionControl(absl::GetFlag(FLAGS_cc));
  if (!cc.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--cc \"", absl::GetFlag(FLAGS_cc), "\" is not a congestion controller (newreno, bbr)"));
  }
  return *cc;
}

HostOptions TransferOptions(absl::Duration timeout, CongestionControl cc) {
  HostOptions o;
  o.handshake_timeout = timeout;
  o.peer_timeout = timeout;
  o.idle_timeout = timeout;
  o.keepalive = std::min(absl::Seconds(5), timeout / 3);
  o.congestion_control = cc;
  return o;
}

std::string Hex(absl::string_view bytes) { return absl::BytesToHexString(bytes); }

absl::Status SendMessage(Host* host, ConnectionId id, std::string message) {
  return host->Send(id, 0, DeliveryMode::kReliableOrdered, std::move(message)).status();
}

// Where the sender reads from: a file, stdin, or the message arguments.
class Source {
 public:
  static absl::StatusOr<Source> Open(const std::vector<std::string>& messages) {
    Source s;
    const std::string path = absl::GetFlag(FLAGS_file);
    if (!messages.empty()) {
      if (!path.empty()) return absl::InvalidArgumentError("give --file or messages, not both");
      for (const std::string& m : messages) absl::StrAppend(&s.text_, m, "\n");
      s.name_ = "(messages)";
      s.size_ = static_cast<int64_t>(s.text_.size());
      return s;
    }
    if (path.empty() || path == "-") {
      s.fd_ = STDIN_FILENO;
      s.name_ = "(stdin)";
      return s;
    }
    // Checked here, before anything is sent: a file that cannot be opened
    // for reading, and a directory (which opens, but every read fails).
    s.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (s.fd_ < 0) return FileError(path, errno);
    s.owned_ = true;
    struct stat st;
    if (::fstat(s.fd_, &st) != 0) return FileError(path, errno);
    if (S_ISDIR(st.st_mode)) return FileError(path, EISDIR);
    // The size is declared in the Begin and the receiver holds us to it, so
    // only a file with blocks on disk declares one: /proc and /sys files
    // (no blocks) report sizes that are not what a read returns.
    if (S_ISREG(st.st_mode) && st.st_blocks > 0) s.size_ = st.st_size;
    s.name_ = path;
    return s;
  }
  Source(Source&& o) noexcept { *this = std::move(o); }
  Source& operator=(Source&& o) noexcept {
    std::swap(fd_, o.fd_);
    std::swap(owned_, o.owned_);
    std::swap(saved_flags_, o.saved_flags_);
    text_ = std::move(o.text_);
    name_ = std::move(o.name_);
    size_ = o.size_;
    return *this;
  }
  ~Source() {
    if (saved_flags_ >= 0) (void)::fcntl(fd_, F_SETFL, saved_flags_);
    if (owned_ && fd_ >= 0) ::close(fd_);
  }

  // Makes a source that may block (stdin on a pipe or a terminal) non-
  // blocking, until destroyed, so that the loop keeps serving the network
  // and signals while it waits for input. Returns the descriptor to watch
  // for input, or -1 when there is none to watch (messages, regular files,
  // which never block).
  int PollableFd() {
    if (fd_ < 0) return -1;
    struct stat st;
    if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) return -1;
    if (saved_flags_ < 0) {
      const int flags = ::fcntl(fd_, F_GETFL);
      if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) != 0) return -1;
      saved_flags_ = flags;
    }
    return fd_;
  }

  // Up to `max` bytes; an empty string at the end; UNAVAILABLE when a non-
  // blocking source has nothing now (PollableFd says when to try again).
  absl::StatusOr<std::string> Read(size_t max) {
    if (fd_ < 0) {
      std::string out = text_.substr(0, max);
      text_.erase(0, out.size());
      return out;
    }
    std::string out(max, '\0');
    size_t got = 0;
    while (got < max) {
      const ssize_t n = ::read(fd_, out.data() + got, max - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (got == 0) return absl::UnavailableError("no input yet");
        break;
      }
      if (n < 0) return ErrnoError("cannot read", name_);
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    out.resize(got);
    return out;
  }

  const std::string& name() const { return name_; }
  int64_t size() const { return size_; }

 private:
  Source() = default;
  // "--file PATH: <strerror>", a usage error (NOT_FOUND when missing).
  static absl::Status FileError(const std::string& path, int error) {
    return absl::Status(error == ENOENT ? absl::StatusCode::kNotFound
                                        : absl::StatusCode::kInvalidArgument,
                        absl::StrCat("--file ", path, ": ", std::strerror(error)));
  }
  int fd_ = -1;
  bool owned_ = false;
  int saved_flags_ = -1;  // fcntl flags to restore, when made non-blocking
  std::string text_;
  std::string name_;
  int64_t size_ = -1;
};

double LossPercent(const ConnectionStats& s) {
  return s.packets_sent == 0 ? 0.0 : 100.0 * s.packets_lost / s.packets_sent;
}

std::string StatsLine(const ConnectionStats& s) {
  return absl::StrFormat(
      "stats: rtt %.2fms (min %.2fms), cwnd %s, sent %d packets, lost %d (%.1f%%), "
      "retransmitted %d fragments, received %d packets (%d duplicates)",
      absl::ToDoubleMilliseconds(s.srtt), absl::ToDoubleMilliseconds(s.min_rtt),
      HumanBytes(static_cast<double>(s.cwnd)), s.packets_sent, s.packets_lost, LossPercent(s),
      s.fragments_retransmitted, s.packets_received, s.duplicate_packets);
}

absl::StatusOr<SocketAddress> ResolvePeer(const std::string& host_port) {
  const AddressFamily family = FamilyFromFlags();
  absl::StatusOr<std::vector<SocketAddress>> peers =
      ResolveHostPort(host_port, family, SocketType::kDatagram);
  if (!peers.ok()) return peers.status();
  return peers->front();
}

// The longest peer text quoted in one error line.
constexpr size_t kMaxShownPeerBytes = 1024;

// The signal a udpmsg peer named when it closed with "WHO interrupted by
// SIGNAME" (`who` is "sender" or "receiver"; see the file comment), or
// nullopt for any other reason. The reason is peer text: only "SIG" and 1
// to 8 capital letters, or "signal" and 1 to 3 digits, count as a name.
std::optional<std::string> InterruptedBy(absl::string_view reason, absl::string_view who) {
  if (!absl::ConsumePrefix(&reason, who) || !absl::ConsumePrefix(&reason, " interrupted by ")) {
    return std::nullopt;
  }
  const auto all_of = [](absl::string_view s, size_t max, bool (*ok)(char)) {
    return !s.empty() && s.size() <= max && std::all_of(s.begin(), s.end(), ok);
  };
  absl::string_view rest = reason;
  if (absl::ConsumePrefix(&rest, "SIG") &&
      all_of(rest, 8, [](char c) { return c >= 'A' && c <= 'Z'; })) {
    return std::string(reason);
  }
  rest = reason;
  if (absl::ConsumePrefix(&rest, "signal ") &&
      all_of(rest, 3, [](char c) { return c >= '0' && c <= '9'; })) {
    return std::string(reason);
  }
  return std::nullopt;
}

// "N of M bytes sent", or "N bytes sent" when the size is unknown (-1).
std::string BytesSent(uint64_t bytes, int64_t size) {
  return size >= 0 ? absl::StrCat(bytes, " of ", size, " bytes sent")
                   : absl::StrCat(bytes, " bytes sent");
}

// How long to linger after closing `id` for a stop signal: about one probe
// timeout of its path (srtt + 4 rttvar + 25 ms of acknowledgement delay),
// by when the packets the peer sent before our close arrived have arrived;
// 50 ms at least, 1 s at most (a person waits for the prompt). Zero for a
// connection not established: no close reaches a peer then.
absl::Duration CloseLinger(const Host& host, ConnectionId id) {
  if (!host.IsEstablished(id)) return absl::ZeroDuration();
  absl::StatusOr<ConnectionStats> s = host.Stats(id);
  if (!s.ok()) return absl::ZeroDuration();
  return std::clamp(s->srtt + 4 * s->rttvar + absl::Milliseconds(25), absl::Milliseconds(50),
                    absl::Seconds(1));
}

// Serves the host for `linger` after a Close, so that the closed
// connection answers each packet the peer still sends with its close again
// (the first may have been lost). A signal on `signal_fd` (a second Ctrl-C)
// ends it at once.
void LingerAfterClose(Host* host, absl::Duration linger, int signal_fd) {
  const absl::Time until = absl::Now() + linger;
  for (absl::Time now = absl::Now(); now < until; now = absl::Now()) {
    absl::StatusOr<Host::PollResult> r = host->Poll(until - now);
    if (!r.ok()) return;
    for (uint64_t token : r->ready) {
      if (token == kSignalToken && DrainSignals(signal_fd) != 0) return;
    }
  }
}

// Before the line reporting a stop signal: on a terminal, erases what the
// cursor's line holds (the "^C" the terminal echoed, a progress line), so
// the line, and the shell's prompt after it, start clean.
void EraseTerminalLine() {
  if (isatty(STDERR_FILENO) == 1) std::fputs("\r\x1b[K", stderr);
}

// What a receiver that did not finish tells of its output: nothing was
// written to FILE; on stdout, what was written stays (unverified).
std::string NothingWritten(const std::string& out) {
  return out == "-" ? "; what was written to stdout is incomplete"
                    : absl::StrCat("; nothing written to ", out);
}

// Waits for `id` to be connected, watching `signal_fd` (a signalfd on the
// host) meanwhile: OK; UNAVAILABLE "cannot connect to PEER: [refused: ]
// REASON" when the attempt closes (the reason escaped); DEADLINE_EXCEEDED
// after `timeout`; CANCELLED with `*signal` set when a stop signal comes.
// Events that follow the kConnected are left in `*early`, and the server's
// proven identity (Event::server_identity) in `*server_identity`.
absl::Status AwaitConnected(Host* host, ConnectionId id, const SocketAddress& peer,
                            absl::Duration timeout, int signal_fd, int* signal,
                            std::vector<Event>* early, std::string* server_identity) {
  const absl::Time deadline = absl::Now() + timeout;
  bool connected = false;
  while (!connected) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat("cannot connect to ", peer.ToString(),
                                                      ": no answer within ",
                                                      absl::FormatDuration(timeout)));
    }
    absl::StatusOr<Host::PollResult> r = host->Poll(std::min(left, absl::Milliseconds(250)));
    if (!r.ok()) return r.status();
    for (uint64_t token : r->ready) {
      if (token != kSignalToken) continue;
      if (const int sig = DrainSignals(signal_fd); sig != 0) {
        *signal = sig;
        return absl::CancelledError(absl::StrCat("interrupted by ", SignalName(sig)));
      }
    }
    for (Event& e : r->events) {
      if (e.connection != id) continue;
      if (connected) {
        early->push_back(std::move(e));
      } else if (e.type == Event::Type::kConnected) {
        connected = true;
        *server_identity = e.server_identity;
      } else if (e.type == Event::Type::kClosed) {
        return absl::UnavailableError(absl::StrCat(
            "cannot connect to ", peer.ToString(), ": ", e.by_peer ? "refused: " : "",
            DisplayablePrefix(e.reason, kMaxShownPeerBytes)));
      }
    }
  }
  return absl::OkStatus();
}

// --via (NAT traversal, docs/nat.md). How long the sender tries the direct
// path before it takes the relay: handshake hellos to the receiver's
// reflexive address are retried with backoff meanwhile, and the receiver
// punches toward us, so a path that works is normally up within one or two
// round trips; 3 s covers slow first mappings without making a relayed
// transfer wait long.
constexpr absl::Duration kDirectAttempt = absl::Seconds(3);
// An ICMP "unreachable" for our first hellos is what a NAT that has not
// seen the receiver's punch yet answers: the attempt starts again after
// this pause, until kDirectAttempt is over.
constexpr absl::Duration kRetryAfterUnreachable = absl::Milliseconds(100);

rendezvous::ClientOptions ViaClientOptions(const SocketAddress& server) {
  rendezvous::ClientOptions o;
  o.server = server;
  return o;
}

// The connection a --via sender transfers on, and how it got there.
struct ViaPath {
  ConnectionId id = 0;
  SocketAddress peer;  // the receiver (direct) or the relay
  std::vector<Event> early;
  std::string server_identity;
};

// Polls `host` for up to `wait` (less when the client has punches due),
// hands control-connection events to `client` and returns the others.
// CANCELLED with `*signal` set on a stop signal.
absl::StatusOr<std::vector<Event>> PollVia(Host* host, rendezvous::HostClient* client,
                                           absl::Duration wait, int signal_fd, int* signal) {
  const absl::Time now = absl::Now();
  wait = std::clamp(std::min(wait, client->NextTimeout() - now), absl::ZeroDuration(),
                    absl::Milliseconds(250));
  absl::StatusOr<Host::PollResult> r = host->Poll(wait);
  if (!r.ok()) return r.status();
  for (uint64_t token : r->ready) {
    if (token != kSignalToken) continue;
    if (const int sig = DrainSignals(signal_fd); sig != 0) {
      *signal = sig;
      return absl::CancelledError(absl::StrCat("interrupted by ", SignalName(sig)));
    }
  }
  std::vector<Event> rest;
  for (Event& e : r->events) {
    if (!client->OnEvent(absl::Now(), e)) rest.push_back(std::move(e));
  }
  (void)client->Service(absl::Now());
  return rest;
}

// send --reliable --via SERVER NAME: asks the server for NAME, tries the
// direct path for kDirectAttempt, then the relay; prints which (one line)
// and returns the established connection. NOT_FOUND when NAME is not
// registered (the caller prints it and exits 1).
absl::StatusOr<ViaPath> ConnectVia(Host* host, rendezvous::HostClient* client,
                                   const std::string& name, const std::string& server_text,
                                   absl::Duration timeout, int signal_fd, int* signal) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!client->connected()) {
    if (client->closed()) {
      return absl::UnavailableError(absl::StrCat("cannot reach the rendezvous server ", server_text,
                                                 ": ", client->close_reason()));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("no answer from the rendezvous server ",
                                                      server_text, " within ",
                                                      absl::FormatDuration(timeout)));
    }
    absl::StatusOr<std::vector<Event>> ev =
        PollVia(host, client, deadline - absl::Now(), signal_fd, signal);
    if (!ev.ok()) return ev.status();
  }
  uint64_t request = 0;
  if (absl::Status s = client->SendToServer(client->core().Lookup(name, &request)); !s.ok()) {
    return s;
  }
  std::optional<rendezvous::ClientEvent> intro;
  std::vector<uint64_t> ready;  // RelayReady seen (introduction ids)
  while (!intro) {
    if (client->closed()) {
      return absl::UnavailableError(
          absl::StrCat("lost the rendezvous server ", server_text, ": ", client->close_reason()));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("the rendezvous server ", server_text,
                                                      " did not answer within ",
                                                      absl::FormatDuration(timeout)));
    }
    absl::StatusOr<std::vector<Event>> ev =
        PollVia(host, client, deadline - absl::Now(), signal_fd, signal);
    if (!ev.ok()) return ev.status();
    for (rendezvous::ClientEvent& e : client->TakeEvents()) {
      if (e.type == rendezvous::ClientEvent::Type::kRefused && e.request == request) {
        if (e.code == rendezvous::ClientEvent::kNotRegistered) {
          return absl::NotFoundError(absl::StrCat(name, " is not registered with ", server_text));
        }
        return absl::UnavailableError(
            absl::StrCat("the rendezvous server ", server_text, " refused: ", e.reason));
      }
      if (e.type == rendezvous::ClientEvent::Type::kIntroduced && e.request == request) intro = e;
      if (e.type == rendezvous::ClientEvent::Type::kRelayReady) ready.push_back(e.introduction);
    }
  }
  const uint64_t introduction = intro->introduction;
  ViaPath path;
  std::string why;
  bool relay_ready = std::find(ready.begin(), ready.end(), introduction) != ready.end();
  // The client's events from now on: only this introduction's RelayReady matters.
  const auto take_relay_ready = [&] {
    for (rendezvous::ClientEvent& e : client->TakeEvents()) {
      if (e.type == rendezvous::ClientEvent::Type::kRelayReady && e.introduction == introduction) {
        relay_ready = true;
      }
    }
  };
  // The direct attempt.
  if (absl::GetFlag(FLAGS_via_relay_only)) {
    why = "--via_relay_only";
  } else {
    // The first hello waits for the opening phase (client_core.h): both
    // NATs open toward each other before anything reaches either.
    absl::Time retry_at = client->core().DirectAttemptStart(absl::Now());
    const absl::Time until = retry_at + kDirectAttempt;
    std::optional<ConnectionId> attempt;
    std::string last;
    bool connected = false;
    while (!connected && absl::Now() < until) {
      if (!attempt && absl::Now() >= retry_at) {
        absl::StatusOr<ConnectionId> id = host->Connect(intro->peer);
        if (!id.ok()) return id.status();
        attempt = *id;
      }
      absl::StatusOr<std::vector<Event>> ev =
          PollVia(host, client, std::min(until, retry_at) - absl::Now() + absl::Milliseconds(20),
                  signal_fd, signal);
      if (!ev.ok()) return ev.status();
      take_relay_ready();
      for (Event& e : *ev) {
        if (!attempt || e.connection != *attempt) continue;
        if (connected) {
          path.early.push_back(std::move(e));
        } else if (e.type == Event::Type::kConnected) {
          connected = true;
          path.server_identity = e.server_identity;
        } else if (e.type == Event::Type::kClosed) {
          // Only the network's answers (ICMP unreachable from a NAT not yet
          // open, a handshake timeout shorter than the attempt) mean "try
          // again"; anything else came from the receiver (a refusal, a wrong
          // room key, an identity mismatch): the path works, the relay would
          // get the same answer.
          if (e.close_reason != CloseReason::kPeerUnreachable &&
              e.close_reason != CloseReason::kHandshakeTimeout) {
            return absl::UnavailableError(absl::StrCat(
                "cannot connect to ", name, " at ", intro->peer.ToString(), ": ",
                e.by_peer ? "refused: " : "", DisplayablePrefix(e.reason, kMaxShownPeerBytes)));
          }
          last = DisplayablePrefix(e.reason, kMaxShownPeerBytes);
          attempt.reset();
          retry_at = absl::Now() + kRetryAfterUnreachable;
        }
      }
    }
    if (connected) {
      path.id = *attempt;
      path.peer = intro->peer;
      client->core().StopPunching(introduction, /*peer=*/true, /*relay=*/true);
      (void)client->SendToServer(client->core().PathChosen(introduction, /*direct=*/true));
      std::fprintf(stderr, "udpmsg send: path to %s: direct (%s)\n", name.c_str(),
                   intro->peer.ToString().c_str());
      std::fflush(stderr);
      return path;
    }
    if (attempt) (void)host->Close(*attempt, "direct attempt over", /*flush=*/false);
    why = absl::StrCat("no answer on the direct path within ", absl::FormatDuration(kDirectAttempt),
                       last.empty() ? "" : absl::StrCat("; last: ", last));
  }
  client->core().StopPunching(introduction, /*peer=*/true, /*relay=*/false);
  if (!intro->relay) {
    return absl::UnavailableError(absl::StrCat("cannot reach ", name, " at ",
                                               intro->peer.ToString(), " (", why,
                                               ") and the rendezvous server offered no relay"));
  }
  // The relay forwards once both sides bound themselves (RelayReady).
  const absl::Time ready_by = absl::Now() + timeout;
  while (!relay_ready) {
    if (absl::Now() >= ready_by || client->closed()) {
      return absl::UnavailableError(absl::StrCat(
          "cannot reach ", name, " (", why, ") and the relay ", intro->relay->ToString(),
          " did not get both sides bound",
          client->closed()
              ? absl::StrCat("; rendezvous connection closed: ", client->close_reason())
              : absl::StrCat(" within ", absl::FormatDuration(timeout))));
    }
    absl::StatusOr<std::vector<Event>> ev =
        PollVia(host, client, ready_by - absl::Now(), signal_fd, signal);
    if (!ev.ok()) return ev.status();
    take_relay_ready();
  }
  (void)client->SendToServer(client->core().PathChosen(introduction, /*direct=*/false));
  std::fprintf(stderr, "udpmsg send: path to %s: relayed via %s (%s)\n", name.c_str(),
               intro->relay->ToString().c_str(), why.c_str());
  std::fflush(stderr);
  absl::StatusOr<ConnectionId> id = host->Connect(*intro->relay);
  if (!id.ok()) return id.status();
  path.id = *id;
  path.peer = *intro->relay;
  return path;
}

// recv --reliable --via: the registration beside the receiver's loop. The
// loop hands it every event first (control-connection events are its),
// waits no longer than Wait() says, and calls Service() every turn.
class RecvVia {
 public:
  RecvVia(std::unique_ptr<rendezvous::HostClient> client, std::string name, std::string server)
      : client_(std::move(client)), name_(std::move(name)), server_(std::move(server)) {}

  bool OnEvent(const Event& e) {
    if (!client_->OnEvent(absl::Now(), e)) return false;
    if (e.type == Event::Type::kConnected) {
      (void)client_->SendToServer(client_->core().Register(name_));
    }
    return true;
  }

  absl::Duration Wait(absl::Duration max) const {
    return std::clamp(client_->NextTimeout() - absl::Now(), absl::ZeroDuration(), max);
  }

  // A failure ends the receiver: the name was refused, or the server went
  // away (no sender can find us any more).
  absl::Status Service() {
    (void)client_->Service(absl::Now());
    for (rendezvous::ClientEvent& e : client_->TakeEvents()) {
      switch (e.type) {
        case rendezvous::ClientEvent::Type::kRegistered:
          if (!registered_) {
            std::fprintf(stderr, "udpmsg recv: registered as %s with %s (seen as %s)\n",
                         name_.c_str(), server_.c_str(), e.reflexive.ToString().c_str());
            std::fflush(stderr);
          }
          registered_ = true;
          break;
        case rendezvous::ClientEvent::Type::kRefused:
          return absl::UnavailableError(
              absl::StrCat("cannot register ", name_, " with ", server_, ": ", e.reason));
        case rendezvous::ClientEvent::Type::kIntroduced:
          std::fprintf(stderr, "udpmsg recv: introduced to %s%s\n", e.peer.ToString().c_str(),
                       e.relay ? absl::StrCat(" (relay ", e.relay->ToString(), ")").c_str() : "");
          std::fflush(stderr);
          break;
        case rendezvous::ClientEvent::Type::kRelayReady:
          break;
      }
    }
    if (client_->closed()) {
      return absl::UnavailableError(absl::StrCat(registered_ ? "lost" : "cannot reach",
                                                 " the rendezvous server ", server_, ": ",
                                                 client_->close_reason()));
    }
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<rendezvous::HostClient> client_;
  std::string name_;
  std::string server_;
  bool registered_ = false;
};

// Where recv --via registers: the server (resolved and as given) and the name.
struct ViaTarget {
  SocketAddress server;
  std::string text;
  std::string name;
};

absl::StatusOr<std::unique_ptr<RecvVia>> StartRecvVia(Host* host, const ViaTarget& t) {
  ConnectSecurity control;
  control.encrypt = true;  // the rendezvous server always encrypts
  absl::StatusOr<std::unique_ptr<rendezvous::HostClient>> c =
      rendezvous::HostClient::Start(host, t.server, ViaClientOptions(t.server), control);
  if (!c.ok()) return c.status();
  return std::make_unique<RecvVia>(*std::move(c), t.name, t.text);
}

// Drives a transfer::Sender over the runtime: reads the source as the queue
// drains (and, for a source that may block, as input arrives), shows
// progress, and waits for the receiver's verdict or a stop signal.
class SendLoop {
 public:
  SendLoop(Host* host, ConnectionId id, Source* source, bool progress, int signal_fd)
      : host_(host),
        id_(id),
        source_(source),
        progress_(progress),
        signal_fd_(signal_fd),
        sender_(source->name(), source->size(), transfer::Sender::Options{kChunkBytes}) {}

  // OK when the receiver verified everything; CANCELLED when a stop signal
  // came (signal() says which); otherwise the failure. `early`: events that
  // arrived with the connection.
  absl::Status Run(const SocketAddress& peer, std::vector<Event> early) {
    start_ = absl::Now();
    const int input_fd = source_->PollableFd();
    if (input_fd >= 0 && host_->Watch(input_fd, kSourceToken).ok()) watched_fd_ = input_fd;
    absl::StatusOr<std::string> begin = sender_.Begin();
    if (!begin.ok()) return begin.status();
    if (absl::Status s = SendMessage(host_, id_, *std::move(begin)); !s.ok()) return s;
    absl::Time next_progress = start_;
    Host::PollResult r;
    r.events = std::move(early);
    for (;;) {
      for (uint64_t token : r.ready) {
        if (token != kSignalToken) continue;
        if (const int sig = DrainSignals(signal_fd_); sig != 0) {
          ClearProgress();
          signal_ = sig;
          return absl::CancelledError(absl::StrCat("interrupted by ", SignalName(sig)));
        }
      }
      for (const Event& e : r.events) {
        if (e.connection != id_) continue;
        if (e.type == Event::Type::kAcked) {
          acked_ += e.bytes;
          if (auto it = chunk_bytes_.find(e.sequence); it != chunk_bytes_.end()) {
            acked_data_ += it->second;
            chunk_bytes_.erase(it);
          }
        }
        if (e.type == Event::Type::kClosed) {
          ClearProgress();
          if (const std::optional<std::string> sig = InterruptedBy(e.reason, "receiver");
              e.by_peer && sig.has_value()) {
            return absl::UnavailableError(
                absl::StrCat("receiver ", peer.ToString(), " interrupted the transfer (", *sig,
                             ") after ", BytesSent(acked_data_, source_->size())));
          }
          return absl::UnavailableError(absl::StrCat(
              "transfer to ", peer.ToString(), " failed after ", sender_.sent(), " bytes: ",
              e.by_peer ? "receiver closed the connection: " : "",
              DisplayablePrefix(e.reason, kMaxShownPeerBytes)));
        }
        if (e.type == Event::Type::kMessage) {
          ClearProgress();
          const absl::Status verdict = sender_.OnMessage(e.message);
          if (sender_.state() == transfer::Sender::State::kRejected) {
            return absl::DataLossError(absl::StrCat("receiver ", peer.ToString(),
                                                    " rejected the transfer: ",
                                                    sender_.rejection()));
          }
          return verdict;  // OK when verified
        }
      }
      if (absl::Status s = Fill(); !s.ok()) return s;
      if (progress_ && absl::Now() >= next_progress) {
        Progress();
        next_progress = absl::Now() + kProgressEvery;
      }
      absl::StatusOr<Host::PollResult> polled = host_->Poll(absl::Milliseconds(50));
      if (!polled.ok()) return polled.status();
      r = *std::move(polled);
    }
  }

  uint64_t sent() const { return sender_.sent(); }
  // Data bytes the receiver has acknowledged.
  uint64_t acked_data() const { return acked_data_; }
  // The End is sent: the sender waits for the receiver's verdict.
  bool ended() const { return sender_.state() == transfer::Sender::State::kEnded; }
  const std::string& digest() const { return sender_.digest(); }
  absl::Time start() const { return start_; }
  int signal() const { return signal_; }

 private:
  absl::Status Fill() {
    while (sender_.state() == transfer::Sender::State::kSending &&
           host_->QueuedBytes(id_) < kQueueTarget) {
      absl::StatusOr<std::string> chunk = source_->Read(kChunkBytes);
      if (absl::IsUnavailable(chunk.status())) return absl::OkStatus();  // wait for input
      if (!chunk.ok()) return chunk.status();
      if (chunk->empty()) {
        // At the end a pipe stays readable: stop watching it.
        if (watched_fd_ >= 0) (void)host_->Unwatch(std::exchange(watched_fd_, -1));
        absl::StatusOr<std::string> end = sender_.End();
        if (!end.ok()) return end.status();
        return SendMessage(host_, id_, *std::move(end));
      }
      absl::StatusOr<std::vector<std::string>> messages = sender_.Data(*chunk);
      if (!messages.ok()) return messages.status();
      // Data() cuts the chunk into pieces of kChunkBytes (the last shorter),
      // one message each: remember each message's data bytes until acked.
      size_t left = chunk->size();
      for (std::string& m : *messages) {
        absl::StatusOr<uint64_t> seq =
            host_->Send(id_, 0, DeliveryMode::kReliableOrdered, std::move(m));
        if (!seq.ok()) return seq.status();
        const size_t piece = std::min(left, kChunkBytes);
        chunk_bytes_[*seq] = piece;
        left -= piece;
      }
    }
    return absl::OkStatus();
  }

  void Progress() {
    absl::StatusOr<ConnectionStats> s = host_->Stats(id_);
    if (!s.ok()) return;
    const double secs = std::max(1e-3, absl::ToDoubleSeconds(absl::Now() - start_));
    const std::string line =
        ProgressLine(acked_, source_->size(), acked_ / secs,
                     absl::ToDoubleMilliseconds(s->srtt), LossPercent(*s));
    std::fprintf(stderr, "\r%s\x1b[K", line.c_str());
    std::fflush(stderr);
    shown_ = true;
  }

  void ClearProgress() {
    if (shown_) std::fprintf(stderr, "\r\x1b[K");
    shown_ = false;
  }

  Host* host_;
  ConnectionId id_;
  Source* source_;
  bool progress_;
  int signal_fd_;
  int watched_fd_ = -1;
  int signal_ = 0;
  transfer::Sender sender_;
  uint64_t acked_ = 0;       // message bytes acknowledged (header and framing too)
  uint64_t acked_data_ = 0;  // data bytes acknowledged
  // Data bytes of each chunk message not acknowledged yet, by sequence.
  absl::flat_hash_map<uint64_t, uint64_t> chunk_bytes_;
  bool shown_ = false;
  absl::Time start_;
};

// The receiver's output: a temporary file next to `path`, renamed into place
// by Commit (so a rejected or interrupted transfer leaves nothing behind), or
// stdout for "-" (whatever was written stays written).
class FileSink final : public transfer::Sink {
 public:
  explicit FileSink(std::string path) : path_(std::move(path)) {}
  ~FileSink() override { Abort(); }

  absl::Status Open(absl::string_view, int64_t) override {
    if (path_ == "-") {
      fd_ = STDOUT_FILENO;
      return absl::OkStatus();
    }
    temp_ = path_ + ".part.XXXXXX";
    fd_ = ::mkstemp(temp_.data());
    if (fd_ < 0) return ErrnoError("cannot create", temp_);
    return absl::OkStatus();
  }

  absl::Status Write(absl::string_view data) override {
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError("cannot write", path_ == "-" ? "stdout" : temp_);
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

  // Makes the data durable and moves it to its name.
  absl::Status Commit() override {
    if (path_ == "-") return absl::OkStatus();
    if (::fsync(fd_) != 0) return ErrnoError("cannot sync", temp_);
    if (::fchmod(fd_, 0644) != 0) return ErrnoError("cannot chmod", temp_);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return Unlinked(ErrnoError("cannot close", temp_));
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      return Unlinked(ErrnoError("cannot rename to", path_));
    }
    temp_.clear();
    return absl::OkStatus();
  }

  void Abort() override {
    if (path_ == "-") return;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!temp_.empty()) ::unlink(temp_.c_str());  // leave nothing half-written
    temp_.clear();
  }

 private:
  absl::Status Unlinked(absl::Status s) {
    ::unlink(temp_.c_str());
    temp_.clear();
    return s;
  }

  std::string path_;
  std::string temp_;
  int fd_ = -1;
};

// A file name for the sender's `name` (untrusted): its last path component
// with every byte outside [A-Za-z0-9._+-] replaced by '_', no leading dot,
// at most 100 bytes; "transfer" when nothing is left.
std::string SafeFileName(absl::string_view name) {
  const size_t slash = name.rfind('/');
  if (slash != absl::string_view::npos) name.remove_prefix(slash + 1);
  std::string out;
  for (char c : name) {
    if (out.size() == 100) break;
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '+' || c == '-';
    out.push_back(ok ? c : '_');
  }
  while (!out.empty() && out[0] == '.') out[0] = '_';
  return out.empty() || out == "_" ? "transfer" : out;
}

// recv --out DIRECTORY: each transfer goes to DIRECTORY/SafeFileName(name),
// written under a temporary name and linked into place by Commit, never
// over an existing file (NAME.1, NAME.2, ... instead).
class DirectorySink final : public transfer::Sink {
 public:
  explicit DirectorySink(std::string dir) : dir_(std::move(dir)) {}
  ~DirectorySink() override { Abort(); }

  absl::Status Open(absl::string_view name, int64_t) override {
    name_ = SafeFileName(name);
    temp_ = absl::StrCat(dir_, "/.", name_, ".part.XXXXXX");
    fd_ = ::mkstemp(temp_.data());
    if (fd_ < 0) {
      const absl::Status s = ErrnoError("cannot create", temp_);
      temp_.clear();
      return s;
    }
    return absl::OkStatus();
  }

  absl::Status Write(absl::string_view data) override {
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError("cannot write", temp_);
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

  absl::Status Commit() override {
    if (::fsync(fd_) != 0) return ErrnoError("cannot sync", temp_);
    if (::fchmod(fd_, 0644) != 0) return ErrnoError("cannot chmod", temp_);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return ErrnoError("cannot close", temp_);
    for (int n = 0; n < 1000; ++n) {
      const std::string path = absl::StrCat(dir_, "/", name_, n == 0 ? "" : absl::StrCat(".", n));
      if (::link(temp_.c_str(), path.c_str()) == 0) {
        path_ = path;
        ::unlink(temp_.c_str());
        temp_.clear();
        return absl::OkStatus();
      }
      if (errno != EEXIST) return ErrnoError("cannot link to", path);
    }
    return absl::AlreadyExistsError(absl::StrCat(dir_, "/", name_, " and 999 variants exist"));
  }

  void Abort() override {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!temp_.empty()) ::unlink(temp_.c_str());
    temp_.clear();
  }

  // Where Commit put the file; empty before.
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string name_;
  std::string temp_;
  std::string path_;
  int fd_ = -1;
};

// What the shards of recv --out DIRECTORY share: the stop decision and the
// count of finished transfers. Everything else belongs to one shard.
struct RecvShared {
  int64_t wanted = 0;  // --count (0: until a signal)
  std::atomic<int64_t> finished{0};
  std::atomic<int64_t> failed{0};
  std::atomic<bool> stop{false};
  std::atomic<int> signal{0};
  std::vector<Host*> hosts;  // for Wake; each Host is used by its own thread
  void Stop() {
    stop.store(true);
    for (Host* h : hosts) h->Wake();
  }
};

// One shard of recv --out DIRECTORY: serves every connection its socket
// receives, one transfer each, until `shared` says stop. Shard 0 also
// watches the signals.
void ServeRecvShard(Host* host, const std::string& dir, int signal_fd, RecvShared* shared,
                    RecvVia* via) {
  struct Transfer {
    explicit Transfer(const std::string& dir)
        : sink(dir), receiver(&sink, transfer::Receiver::Options{}) {}
    DirectorySink sink;
    transfer::Receiver receiver;
    SocketAddress from;
    absl::Time start;
  };
  const int shard = host->shard().index;
  absl::flat_hash_map<ConnectionId, std::unique_ptr<Transfer>> transfers;
  auto finish = [&](bool ok) {
    if (!ok) shared->failed.fetch_add(1);
    const int64_t done = shared->finished.fetch_add(1) + 1;
    if (shared->wanted > 0 && done >= shared->wanted) shared->Stop();
  };
  while (!shared->stop.load()) {
    absl::StatusOr<Host::PollResult> r =
        host->Poll(via != nullptr ? via->Wait(absl::Seconds(1)) : absl::Seconds(1));
    if (!r.ok()) {
      (void)Fail(r.status());
      shared->failed.fetch_add(1);
      shared->Stop();
      break;
    }
    if (via != nullptr) {
      std::vector<Event> mine;
      for (Event& e : r->events) {
        if (!via->OnEvent(e)) mine.push_back(std::move(e));
      }
      r->events = std::move(mine);
      if (absl::Status s = via->Service(); !s.ok()) {
        std::fprintf(stderr, "udpmsg recv: %s\n", Displayable(s.message()).c_str());
        shared->failed.fetch_add(1);
        shared->Stop();
        break;
      }
    }
    for (uint64_t token : r->ready) {
      if (token != kSignalToken) continue;
      const int signal = DrainSignals(signal_fd);
      if (signal == 0) continue;
      shared->signal.store(signal);
      shared->Stop();
    }
    for (Event& e : r->events) {
      if (e.type == Event::Type::kConnected) {
        auto t = std::make_unique<Transfer>(dir);
        t->from = e.peer;
        t->start = absl::Now();
        std::fprintf(stderr, "receiving from %s (shard %d)\n", e.peer.ToString().c_str(), shard);
        transfers[e.connection] = std::move(t);
        continue;
      }
      auto it = transfers.find(e.connection);
      if (it == transfers.end()) continue;
      Transfer& t = *it->second;
      if (e.type == Event::Type::kPathChanged) {  // a NAT rebinding, validated
        std::fprintf(stderr, "sender moved from %s to %s\n", t.from.ToString().c_str(),
                     e.peer.ToString().c_str());
        t.from = e.peer;
        continue;
      }
      if (e.type == Event::Type::kClosed) {
        if (!t.receiver.finished()) {
          t.receiver.OnConnectionClosed(e.reason);  // discards the partial output
          std::fprintf(stderr, "error: sender %s went away after %llu bytes: %s; nothing written\n",
                       t.from.ToString().c_str(),
                       static_cast<unsigned long long>(t.receiver.received()),
                       DisplayablePrefix(e.reason, kMaxShownPeerBytes).c_str());
          finish(false);
        }
        transfers.erase(it);
        continue;
      }
      if (e.type != Event::Type::kMessage || t.receiver.finished()) continue;
      const absl::Status s = t.receiver.OnMessage(e.message);
      for (std::string& reply : t.receiver.TakeReplies()) {
        (void)SendMessage(host, e.connection, std::move(reply));
      }
      if (!s.ok()) {
        std::fprintf(stderr, "error: transfer from %s rejected: %s\n", t.from.ToString().c_str(),
                     std::string(s.message()).c_str());
        // The Result goes first (flush), then the Close.
        (void)host->Close(e.connection, "transfer rejected", /*flush=*/true);
        finish(false);
        continue;
      }
      if (t.receiver.state() == transfer::Receiver::State::kComplete) {
        const uint64_t received = t.receiver.received();
        const double secs = std::max(1e-6, absl::ToDoubleSeconds(absl::Now() - t.start));
        std::fprintf(stderr,
                     "received %llu bytes from %s in %.2f s (%s/s), sha256 %s OK, wrote %s\n",
                     static_cast<unsigned long long>(received), t.from.ToString().c_str(), secs,
                     HumanBytes(received / secs).c_str(), Hex(t.receiver.digest()).c_str(),
                     t.sink.path().c_str());
        // The sender closes when it has the Result.
        finish(true);
      }
    }
  }
  const int signal = shared->signal.load();
  for (auto& [id, t] : transfers) {
    if (t->receiver.finished()) continue;
    const std::string why = signal != 0 ? absl::StrCat("interrupted by ", SignalName(signal))
                                        : std::string("receiver stopping");
    t->receiver.OnConnectionClosed(why);  // discards the partial output
    (void)host->Close(id, absl::StrCat("receiver ", why), /*flush=*/false);
  }
  // Deliver the Results (and Closes) already queued.
  (void)host->Flush(signal != 0 ? absl::Milliseconds(200) : absl::Seconds(5));
}

// recv --reliable --out DIRECTORY: --threads shards on one port, one
// transfer per connection, until --count transfers finished (0: until a
// signal). Exit 0 when every finished transfer was verified.
int RunRecvDirectory(const std::string& dir, HostOptions options, int threads,
                     const std::string& identity, OwnedFd signals,
                     const std::optional<ViaTarget>& via_target) {
  absl::StatusOr<std::vector<Host>> hosts = Host::CreateShards(options, threads);
  if (!hosts.ok()) return Fail(hosts.status());
  if (absl::Status s = (*hosts)[0].Watch(signals.get(), kSignalToken); !s.ok()) return Fail(s);
  PrintListening((*hosts)[0].local_address());
  std::unique_ptr<RecvVia> via;
  if (via_target) {
    absl::StatusOr<std::unique_ptr<RecvVia>> v = StartRecvVia(&(*hosts)[0], *via_target);
    if (!v.ok()) return Fail(v.status());
    via = *std::move(v);
  }
  if (!identity.empty()) std::fprintf(stderr, "server identity %s\n", identity.c_str());
  const ShardInfo& info = (*hosts)[0].shard();
  if (info.count > 1) {
    if (info.steered) {
      std::fprintf(stderr, "%d shards, steered by connection id\n", info.count);
    } else {
      std::fprintf(stderr, "%d shards, by the kernel's address hash only: %s\n", info.count,
                   info.steering_error.c_str());
    }
  }
  RecvShared shared;
  shared.wanted = absl::GetFlag(FLAGS_count);
  for (Host& h : *hosts) shared.hosts.push_back(&h);
  std::vector<std::thread> workers;
  for (size_t i = 1; i < hosts->size(); ++i) {
    workers.emplace_back(ServeRecvShard, &(*hosts)[i], dir, -1, &shared, nullptr);
  }
  ServeRecvShard(&(*hosts)[0], dir, signals.get(), &shared, via.get());
  for (std::thread& t : workers) t.join();
  if (hosts->size() > 1) {
    // Each shard's own counters (threads joined: safe to read here). A
    // connection that reached another shard than its own would show as
    // unknown connection ids.
    for (const Host& h : *hosts) {
      const HostStats s = h.stats();
      std::fprintf(stderr, "shard %d: %llu connections, %llu datagrams received, %llu unknown connection ids\n",
                   h.shard().index, static_cast<unsigned long long>(s.accepted),
                   static_cast<unsigned long long>(s.datagrams_received),
                   static_cast<unsigned long long>(s.unknown_connection));
    }
  }
  const int signal = shared.signal.load();
  if (signal != 0) {
    (void)Fail(absl::CancelledError(absl::StrCat("interrupted by ", SignalName(signal), " after ",
                                                 shared.finished.load(), " transfers")));
    return SignalExitCode(signal);
  }
  return shared.failed.load() == 0 ? kExitOk : kExitFailure;
}

}  // namespace

std::string HumanBytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) {
    bytes /= 1000;
    ++u;
  }
  return u == 0 ? absl::StrFormat("%.0f %s", bytes, units[u])
                : absl::StrFormat("%.1f %s", bytes, units[u]);
}

std::string ProgressLine(uint64_t done, int64_t total, double bytes_per_second, double rtt_ms,
                         double loss_percent) {
  std::string line;
  if (total > 0) {
    constexpr int kWidth = 24;
    const double fraction = std::min(1.0, static_cast<double>(done) / total);
    const int filled = static_cast<int>(fraction * kWidth);
    line = absl::StrCat("[", std::string(filled, '#'), std::string(kWidth - filled, '-'), "] ",
                        absl::StrFormat("%3.0f%%  ", fraction * 100));
  }
  absl::StrAppend(&line, HumanBytes(static_cast<double>(done)), "  ",
                  HumanBytes(bytes_per_second), "/s  ",
                  absl::StrFormat("rtt %.1fms  lost %.1f%%", rtt_ms, loss_percent));
  return line;
}

int RunReliableSend(const std::vector<std::string>& args) {
  if (args.empty()) {
    return UsageError("send", "--reliable expects HOST:PORT, then --file FILE, messages or stdin");
  }
  absl::StatusOr<CongestionControl> cc = CongestionFromFlag();
  if (!cc.ok()) return UsageError("send", cc.status().message());
  absl::StatusOr<absl::Duration> timeout = TimeoutFromFlag();
  if (!timeout.ok()) return UsageError("send", timeout.status().message());
  absl::StatusOr<bool> progress = ProgressWanted();
  if (!progress.ok()) return UsageError("send", progress.status().message());
  if (absl::Status s = CheckIdentityFlags(/*serves=*/false); !s.ok()) {
    return UsageError("send", s.message());
  }
  // With --via, args[0] is the receiver's name and `peer` the rendezvous
  // server until the path is chosen.
  const std::string via = absl::GetFlag(FLAGS_via);
  if (!via.empty() && !rendezvous::ValidName(args[0])) {
    return UsageError("send", absl::StrCat("\"", DisplayablePrefix(args[0], 80),
                                           "\" is not a name (1 to 64 of A-Z a-z 0-9 . _ -)"));
  }
  if (via.empty() && absl::GetFlag(FLAGS_via_relay_only)) {
    return UsageError("send", "--via_relay_only needs --via");
  }
  absl::StatusOr<SocketAddress> peer = ResolvePeer(via.empty() ? args[0] : via);
  if (!peer.ok()) return AddressError("send", peer.status());
  absl::StatusOr<Source> source =
      Source::Open(std::vector<std::string>(args.begin() + 1, args.end()));
  if (!source.ok()) return UsageError("send", source.status().message());
  if (sodium_init() < 0) return Fail(absl::InternalError("libsodium failed to initialise"));
  absl::StatusOr<OwnedFd> signals = SignalFd({SIGINT, SIGTERM, SIGHUP});
  if (!signals.ok()) return Fail(signals.status());

  HostOptions options = TransferOptions(*timeout, *cc);
  if (absl::Status s = ApplySecurityFlags(&options); !s.ok()) return Fail(s);
  absl::StatusOr<ClientTrust> trust = ApplyClientTrust(&options, args[0]);
  if (!trust.ok()) return Fail(trust.status());
  options.bind = SocketAddress::Any(peer->family(), 0);
  absl::StatusOr<Host> host = Host::Create(options);
  if (!host.ok()) return Fail(host.status());
  if (absl::Status s = host->Watch(signals->get(), kSignalToken); !s.ok()) return Fail(s);
  std::unique_ptr<rendezvous::HostClient> via_client;
  absl::StatusOr<ConnectionId> id = ConnectionId{0};
  std::optional<ViaPath> via_path;
  if (via.empty()) {
    id = host->Connect(*peer);
    if (!id.ok()) return Fail(id.status());
  } else {
    ConnectSecurity control;
    control.encrypt = true;  // the rendezvous server always encrypts
    absl::StatusOr<std::unique_ptr<rendezvous::HostClient>> c =
        rendezvous::HostClient::Start(&*host, *peer, ViaClientOptions(*peer), control);
    if (!c.ok()) return Fail(c.status());
    via_client = *std::move(c);
    int signal = 0;
    absl::StatusOr<ViaPath> path =
        ConnectVia(&*host, via_client.get(), args[0], via, *timeout, signals->get(), &signal);
    if (!path.ok()) {
      if (signal != 0) {
        EraseTerminalLine();
        (void)Fail(
            absl::CancelledError(absl::StrCat("interrupted by ", SignalName(signal),
                                              " while looking for ", args[0], "; nothing sent")));
        return SignalExitCode(signal);
      }
      std::fprintf(stderr, "udpmsg send: %s\n", Displayable(path.status().message()).c_str());
      return kExitFailure;
    }
    via_path = *std::move(path);
    id = via_path->id;
    *peer = via_path->peer;
  }
  // Tells the receiver why we stop (so it need not wait out its timeout),
  // says how far the transfer got (`loop`: null while connecting), lingers
  // to repeat the close if needed; 128 + the signal.
  const auto interrupted = [&](int signal, const SendLoop* loop) {
    const absl::Duration linger = CloseLinger(*host, *id);
    (void)host->Close(*id, absl::StrCat("sender interrupted by ", SignalName(signal)),
                      /*flush=*/false);
    std::string what = absl::StrCat(" while connecting to ", peer->ToString(), "; nothing sent");
    if (loop != nullptr) {
      what = absl::StrCat(" after ", BytesSent(loop->acked_data(), source->size()), " to ",
                          peer->ToString(),
                          loop->ended() ? ", before the receiver verified them" : "");
    }
    EraseTerminalLine();
    (void)Fail(absl::CancelledError(absl::StrCat("interrupted by ", SignalName(signal), what)));
    LingerAfterClose(&*host, linger, signals->get());
    return SignalExitCode(signal);
  };
  // A second beyond the handshake timeout, so the connection's own close
  // (with its reason) normally ends the wait.
  int signal = 0;
  std::vector<Event> early;
  std::string server_identity;
  if (via_path && host->IsEstablished(*id)) {  // direct: established already
    early = std::move(via_path->early);
    server_identity = via_path->server_identity;
  } else if (absl::Status s = AwaitConnected(&*host, *id, *peer, *timeout + absl::Seconds(1),
                                             signals->get(), &signal, &early, &server_identity);
             !s.ok()) {
    if (signal != 0) return interrupted(signal, nullptr);
    return Fail(absl::Status(s.code(), absl::StrCat(s.message(), trust->MismatchHint())));
  }
  // Trust on first use: record the server's identity, or refuse a server
  // without one, before anything is sent.
  if (absl::Status s = trust->Record(server_identity); !s.ok()) {
    (void)host->Close(*id, "client requires a server identity", /*flush=*/false);
    (void)host->Flush(absl::Milliseconds(200));
    return Fail(s);
  }

  SendLoop loop(&*host, *id, &*source, *progress, signals->get());
  absl::Status s = loop.Run(*peer, std::move(early));
  if (loop.signal() != 0) return interrupted(loop.signal(), &loop);
  absl::StatusOr<ConnectionStats> stats = host->Stats(*id);
  if (!s.ok()) {
    if (stats.ok()) std::fprintf(stderr, "%s\n", StatsLine(*stats).c_str());
    return Fail(s);
  }
  const double secs = std::max(1e-6, absl::ToDoubleSeconds(absl::Now() - loop.start()));
  std::fprintf(stderr, "sent %llu bytes to %s in %.2f s (%s/s), sha256 %s verified by receiver\n",
               static_cast<unsigned long long>(loop.sent()), peer->ToString().c_str(), secs,
               HumanBytes(loop.sent() / secs).c_str(), Hex(loop.digest()).c_str());
  if (stats.ok()) std::fprintf(stderr, "%s\n", StatsLine(*stats).c_str());
  (void)host->Close(*id, "transfer complete", /*flush=*/true);
  (void)host->Flush(absl::Seconds(1));
  return kExitOk;
}

int RunRecv(const Args& args) {
  if (!args.empty()) return UsageError("recv", "takes no positional arguments");
  if (!absl::GetFlag(FLAGS_reliable)) {
    return UsageError("recv", "needs --reliable (use `udpmsg listen` for raw datagrams)");
  }
  const std::string via = absl::GetFlag(FLAGS_via);
  const std::string name = absl::GetFlag(FLAGS_name);
  if (via.empty() != name.empty()) {
    return UsageError("recv", "--via HOST:PORT and --name NAME go together");
  }
  if (!name.empty() && !rendezvous::ValidName(name)) {
    return UsageError("recv", absl::StrCat("--name \"", DisplayablePrefix(name, 80),
                                           "\" is not a name (1 to 64 of A-Z a-z 0-9 . _ -, "
                                           "starting with a letter or digit)"));
  }
  absl::StatusOr<uint16_t> port =
      !via.empty() && absl::GetFlag(FLAGS_port).empty() ? uint16_t{0} : PortFromFlag();
  if (!port.ok()) return UsageError("recv", port.status().message());
  std::optional<ViaTarget> via_target;
  if (!via.empty()) {
    absl::StatusOr<SocketAddress> server = ResolvePeer(via);
    if (!server.ok()) return AddressError("recv", server.status());
    via_target = ViaTarget{*server, via, name};
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return UsageError("recv", "--out FILE is required (--out=- for stdout)");
  absl::StatusOr<absl::Duration> timeout = TimeoutFromFlag();
  if (!timeout.ok()) return UsageError("recv", timeout.status().message());
  absl::StatusOr<CongestionControl> cc = CongestionFromFlag();
  if (!cc.ok()) return UsageError("recv", cc.status().message());
  if (absl::Status s = CheckIdentityFlags(/*serves=*/true); !s.ok()) {
    return UsageError("recv", s.message());
  }
  // --out DIRECTORY: one transfer per connection on --threads shards.
  struct stat out_stat;
  const bool to_directory = out != "-" && ::stat(out.c_str(), &out_stat) == 0 &&
                            S_ISDIR(out_stat.st_mode);
  int threads = absl::GetFlag(FLAGS_threads);
  if (threads < 0 || threads > 256) {
    return UsageError("recv", absl::StrCat("--threads ", threads, " outside [1, 256] (0: one per CPU)"));
  }
  if (threads > 1 && !to_directory) {
    return UsageError("recv", "--threads N needs --out DIRECTORY (--out FILE receives one transfer)");
  }
  if (threads > 1 && !via.empty()) {
    return UsageError("recv", "--via registers one socket: --threads must be 1");
  }
  if (threads == 0) {
    threads = to_directory && via.empty() ? std::max(1u, std::thread::hardware_concurrency()) : 1;
  }
  if (absl::GetFlag(FLAGS_count) < 0) return UsageError("recv", "--count must be 0 or more");
  if (to_directory && ::access(out.c_str(), W_OK | X_OK) != 0) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("cannot write to directory ", out, ": ", std::strerror(errno))));
  }
  if (out != "-" && !to_directory) {
    // Check where the file will go now, not after a sender has connected.
    const size_t slash = out.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : out.substr(0, std::max<size_t>(slash, 1));
    if (::access(dir.c_str(), W_OK | X_OK) != 0) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("cannot write to directory ", dir, " for --out ", out, ": ",
                       std::strerror(errno))));
    }
  }
  if (sodium_init() < 0) return Fail(absl::InternalError("libsodium failed to initialise"));
  absl::StatusOr<OwnedFd> signals = SignalFd({SIGINT, SIGTERM, SIGHUP});
  if (!signals.ok()) return Fail(signals.status());

  absl::StatusOr<std::vector<SocketAddress>> locals =
      BindAddresses(absl::GetFlag(FLAGS_bind), *port, SocketType::kDatagram);
  if (!locals.ok()) return Fail(locals.status());
  HostOptions options = TransferOptions(*timeout, *cc);
  if (absl::Status s = ApplySecurityFlags(&options); !s.ok()) return Fail(s);
  absl::StatusOr<std::string> identity = ApplyServerIdentity(&options);
  if (!identity.ok()) return Fail(identity.status());
  options.accept_incoming = true;
  options.bind = locals->front();
  if (to_directory) {
    return RunRecvDirectory(out, options, threads, *identity, *std::move(signals), via_target);
  }
  absl::StatusOr<Host> host = Host::Create(options);
  if (!host.ok()) return Fail(host.status());
  if (absl::Status s = host->Watch(signals->get(), kSignalToken); !s.ok()) return Fail(s);
  PrintListening(host->local_address());
  std::unique_ptr<RecvVia> via_client;
  if (via_target) {
    absl::StatusOr<std::unique_ptr<RecvVia>> v = StartRecvVia(&*host, *via_target);
    if (!v.ok()) return Fail(v.status());
    via_client = *std::move(v);
  }
  if (!identity->empty()) std::fprintf(stderr, "server identity %s\n", identity->c_str());

  std::optional<ConnectionId> sender;
  SocketAddress from;
  FileSink sink(out);
  transfer::Receiver receiver(&sink, transfer::Receiver::Options{});
  absl::Time start;
  for (;;) {
    absl::StatusOr<Host::PollResult> r =
        host->Poll(via_client ? via_client->Wait(absl::Seconds(1)) : absl::Seconds(1));
    if (!r.ok()) return Fail(r.status());
    if (via_client) {
      std::vector<Event> mine;
      for (Event& e : r->events) {
        if (!via_client->OnEvent(e)) mine.push_back(std::move(e));
      }
      r->events = std::move(mine);
      // Losing the server matters only while no transfer runs: one that
      // runs goes on (directly, or through a relay that ends with it).
      if (absl::Status s = via_client->Service(); !s.ok() && !sender.has_value()) {
        std::fprintf(stderr, "udpmsg recv: %s\n", Displayable(s.message()).c_str());
        return kExitFailure;
      }
    }
    for (uint64_t token : r->ready) {
      if (token != kSignalToken) continue;
      const int signal = DrainSignals(signals->get());
      if (signal == 0) continue;
      // Stop: remove the temporary file, tell the sender why (so it need
      // not wait out its timeout), say what was lost, linger to repeat the
      // close if needed; 128 + the signal.
      const std::string why = absl::StrCat("interrupted by ", SignalName(signal));
      absl::Duration linger;
      std::string what = absl::StrCat("; no transfer had begun",
                                      out == "-" ? "" : absl::StrCat("; nothing written to ", out));
      if (sender.has_value()) {
        receiver.OnConnectionClosed(why);  // discards the partial output
        linger = CloseLinger(*host, *sender);
        (void)host->Close(*sender, absl::StrCat("receiver ", why), /*flush=*/false);
        what = absl::StrCat(" after ", receiver.received(), " bytes received from ",
                            from.ToString(), NothingWritten(out));
      }
      sink.Abort();
      EraseTerminalLine();
      (void)Fail(absl::CancelledError(absl::StrCat(why, what)));
      LingerAfterClose(&*host, linger, signals->get());
      return SignalExitCode(signal);
    }
    for (Event& e : r->events) {
      if (e.type == Event::Type::kConnected) {
        if (sender.has_value()) {
          (void)host->Close(e.connection, "busy with another transfer", false);
          continue;
        }
        sender = e.connection;
        from = e.peer;
        start = absl::Now();
        std::fprintf(stderr, "receiving from %s\n", from.ToString().c_str());
        continue;
      }
      if (!sender.has_value() || e.connection != *sender) continue;
      if (e.type == Event::Type::kPathChanged) {  // a NAT rebinding, validated
        std::fprintf(stderr, "sender moved from %s to %s\n", from.ToString().c_str(),
                     e.peer.ToString().c_str());
        from = e.peer;
        continue;
      }
      if (e.type == Event::Type::kClosed) {
        receiver.OnConnectionClosed(e.reason);  // discards the partial output
        if (const std::optional<std::string> sig = InterruptedBy(e.reason, "sender");
            e.by_peer && sig.has_value()) {
          return Fail(absl::UnavailableError(
              absl::StrCat("sender ", from.ToString(), " interrupted the transfer (", *sig,
                           ") after ", receiver.received(), " bytes", NothingWritten(out))));
        }
        return Fail(absl::UnavailableError(
            absl::StrCat("sender ", from.ToString(), " went away after ", receiver.received(),
                         " bytes: ", DisplayablePrefix(e.reason, kMaxShownPeerBytes),
                         NothingWritten(out))));
      }
      if (e.type != Event::Type::kMessage) continue;
      const absl::Status s = receiver.OnMessage(e.message);
      for (std::string& reply : receiver.TakeReplies()) {
        (void)SendMessage(&*host, *sender, std::move(reply));
      }
      if (!s.ok()) {
        // The receiver aborted the sink; deliver the reason, then close.
        (void)host->Flush(absl::Seconds(2));
        (void)host->Close(*sender, "transfer rejected", /*flush=*/false);
        return Fail(s);
      }
      if (receiver.state() == transfer::Receiver::State::kComplete) {
        const uint64_t received = receiver.received();
        const double secs = std::max(1e-6, absl::ToDoubleSeconds(absl::Now() - start));
        std::fprintf(stderr, "received %llu bytes from %s in %.2f s (%s/s), sha256 %s OK, wrote %s\n",
                     static_cast<unsigned long long>(received), from.ToString().c_str(), secs,
                     HumanBytes(received / secs).c_str(), Hex(receiver.digest()).c_str(),
                     out == "-" ? "stdout" : out.c_str());
        absl::StatusOr<ConnectionStats> stats = host->Stats(*sender);
        if (stats.ok()) std::fprintf(stderr, "%s\n", StatsLine(*stats).c_str());
        // Deliver the result; the sender closes when it has it.
        (void)host->Flush(absl::Seconds(5));
        return kExitOk;
      }
    }
  }
}

}  // namespace udpmsg::cli
